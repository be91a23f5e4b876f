"""Training runs: one update with no I/O (:func:`train_step`) and the runner around it
(:func:`run`).

``run(config, sink)`` builds the task, model and optimizer the config names, trains, evaluates
on a fixed held-out set in bounded chunks, checks for divergence, and hands every record and
checkpoint to the sink (:mod:`.sinks`: a run folder by default, memory for tests and sweep
workers). It returns a :class:`RunResult` whose ``status`` says how the run ended, "finished",
"diverged" (at which step and why) or "stopped" (Ctrl-C), instead of raising for divergence.

Resuming (``run(config, sink, resume=True)``) restores parameters, optimizer state, the carried
recurrent state of stream tasks and the step count; training batches are derived from
(seed, step), so a resumed run sees exactly the batches an uninterrupted one would and, on
NumPy, ends with bit-identical parameters.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

from tqdm.auto import tqdm

from .. import backend, objective
from ..config import STREAM_EVAL, STREAM_INIT, STREAM_TEST, STREAM_TRAIN, RunConfig
from ..errors import CheckpointError, ConfigError, DivergenceError
from ..losses import get_loss
from ..models import MODELS, make_model
from ..optim import clip_grad_norm, make_optimizer
from ..optim.base import device_copy
from ..tasks import make_task
from .diagnostics import gradient_flow, supports_flow
from .memory import check_fits
from .sinks import FileSink

STATUSES = ("finished", "diverged", "stopped")


@dataclasses.dataclass
class RunResult:
    """How a run ended and what it measured.

    Attributes
    ----------
    config : RunConfig
    status : {"finished", "diverged", "stopped"}
    step : int
        Steps completed (for "diverged", the failing step is ``step + 1``).
    reason : str or None
        Why a run diverged ("loss is nan", ...) or stopped.
    message : str or None
        One line for people: the status, the reason, and where the last good checkpoint is.
    params : dict of host arrays
        The parameters at the end (for "diverged": before the failing update).
    history : list of dict
        The metrics records, as the sink keeps them.
    final : dict
        The last evaluation's metrics (the validation split).
    test : dict
        The test split's metrics at the end of a finished run ({} for other statuses, or with
        ``train.test_size = 0``).
    metric, baseline, threshold : str, float or None
        The task's headline metric, its trivial-predictor score, and the score that counts as
        solved (:attr:`rnnlab.tasks.Task.threshold`).
    run_id : str
        :meth:`RunConfig.run_id`.
    seconds : float
        Wall time of this invocation.
    """

    config: RunConfig
    status: str
    step: int
    reason: str | None
    message: str | None
    params: dict
    history: list
    final: dict
    test: dict
    metric: str | None
    baseline: float | None
    threshold: float | None
    title: str
    run_id: str
    seconds: float

    def raise_for_status(self) -> "RunResult":
        """Raise DivergenceError (with :attr:`message`) if the run diverged; else return self."""
        if self.status == "diverged":
            raise DivergenceError(self.message)
        return self


def build(config: RunConfig):
    """The task, model, optimizer and loss a config describes (fresh, seeded), on the active
    backend; a run whose memory cannot exist is refused first (:mod:`.memory`)."""
    t = config.train
    task = make_task(config.task["name"], dtype=t["dtype"], **config.options("task"))
    model_class = MODELS.get(config.model["name"])
    if hasattr(model_class, "spec_for"):  # structure without weights: check the memory first
        spec = model_class.spec_for(task.n_in, task.n_out, task.outputs,
                                    **MODELS.resolve(config.model["name"],
                                                     config.options("model")))
        check_fits(config, task, spec)
    model = make_model(config.model["name"], task.n_in, task.n_out, task.outputs,
                       seed=backend.derive_seed(t["seed"], STREAM_INIT), dtype=t["dtype"],
                       **config.options("model"))
    optimizer = make_optimizer(config.optimizer["name"], **config.options("optimizer"))
    if t["clip"] and getattr(optimizer, "needs_raw_gradient", False):
        raise ConfigError(f"optimizer {optimizer.name!r} needs the unclipped gradient (its "
                          "quadratic model and reduction ratio are of the loss itself): set "
                          "train.clip = 0 (--clip 0)")
    if t["flow_every"] and not supports_flow(model):
        raise ConfigError(f"train.flow_every needs a model with hidden_gradients(); model "
                          f"{config.model['name']!r} has none (set flow_every = 0)")
    return task, model, optimizer, get_loss(task.loss)


def supply_needs(needs, model, params: dict, batch, loss) -> dict:
    """The keyword inputs an optimizer declares in ``needs``, for one update on ``batch``.

    ``closure(p, rows=None) -> (loss, grads)``, ``loss(p, rows=None) -> float`` (forward only)
    and ``gvp(p, v, rows=None, structural=0.0, structural_form="matching") -> G v`` evaluate on
    ``batch`` (the chunk in use under truncated BPTT), or on its sequences ``rows = (a, b)``
    (Hessian-free's curvature and backtracking batches). While ``p`` is the trainer's
    ``params`` dict, ``gvp`` reuses one forward pass per ``rows`` for all its products; an
    optimizer that moves ``params`` in place between products should pass a copy instead.
    """
    outputs = model.spec.outputs

    def part(rows):
        return batch if rows is None else batch.rows(rows[0], rows[1], outputs)

    supplied = {}
    if "model" in needs:
        supplied["model"] = model
    if "batch" in needs:
        supplied["batch"] = batch
    if "closure" in needs:
        def closure(p, rows=None):
            value, grads, _ = objective.batch_loss_and_grads(model, p, part(rows), loss)
            return value, grads
        supplied["closure"] = closure
    if "loss" in needs:
        def loss_at(p, rows=None):
            b = part(rows)
            return objective.loss_value(model, p, b.x, b.targets, loss, b.mask, b.state)
        supplied["loss"] = loss_at
    if "gvp" in needs:
        forwards = {}

        def gvp(p, v, rows=None, structural=0.0, structural_form="matching"):
            b = part(rows)
            options = {"structural": structural, "structural_form": structural_form}
            if p is not params:
                return objective.gauss_newton_product(model, p, b, v, loss, **options)
            if rows not in forwards:
                forwards[rows] = model.forward(p, b.x, b.state)
            y, cache = forwards[rows]
            return objective.gauss_newton_product(model, p, b, v, loss, cache=cache,
                                                  outputs=y, **options)
        supplied["gvp"] = gvp
    return supplied


def train_step(model, params, optimizer, batch, loss, clip: float = 0.0,
               truncate: int = 0) -> dict:
    """One batch of training: forward, BPTT, clipping and optimizer update(s). No I/O.

    Parameters
    ----------
    batch : rnnlab.objective.Batch
        ``x : (T, B, n_in)``, targets and mask as the loss expects, initial ``state``.
    loss : rnnlab.losses.Loss
    clip : float
        Maximum global gradient norm (0: no clipping).
    truncate : int
        Chunk length for truncated BPTT (0: full BPTT); see
        :func:`rnnlab.objective.truncated_bptt`. One update per chunk with scored outputs.

    Returns
    -------
    dict with ``loss`` (mean over updates), ``grad_norm`` (largest pre-clip norm),
    ``optimizer`` (the optimizer's own step metrics, averaged over updates), ``cost`` (this
    batch's forward-pass equivalents, see :func:`update_cost`) and ``final_state`` (the
    recurrent state after the batch).

    Raises
    ------
    DivergenceError
        If a loss or gradient norm is not finite; the parameters are left as they were before
        the failing update.
    """
    values, norms, reported, state = [], [], [], batch.state
    cost = dict.fromkeys(COST_KEYS, 0.0)
    for chunk in objective.truncated_bptt(model, params, batch, loss, truncate):
        state = chunk.cache.final_state
        if not chunk.scored:
            continue
        norm = clip_grad_norm(chunk.grads, clip or None)
        if not (math.isfinite(chunk.value) and math.isfinite(norm)):
            what = "loss" if not math.isfinite(chunk.value) else "gradient norm"
            raise DivergenceError(f"{what} is {chunk.value if what == 'loss' else norm}")
        needs = supply_needs(optimizer.needs, model, params, chunk.batch, loss)
        reported.append(optimizer.step(params, chunk.grads, **needs))
        for key, value in update_cost(reported[-1], chunk.batch, batch.T).items():
            cost[key] += value
        values.append(chunk.value)
        norms.append(norm)
    keys = dict.fromkeys(k for r in reported for k in r if k not in OPTIMIZER_COST_KEYS)
    means = {k: sum(r[k] for r in reported if k in r) / sum(k in r for r in reported)
             for k in keys}
    return {"loss": sum(values) / len(values), "grad_norm": max(norms), "optimizer": means,
            "cost": cost, "final_state": state}


# Krause et al. (hf-vs-sgd-efficiency-mlstm.md, Section 2): a run's cost in forward passes of
# one training sequence. P_D (batch-dependent, sequential) counts every sequence, P_I
# (batch-independent, parallel) one per batch; "_all" adds the work the paper's definition
# leaves out (Hessian-free's backtracking, reduction ratio and line search).
COST_KEYS = ("P_D", "P_I", "P_D_all", "P_I_all")
OPTIMIZER_COST_KEYS = ("cost_D", "cost_I", "cost_D_extra", "cost_I_extra")


def update_cost(reported: dict, chunk, T: int) -> dict:
    """One update's forward-pass equivalents: the trainer's gradient (3 per sequence: a forward
    and a backward of about twice its cost) plus what the optimizer reports in its step metrics
    (``cost_D``, ``cost_I`` within the paper's definition; ``cost_D_extra``, ``cost_I_extra``
    beyond it), all in passes over the ``chunk``'s sequences and scaled by its share of the
    batch's ``T`` steps (truncated BPTT)."""
    share = chunk.T / T
    d = share * (3.0 * chunk.B + reported.get("cost_D", 0.0))
    i = share * (3.0 + reported.get("cost_I", 0.0))
    return {"P_D": d, "P_I": i,
            "P_D_all": d + share * reported.get("cost_D_extra", 0.0),
            "P_I_all": i + share * reported.get("cost_I_extra", 0.0)}


def evaluate(model, params, task, batches, carry_state: bool = False) -> dict:
    """The task's metrics of ``model`` at ``params`` over held-out ``batches`` (an iterable of
    ``(x, targets, mask)``, e.g. ``task.eval_batches(...)``), one chunk in memory at a time.

    Each chunk's metrics (means over its scored positions) are combined weighted by its number
    of scored positions, which gives the mean over the whole set. With ``carry_state`` the final
    state of each chunk is the next one's initial state (streams).
    """
    results, state = [], None
    for x, targets, mask in batches:
        y, cache = model.forward(params, x, state)
        if carry_state:
            state = cache.final_state
        scored = float(mask.sum()) if mask is not None else math.prod(y.shape[:-1])
        results.append((task.metric(y, targets, mask), scored))
    if len(results) == 1:
        return results[0][0]
    total = sum(w for _, w in results)
    return {k: sum(m[k] * w for m, w in results) / total for k in results[0][0]}


def _finite(tree) -> bool:
    """Whether every array in a state tree is finite."""
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_finite(v) for v in tree)
    if hasattr(tree, "dtype") and tree.dtype.kind == "f":
        return bool(backend.get_xp().isfinite(tree).all())
    return not (isinstance(tree, float) and not math.isfinite(tree))


def default_folder(config: RunConfig) -> str:
    """``runs/<task>-<model>-<optimizer>-<run id>``: the folder of a run given none."""
    return os.path.join("runs", f"{config.task['name']}-{config.model['name']}-"
                                f"{config.optimizer['name']}-{config.run_id()}")


def run(config: RunConfig, sink=None, *, resume: bool = False, progress: bool | None = None,
        label: str | None = None) -> RunResult:
    """Run (or resume) the training a config describes; see the module docstring.

    Parameters
    ----------
    config : RunConfig
    sink : FileSink, MemorySink or another sink, optional
        Where records and checkpoints go; default ``FileSink(default_folder(config))``.
    resume : bool
        Continue from the sink's checkpoint (written by a run whose config differs at most in
        ``train.steps``).
    progress : bool or None
        Show a progress bar (None: only when writing to a terminal).
    label : str, optional
        Progress-bar description.

    Raises
    ------
    ConfigError, BackendError, CheckpointError
        For bad settings, an unusable backend, or a checkpoint that cannot be resumed; a run
        that diverges or is stopped returns normally with that status.
    """
    started = time.perf_counter()
    sink = FileSink(default_folder(config)) if sink is None else sink
    t = config.train
    with backend.use_backend(t["backend"]):
        task, model, optimizer, loss = build(config)  # refuses sizes whose memory cannot exist
        history, loaded = sink.start(config, resume)
        params, step, stream_state = model.params, 0, None
        if loaded is not None:
            try:
                step, stream_state = _restore(config, model, optimizer, loaded,
                                              sink.checkpoint_location())
            except BaseException:
                sink.finish(None)
                raise
        # forward-pass equivalents spent so far (checkpointed: they resume exactly)
        spent = dict.fromkeys(COST_KEYS, 0.0)
        if loaded is not None:
            spent.update({k: float(v) for k, v in loaded[0].get("cost", {}).items()})
        eval_seed = backend.derive_seed(t["seed"], STREAM_EVAL)
        saved = {"step": step if loaded is not None else None}

        def record(entry):
            history.append(entry)
            sink.record(entry)

        def save_checkpoint():
            """Write a checkpoint if the state is finite; return whether it was written."""
            state = {"params": params, "optimizer": optimizer.state_dict(),
                     "stream_state": stream_state, "cost": dict(spent)}
            if not _finite(state):
                return False
            sink.save_checkpoint(state, {"step": step, "config": config.to_dict(),
                                         "run_id": config.run_id(),
                                         "model": {"kind": config.model["name"]}})
            saved["step"] = step
            return True

        def measure(split, size, seed):
            with backend.quiet_float_errors():
                return evaluate(model, params, task,
                                task.eval_batches(size, seed, t["eval_batch"], split=split),
                                carry_state=task.carries_state)

        def log_eval(window):
            metrics = measure("validation", t["eval_size"], eval_seed)
            if window:
                entry = {"kind": "train", "step": step,
                         "loss": sum(w["loss"] for w in window) / len(window),
                         "grad_norm": max(w["grad_norm"] for w in window)}
                opt_keys = dict.fromkeys(k for w in window for k in w["optimizer"])
                if opt_keys:  # each metric averaged over the steps that report it
                    entry["optimizer"] = {
                        k: sum(w["optimizer"][k] for w in window if k in w["optimizer"])
                        / sum(k in w["optimizer"] for w in window) for k in opt_keys}
                entry.update(spent)
                record(entry)
            record({"kind": "eval", "step": step, **metrics})

        status, reason, window = "finished", None, []
        bar = tqdm(total=t["steps"], initial=step, desc=label or config.run_id(),
                   disable=None if progress is None else not progress, leave=False)
        try:
            if not history:
                log_eval([])
                save_checkpoint()  # step 0: a diverging first update leaves a good checkpoint
            while step < t["steps"]:
                rng = backend.host_rng(backend.derive_seed(t["seed"], STREAM_TRAIN, step))
                # a stream's window is a function of the step, so a resumed run continues it
                x, targets, mask = (task.batch(rng, t["batch"], step=step)
                                    if task.carries_state else task.batch(rng, t["batch"]))
                batch = objective.Batch(x, targets, mask,
                                        stream_state if task.carries_state else None)
                if t["flow_every"] and step % t["flow_every"] == 0:
                    with backend.quiet_float_errors():
                        record({"kind": "flow", "step": step,
                                **gradient_flow(model, params, batch, loss)})
                try:
                    with backend.quiet_float_errors():
                        metrics = train_step(model, params, optimizer, batch, loss, t["clip"],
                                             t["truncate"])
                except DivergenceError as exc:
                    status, reason = "diverged", str(exc)
                    break
                stream_state = metrics.pop("final_state") if task.carries_state else None
                for key, value in metrics.pop("cost").items():
                    spent[key] += value
                if task.carries_state and not _finite(stream_state):
                    status, reason = "diverged", "the carried recurrent state is not finite"
                    break
                step += 1
                window.append(metrics)
                bar.update(1)
                if step % t["eval_every"] == 0 or step == t["steps"]:
                    log_eval(window)
                    window = []
                    bar.set_postfix(loss=f"{history[-2]['loss']:.4g}")
                    if t["stop_when_solved"] and task.solved(history[-1].get(task.metric_name)):
                        save_checkpoint()
                        break
                interval = t["checkpoint_every"] or t["eval_every"]
                if (step % interval == 0 or step == t["steps"]) and not save_checkpoint():
                    status, reason = "diverged", "the parameters or optimizer state are not finite"
                    step -= 1  # report the update that produced them
                    break
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
            status, reason = "stopped", str(exc) or "interrupted"
        except BaseException:
            bar.close()
            sink.finish(None)
            raise
        finally:
            bar.close()
        where = sink.checkpoint_location()
        if status == "diverged":
            message = (f"training diverged at step {step + 1}: {reason}; the last good "
                       f"checkpoint is {where} (step {saved['step']})")
            record({"kind": "diverged", "step": step + 1, "message": message})
        elif status == "stopped":
            message = (f"stopped ({reason}) after step {step}; the last checkpoint is {where} "
                       f"(step {saved['step']})")
            record({"kind": "stopped", "step": step, "message": message})
        else:
            message = None
        test = {}
        if status == "finished" and t["test_size"]:
            test = measure("test", t["test_size"], backend.derive_seed(t["seed"], STREAM_TEST))
            record({"kind": "test", "step": step, **test})
        evals = [r for r in history if r["kind"] == "eval"]
        final = {k: v for k, v in evals[-1].items() if k not in ("kind", "step")} if evals else {}
        result = RunResult(config, status, step, reason, message,
                           {k: backend.to_host(v) for k, v in params.items()}, history, final,
                           test, task.metric_name, task.baseline_value(), task.threshold,
                           _title(config), config.run_id(), time.perf_counter() - started)
        sink.finish(result)
    return result


def _title(config: RunConfig) -> str:
    options = ", ".join(f"{k}={v}" for k, v in config.options("task").items())
    return f"{config.task['name']} {options}".strip()


def _restore(config, model, optimizer, loaded, where):
    """Load a checkpoint's state into ``model.params`` and ``optimizer``; return the step it
    reached and the carried stream state."""
    state, meta = loaded
    try:
        saved = RunConfig.from_dict(meta["config"])
    except Exception as exc:  # a config this rnnlab cannot read: name it, don't misread it
        raise CheckpointError(f"checkpoint {where} holds a config this rnnlab cannot read "
                              f"({exc}); start the run again in a new folder") from exc
    if int(meta["step"]) > config.train["steps"]:
        raise CheckpointError(f"checkpoint {where} is at step {meta['step']}, beyond "
                              f"train.steps = {config.train['steps']}; resume with more steps "
                              f"(--steps > {meta['step']})")
    differs = config.differences(saved)
    if differs:
        raise CheckpointError(f"checkpoint {where} was written by a run with different settings "
                              f"({', '.join(differs)}); resume with the same settings")
    params_host = state.get("params", {})
    if list(params_host) != list(model.params):
        raise CheckpointError(f"checkpoint {where} holds parameters {list(params_host)}, "
                              f"the model has {list(model.params)}")
    for name, a in params_host.items():
        model.params[name] = backend.to_device(a, dtype=model.params[name].dtype)
    optimizer.load_state_dict(state["optimizer"])
    stream = state.get("stream_state")
    return int(meta["step"]), None if stream is None else device_copy(stream)


__all__ = ["COST_KEYS", "RunResult", "STATUSES", "build", "default_folder", "evaluate", "run",
           "supply_needs", "train_step", "update_cost"]
