"""Training runs: one update (:func:`train_step`, no I/O) and the runner around it (:func:`train`).

The runner owns everything with side effects: the progress bar, the metrics file
(``metrics.jsonl``, one JSON record per line), evaluation on a fixed held-out set, divergence
checks, checkpoints (``checkpoint.npz``) and the learning-curve PNG (``learning_curve.png``),
all in the run's ``out`` folder next to ``config.json``.

Resuming (``train(config, resume=True)``) restores parameters, optimizer slots and the step
count; training batches are derived from (seed, step), so a resumed run sees exactly the batches
an uninterrupted one would and, on NumPy, ends with bit-identical parameters.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

from tqdm.auto import tqdm

from .. import backend
from ..errors import CheckpointError, ConfigError, DivergenceError
from ..losses import get_loss
from ..models import ElmanRNN
from ..objective import loss_and_grads
from ..optim import clip_grad_norm, make_optimizer
from ..tasks import make_task
from . import checkpoint
from .config import STREAM_EVAL, STREAM_INIT, STREAM_TRAIN, TrainConfig
from .plots import plot_learning_curves

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CURVE_FILE = "learning_curve.png"


@dataclasses.dataclass
class TrainResult:
    """What a completed run returns (a diverging run raises DivergenceError instead).

    Attributes
    ----------
    config : TrainConfig
    params : dict of host arrays
        Final parameters.
    history : list of dict
        The records of ``metrics.jsonl``.
    final : dict
        The last evaluation's metrics.
    out : str
        The run's folder.
    seconds : float
        Wall time of this invocation.
    """

    config: TrainConfig
    params: dict
    history: list
    final: dict
    out: str
    seconds: float


def build(config: TrainConfig):
    """The task, model and optimizer a config describes (fresh, seeded)."""
    task = make_task(config.task, T=config.T, dtype=config.dtype)
    model = ElmanRNN.create(
        task.n_in, (config.hidden,) * config.layers, task.n_out,
        activation=config.activation, bias=config.bias, outputs=task.outputs,
        init=config.init, gain=config.gain, scale=config.init_scale,
        seed=backend.derive_seed(config.seed, STREAM_INIT), dtype=config.dtype)
    optimizer = make_optimizer(config.optimizer, **_optimizer_settings(config))
    return task, model, optimizer


def _optimizer_settings(config):
    if config.optimizer == "sgd":
        return {"lr": config.lr, "momentum": config.momentum, "nesterov": config.nesterov}
    return {"lr": config.lr}


def _chunks(T, truncate):
    k = truncate if 0 < truncate < T else T
    return [(a, min(a + k, T)) for a in range(0, T, k)]


def train_step(model, params, optimizer, x, targets, mask, loss_fn, clip=0.0, truncate=0):
    """One batch of training: forward, BPTT, clipping and optimizer update(s). No I/O.

    Parameters
    ----------
    x : (T, B, n_in)
    targets, mask : as the task's loss expects
    clip : float
        Maximum global gradient norm (0: no clipping).
    truncate : int
        Chunk length for truncated BPTT (0: full BPTT). The hidden state is carried across
        chunks; the gradient stops at chunk boundaries; one update per chunk with scored outputs
        (for a model that only outputs at the last step, earlier chunks only advance the state).

    Returns
    -------
    dict with ``loss`` (mean over updates) and ``grad_norm`` (largest pre-clip norm).

    Raises
    ------
    DivergenceError
        If a loss or gradient norm is not finite; the parameters are left as they were before
        the failing update.
    """
    T = x.shape[0]
    last_only = model.spec.outputs == "last"
    state, values, norms = None, [], []
    for a, b in _chunks(T, truncate):
        if last_only:
            chunk_targets, chunk_mask, scored = targets, mask, b == T
        else:
            chunk_targets = targets[a:b]
            chunk_mask = None if mask is None else mask[a:b]
            scored = chunk_mask is None or bool(chunk_mask.any())
        if not scored:
            state = model.forward(params, x[a:b], state)[1].final_state
            continue
        value, grads, cache = loss_and_grads(model, params, x[a:b], chunk_targets, loss_fn,
                                             chunk_mask, state)
        state = cache.final_state
        norm = clip_grad_norm(grads, clip or None)
        if not (math.isfinite(value) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(value) else "gradient norm"
            raise DivergenceError(f"{what} is {value if what == 'loss' else norm}")
        optimizer.step(params, grads)
        values.append(value)
        norms.append(norm)
    return {"loss": sum(values) / len(values), "grad_norm": max(norms)}


def evaluate(model, params, task, eval_set) -> dict:
    """The task's metrics of ``model`` at ``params`` on a held-out ``(x, targets, mask)``."""
    x, targets, mask = eval_set
    y, _ = model.forward(params, x)
    return task.metric(y, targets, mask)


def _read_history(path, up_to_step):
    """Records of an existing metrics file with step <= ``up_to_step`` (for resuming)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["step"] <= up_to_step]


def _resume(config, model, optimizer, path):
    """Load the checkpoint into ``model.params`` and ``optimizer``; return the step reached."""
    params_host, opt_state, meta = checkpoint.load(path)
    saved = TrainConfig.from_dict(meta["config"])
    differs = [k for k, v in saved.to_dict().items()
               if k not in ("steps", "out") and getattr(config, k) != v]
    if differs:
        raise CheckpointError(f"checkpoint {path} was written by a run with different settings "
                              f"({', '.join(differs)}); resume with the same settings")
    if list(params_host) != list(model.params):
        raise CheckpointError(f"checkpoint {path} holds parameters {list(params_host)}, "
                              f"the model has {list(model.params)}")
    for name, a in params_host.items():
        model.params[name] = backend.to_device(a, dtype=model.params[name].dtype)
    optimizer.load_state_dict(opt_state)
    return int(meta["step"])


def train(config: TrainConfig, resume: bool = False, progress: bool | None = None,
          label: str | None = None) -> TrainResult:
    """Run (or resume) the training a config describes; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
    resume : bool
        Continue from ``<out>/checkpoint.npz`` (must have been written with the same settings;
        only ``steps`` may differ).
    progress : bool or None
        Show a progress bar (None: only when writing to a terminal).
    label : str, optional
        Progress-bar description.

    Raises
    ------
    DivergenceError
        When a loss or gradient norm becomes non-finite; the message says at which step and
        where the last good checkpoint is.
    """
    started = time.perf_counter()
    config.validate()
    with backend.use_backend(config.backend):
        os.makedirs(config.out, exist_ok=True)
        task, model, optimizer = build(config)
        loss_fn = get_loss(task.loss)
        params = model.params
        ckpt_path = os.path.join(config.out, checkpoint.FILENAME)
        metrics_path = os.path.join(config.out, METRICS_FILE)
        step = _resume(config, model, optimizer, ckpt_path) if resume else 0
        history = _read_history(metrics_path, step) if resume else []
        with open(os.path.join(config.out, CONFIG_FILE), "w") as f:
            f.write(config.to_json())
        eval_set = task.eval_set(config.eval_size, backend.derive_seed(config.seed, STREAM_EVAL))

        saved = {"step": step if resume else None}

        def save_checkpoint():
            saved["step"] = step
            checkpoint.save(ckpt_path, params, optimizer.state_dict(),
                            {"step": step, "config": config.to_dict(),
                             "model": model.spec.to_dict()})

        def log_eval(window):
            with backend.quiet_float_errors():
                metrics = evaluate(model, params, task, eval_set)
            if window:
                history.append({"kind": "train", "step": step,
                                "loss": sum(w["loss"] for w in window) / len(window),
                                "grad_norm": max(w["grad_norm"] for w in window)})
            history.append({"kind": "eval", "step": step, **metrics})

        if not history:
            log_eval([])
            save_checkpoint()  # step 0: a diverging first update still leaves a good checkpoint
        message, window = None, []
        bar = tqdm(total=config.steps, initial=step, desc=label or config.out,
                   disable=None if progress is None else not progress, leave=False)
        try:
            while step < config.steps:
                x, targets, mask = task.batch(
                    backend.rng(backend.derive_seed(config.seed, STREAM_TRAIN, step)),
                    config.batch)
                try:
                    with backend.quiet_float_errors():
                        metrics = train_step(model, params, optimizer, x, targets, mask, loss_fn,
                                             config.clip, config.truncate)
                except DivergenceError as exc:
                    kept = f"the last good checkpoint is {ckpt_path} (step {saved['step']})"
                    message = f"training diverged at step {step + 1}: {exc}; {kept}"
                    break
                step += 1
                window.append(metrics)
                bar.update(1)
                if step % config.eval_every == 0 or step == config.steps:
                    log_eval(window)
                    window = []
                    bar.set_postfix(loss=f"{history[-2]['loss']:.4g}")
                if step % config.checkpoint_interval == 0 or step == config.steps:
                    save_checkpoint()
        finally:
            bar.close()
            _write_history(metrics_path, history)
        if message is not None:  # diverged
            history.append({"kind": "diverged", "step": step + 1, "message": message})
            _write_history(metrics_path, history)
            raise DivergenceError(message)
        metric, baseline = next(iter(task.baseline().items()))
        plot_learning_curves({config.activation: history}, os.path.join(config.out, CURVE_FILE),
                             metric=metric, baseline=baseline,
                             title=f"{config.task} T={config.T}")
        final = {k: v for k, v in history[-1].items() if k not in ("kind", "step")}
        host_params = {k: backend.to_host(v) for k, v in params.items()}
    return TrainResult(config, host_params, history, final, config.out,
                       time.perf_counter() - started)


def _write_history(path, history):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def load_history(out: str) -> list:
    """The records of ``<out>/metrics.jsonl``."""
    path = os.path.join(out, METRICS_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"no metrics file at {path}")
    return _read_history(path, float("inf"))
