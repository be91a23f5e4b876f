"""The demos. ``rnnlab demo`` (``activations``): an identity-initialised ReLU RNN (IRNN) against
a tanh RNN on the adding problem; ``rnnlab demo optimizers``: the same IRNN under SGD, Path-SGD
and G-SGD.

Both models have the same size, optimizer, learning rate, clipping, seed and data; only the
activation and the recurrent initialisation differ. At T = 150 the IRNN gets below MSE 0.01
within a few thousand Adam steps while the tanh RNN stays at the trivial baseline (1/6). The
run takes about a minute on 2 CPU cores, prints a summary table, and writes each run's metrics,
checkpoint and curve, plus one comparison figure, under ``<out>/demo``.
"""
from __future__ import annotations

import os

from ..config import RunConfig
from ..errors import ConfigError
from ..train import FileSink, run
from ..train.plots import plot_learning_curves

DEMO_BASE = {"task": {"name": "adding", "T": 150},
             "model": {"name": "elman", "hidden": 64, "layers": 1},
             "optimizer": {"name": "adam", "lr": 1e-3},
             "train": {"clip": 1.0, "batch": 50, "steps": 8000, "eval_every": 400,
                       "eval_size": 1000}}
DEMO_MODELS = {
    "irnn-relu": {"activation": "relu", "init": "identity", "gain": 1.0},
    "tanh-orthogonal": {"activation": "tanh", "init": "orthogonal", "gain": 1.0},
}

# The optimizers demo: one IRNN, three update rules, each at a rate picked from a small grid on
# this task (path units differ from SGD's: see rnnlab.optim.path_sgd.PathSGD).
OPTIMIZER_BASE = {"task": {"name": "adding", "T": 20},
                  "model": {"name": "elman", "hidden": 64, "activation": "relu",
                            "init": "identity"},
                  "train": {"clip": 1.0, "batch": 50, "steps": 6000, "eval_every": 300,
                            "eval_size": 1000}}
OPTIMIZER_RUNS = {
    "sgd lr=0.05": {"name": "sgd", "lr": 0.05},
    "path-sgd lr=1e-6": {"name": "path-sgd", "lr": 1e-6},
    "gsgd lr=0.01": {"name": "gsgd", "lr": 0.01},
}


def demo_configs(steps: int | None = None, seed: int = 0, which: str = "activations") -> dict:
    """A demo's configs by label (a pure description; nothing runs)."""
    base = DEMO_BASE if which == "activations" else OPTIMIZER_BASE
    train = dict(base["train"], seed=seed)
    if steps is not None:
        train.update(steps=steps, eval_every=max(1, min(train["eval_every"], steps // 10 or 1)))
    if which == "activations":
        return {label: RunConfig(**dict(base, model=dict(base["model"], **model), train=train))
                for label, model in DEMO_MODELS.items()}
    return {label: RunConfig(**dict(base, optimizer=optimizer, train=train))
            for label, optimizer in OPTIMIZER_RUNS.items()}


def summary_table(results: dict, metric: str, baseline: float, first: str = "model",
                  width: int = 16) -> str:
    """A plain-text table of a demo's runs (``first``: the heading of the label column)."""
    threshold = next(iter(results.values())).threshold
    header = (f"{first:<{width}} {'final ' + metric:>12} {'best ' + metric:>11} "
              f"{'first step < ' + format(threshold, 'g'):>18} {'seconds':>8}")
    lines = [header, "-" * len(header)]
    for label, result in results.items():
        evals = [r for r in result.history if r["kind"] == "eval"]
        best = min(r[metric] for r in evals)
        solved = next((r["step"] for r in evals if r[metric] < threshold), None)
        lines.append(f"{label:<{width}} {result.final[metric]:>12.4g} {best:>11.4g} "
                     f"{'never' if solved is None else solved:>18} {result.seconds:>8.1f}"
                     + ("" if result.status == "finished" else
                        f"  ({result.status} at step {result.step + 1}: {result.reason})"))
    lines.append(f"trivial baseline (predict 1): {metric} = {baseline:.4g}")
    return "\n".join(lines)


DEMOS = ("activations", "optimizers")


def run_demo(out: str = "runs", steps: int | None = None, seed: int = 0,
             progress: bool | None = None, which: str = "activations") -> dict:
    """Train a demo's runs, print the table, write the figure; return the results.

    Rerunning a demo replaces its earlier runs under ``<out>/demo`` (``<out>/demo-optimizers``).
    A run that diverges is reported in the table, not raised.
    """
    if not isinstance(out, str) or not out.strip():
        raise ConfigError(f"--out must be a folder path; got {out!r}")
    if which not in DEMOS:
        raise ConfigError(f"demo must be one of {', '.join(DEMOS)}; got {which!r}")
    folder = os.path.join(out, "demo" if which == "activations" else "demo-optimizers")
    configs = demo_configs(steps, seed, which)
    results = {label: run(config, FileSink(os.path.join(folder, label), overwrite=True),
                          progress=progress, label=label)
               for label, config in configs.items()}
    first = next(iter(results.values()))
    c = first.config
    rule = (f"{c.optimizer['name']} lr={c.optimizer['lr']}, " if which == "activations"
            else "")
    print(f"adding problem, T={c.task['T']}, {c.model['hidden']} hidden units, {rule}"
          f"clip={c.train['clip']}, batch={c.train['batch']}, {c.train['steps']} steps, "
          f"seed={seed}")
    print(summary_table(results, first.metric, first.baseline,
                        *(("model", 16) if which == "activations" else ("run", 18))))
    name = "adding_irnn_vs_tanh.png" if which == "activations" else "adding_optimizers.png"
    figure = plot_learning_curves({label: r.history for label, r in results.items()},
                                  os.path.join(folder, name), metric=first.metric,
                                  baseline=first.baseline,
                                  title=f"adding problem, T={c.task['T']}")
    print(f"figure: {figure}\nmetrics: {os.path.join(folder, '<run>', 'metrics.jsonl')}")
    return results
