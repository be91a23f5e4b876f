"""Command line: ``python -m rnnlab {train,demo,verify} ...``.

Bad arguments and rnnlab's own errors print one line to stderr and exit with code 2 (no
traceback); a diverged run prints why and where its last good checkpoint is, and exits 1.
"""
from __future__ import annotations

import argparse
import sys

from . import backend
from .errors import DivergenceError, RnnlabError
from .models import ACTIVATIONS, INITS, MODELS
from .optim import OPTIMIZERS
from .tasks import TASKS
from .train.config import TrainConfig


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(minimum):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return value
    convert.__name__ = f"integer >= {minimum}"
    return convert


def _float_above(minimum, inclusive=False):
    bound = f">= {minimum}" if inclusive else f"> {minimum}"

    def convert(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {bound}; got {text!r}")
        if not (value >= minimum if inclusive else value > minimum) or value != value \
                or value in (float("inf"),):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}; got {text}")
        return value
    convert.__name__ = f"number {bound}"
    return convert


def _add_train_arguments(p):
    d = TrainConfig.__dataclass_fields__
    p.add_argument("--task", choices=tuple(TASKS), default=d["task"].default, help="problem")
    p.add_argument("--T", type=_int_at_least(1), default=d["T"].default,
                   help="sequence length")
    p.add_argument("--model", choices=MODELS, default=d["model"].default, help="model family")
    p.add_argument("--layers", type=_int_at_least(1), default=d["layers"].default,
                   help="stacked hidden layers")
    p.add_argument("--hidden", type=_int_at_least(1), default=d["hidden"].default,
                   help="hidden units per layer")
    p.add_argument("--activation", choices=ACTIVATIONS, default=d["activation"].default,
                   help="hidden nonlinearity")
    p.add_argument("--init", choices=INITS, default=d["init"].default,
                   help="recurrent initialisation")
    p.add_argument("--gain", type=_float_above(0, inclusive=True), default=d["gain"].default,
                   help="recurrent gain")
    p.add_argument("--init-scale", type=_float_above(0), default=d["init_scale"].default,
                   help="a of U(-a, a) for the identity and uniform inits")
    p.add_argument("--no-bias", dest="bias", action="store_false", default=argparse.SUPPRESS,
                   help="leave out the biases (the bias node)")
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=d["optimizer"].default,
                   help="update rule")
    p.add_argument("--lr", type=_float_above(0), default=d["lr"].default,
                   help="learning rate")
    p.add_argument("--momentum", type=_float_above(0, inclusive=True),
                   default=d["momentum"].default, help="SGD momentum, in [0, 1)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--clip", type=_float_above(0, inclusive=True), default=d["clip"].default,
                   help="max global gradient norm (0: no clipping)")
    p.add_argument("--batch", type=_int_at_least(1), default=d["batch"].default,
                   help="sequences per step")
    p.add_argument("--steps", type=_int_at_least(0), default=d["steps"].default,
                   help="training steps (batches)")
    p.add_argument("--truncate", type=_int_at_least(0), default=d["truncate"].default,
                   help="truncated BPTT chunk length (0: full BPTT)")
    p.add_argument("--eval-every", type=_int_at_least(1), default=d["eval_every"].default,
                   help="steps between evaluations")
    p.add_argument("--eval-size", type=_int_at_least(1), default=d["eval_size"].default,
                   help="held-out sequences")
    p.add_argument("--checkpoint-every", type=_int_at_least(0),
                   default=d["checkpoint_every"].default, help="0: at every evaluation")
    p.add_argument("--seed", type=_int_at_least(0), default=d["seed"].default,
                   help="seed of weights, batches and held-out set")
    p.add_argument("--backend", choices=backend.BACKENDS, default=d["backend"].default,
                   help="array backend")
    p.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"].default,
                   help="training dtype")
    p.add_argument("--out", default=d["out"].default, help="output folder")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rnnlab", description="Study how recurrent networks train.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,demo,verify}")

    p = sub.add_parser("train", help="train a model on a task",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_train_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint.npz")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only on a terminal)")

    p = sub.add_parser("demo", help="a one-minute comparison: IRNN (ReLU) vs tanh RNN")
    p.add_argument("--out", default="runs", help="folder for the demo's runs and figure")
    p.add_argument("--steps", type=_int_at_least(1), default=None,
                   help="training steps per model (default: the demo's own)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    from .paths.verify import add_verify_arguments
    add_verify_arguments(sub.add_parser(
        "verify", help="check the papers' path-geometry claims on random small networks"))
    return parser


def _train(args) -> int:
    from .train import train
    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "resume", "progress")}
    config = TrainConfig(**options)
    result = train(config, resume=args.resume, progress=args.progress)
    from .tasks import make_task
    metric, baseline = next(iter(make_task(config.task, T=config.T).baseline().items()))
    print(f"{config.task} T={config.T} {config.activation}/{config.init} "
          f"{config.optimizer} lr={config.lr}: held-out {metric} {result.final[metric]:.4g} "
          f"(trivial baseline {baseline:.4g}) after {config.steps} steps; "
          f"metrics, checkpoint and learning_curve.png in {result.out}")
    return 0


def _demo(args) -> int:
    from .experiments.demo import run_demo
    run_demo(out=args.out, steps=args.steps, seed=args.seed, progress=args.progress)
    return 0


def _verify(args) -> int:
    from .paths.verify import main_verify
    return main_verify(args)


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "demo": _demo, "verify": _verify}
    try:
        return handlers[args.command](args)
    except DivergenceError as exc:
        print(f"rnnlab: {exc}", file=sys.stderr)
        return 1
    except RnnlabError as exc:
        print(f"rnnlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnlab: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
