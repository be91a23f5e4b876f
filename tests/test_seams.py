"""The seams: a model, an optimizer and a task registered from outside the package train
through ``run()`` and the CLI without any change to the trainer.

The throw-away model is a linear cell whose recurrent state is a pair ``(h, s)`` per layer (h_t =
W_in x_t + W_rec h_{t-1}, s_t = s_{t-1} + h_t, y = W_out s), so the trainer must treat state as
opaque. The throw-away optimizer needs ``model``, ``batch``, ``closure`` and ``gvp``: it takes the
gradient step whose length minimises the Gauss-Newton model of the loss, backtracks with the
closure, keeps structured state (a scalar, an array, a list) and reports step metrics.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rnnlab import backend, gradcheck, losses, objective
from rnnlab.cli import main
from rnnlab.config import RunConfig
from rnnlab.models import MODELS, make_model
from rnnlab.optim import OPTIMIZERS, Optimizer
from rnnlab.options import Option
from rnnlab.tasks import TASKS, AddingProblem, Task
from rnnlab.train import FileSink, MemorySink, run
from rnnlab.train import checkpoint


# ----------------------------------------------------------------------------- a model
@dataclasses.dataclass(frozen=True)
class SumSpec:
    n_in: int
    hidden: tuple
    n_out: int
    outputs: str
    kind = "sum-cell"

    @property
    def widths(self):
        return self.hidden

    def param_shapes(self):
        H = self.hidden[0]
        return {"W_in": (H, self.n_in), "W_rec": (H, H), "W_out": (self.n_out, H)}


@dataclasses.dataclass(frozen=True)
class SumCache:
    x: object
    h: object   # (T + 1, B, H)
    s: object   # (T + 1, B, H)

    @property
    def final_state(self):
        return [(self.h[-1].copy(), self.s[-1].copy())]


class SumCell:
    """h_t = W_in x_t + W_rec h_{t-1};  s_t = s_{t-1} + h_t;  y_t = W_out s_t."""

    options = (Option.integer("width", 3, "units", minimum=1),
               Option.number("scale", 0.3, "weight scale", minimum=0))

    def __init__(self, spec, params):
        self.spec, self.params = spec, params

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, width=3, scale=0.3):
        spec = SumSpec(n_in, (width,), n_out, outputs)
        rng = np.random.default_rng(seed)
        dtype = backend.resolve_dtype(dtype)
        params = {k: backend.to_device(scale * rng.standard_normal(s) / np.sqrt(s[1]),
                                       dtype=dtype) for k, s in spec.param_shapes().items()}
        return cls(spec, params)

    def forward(self, params, x, state=None):
        xp = backend.get_xp()
        T, B, _ = x.shape
        H = self.spec.hidden[0]
        h = xp.zeros((T + 1, B, H), dtype=x.dtype)
        s = xp.zeros((T + 1, B, H), dtype=x.dtype)
        if state is not None:
            h[0], s[0] = state[0]
        for t in range(T):
            h[t + 1] = x[t] @ params["W_in"].T + h[t] @ params["W_rec"].T
            s[t + 1] = s[t] + h[t + 1]
        y = s[1:] @ params["W_out"].T
        return (y[-1] if self.spec.outputs == "last" else y), SumCache(x, h, s)

    def backward(self, params, dy, cache, d_final_state=None):
        xp = backend.get_xp()
        T = cache.x.shape[0]
        d_s_out = xp.zeros_like(cache.s[1:])
        if self.spec.outputs == "last":
            d_s_out[-1] = dy @ params["W_out"]
            grads_out = dy.T @ cache.s[-1]
        else:
            d_s_out = dy @ params["W_out"]
            grads_out = np.einsum("tbo,tbh->oh", dy, cache.s[1:])
        g_in = xp.zeros_like(params["W_in"])
        g_rec = xp.zeros_like(params["W_rec"])
        d_s = xp.zeros_like(cache.s[0])
        d_h = xp.zeros_like(cache.h[0])
        for t in range(T - 1, -1, -1):
            d_s = d_s + d_s_out[t]
            d_h = d_h + d_s            # s_t depends on h_t with coefficient 1
            g_in += d_h.T @ cache.x[t]
            g_rec += d_h.T @ cache.h[t]
            d_h = d_h @ params["W_rec"]
        return {"W_in": g_in, "W_rec": g_rec, "W_out": grads_out}, [(d_h, d_s)]

    def rop(self, params, v, cache):
        xp = backend.get_xp()
        T = cache.x.shape[0]
        r_h = xp.zeros_like(cache.h)
        r_s = xp.zeros_like(cache.s)
        for t in range(T):
            r_h[t + 1] = (cache.x[t] @ v["W_in"].T + cache.h[t] @ v["W_rec"].T
                          + r_h[t] @ params["W_rec"].T)
            r_s[t + 1] = r_s[t] + r_h[t + 1]
        r_y = cache.s[1:] @ v["W_out"].T + r_s[1:] @ params["W_out"].T
        return (r_y[-1] if self.spec.outputs == "last" else r_y), (r_h, r_s)


# ----------------------------------------------------------------------------- an optimizer
class GaussNewtonLineStep(Optimizer):
    """p <- p - alpha g with alpha = g.g / (g.G g + damping), halved until the loss falls."""

    name = "gn-line"
    needs = frozenset({"model", "batch", "closure", "gvp"})
    options = (Option.number("damping", 1e-3, "added to g.Gg", minimum=0),
               Option.integer("max_backtracks", 5, "halvings of alpha", minimum=0))

    def _update(self, params, grads, *, model, batch, closure, gvp):
        xp = backend.get_xp()
        assert model.spec.kind in ("sum-cell", "elman") and batch.T == batch.x.shape[0]
        damping = self.state.setdefault("damping", self.hyperparameters["damping"])
        gg = float(sum(xp.vdot(g, g) for g in grads.values()))
        g_gv = gvp(params, grads)
        gGg = float(sum(xp.vdot(grads[k], g_gv[k]) for k in grads))
        alpha = gg / (gGg + damping)
        before, _ = closure(params)
        trial = {k: p - alpha * grads[k] for k, p in params.items()}
        backtracks = 0
        while closure(trial)[0] > before and backtracks < self.hyperparameters["max_backtracks"]:
            alpha, backtracks = alpha / 2, backtracks + 1
            trial = {k: p - alpha * grads[k] for k, p in params.items()}
        for k, p in params.items():
            p[...] = trial[k]
        self.state["damping"] = damping * (2.0 if backtracks else 0.5)
        self.state["last_direction"] = {k: g.copy() for k, g in grads.items()}
        self.state.setdefault("alphas", []).append(alpha)
        return {"alpha": alpha, "backtracks": float(backtracks)}


# ----------------------------------------------------------------------------- a stream task
class AddingStream(AddingProblem):
    """The adding problem read as one stream: each batch's state starts from the last one's."""

    name = "adding-stream"
    carries_state = True
    outputs = "every"

    def batch(self, rng, batch_size, step=0):
        """A stream task is also given the training step (which window to read); this one
        draws every window from ``rng`` and ignores it."""
        x, targets, mask = super().batch(rng, batch_size)
        xp = backend.get_xp()
        return x, xp.broadcast_to(targets, (self.T,) + targets.shape).copy(), mask


@pytest.fixture
def registered():
    with MODELS.temporarily("sum-cell", SumCell), \
            OPTIMIZERS.temporarily("gn-line", GaussNewtonLineStep), \
            TASKS.temporarily("adding-stream", AddingStream):
        yield


def _config(**sections):
    base = {"task": {"name": "adding", "T": 5}, "model": {"name": "sum-cell"},
            "optimizer": {"name": "gn-line"},
            "train": {"batch": 4, "steps": 6, "eval_every": 3, "eval_size": 8,
                      "dtype": "float64"}}
    base.update(sections)
    return RunConfig.from_dict(base)


# ----------------------------------------------------------------------------- tests
def test_throwaway_model_gradient_and_rop_are_right(registered):
    """The toy is itself checked, so a failure below means the seams, not the toy."""
    model = make_model("sum-cell", 2, 2, "every", dtype="float64", width=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 2))
    y = rng.standard_normal((4, 3, 2))
    state = [(rng.standard_normal((3, 3)), rng.standard_normal((3, 3)))]
    _, grads, _ = objective.loss_and_grads(model, model.params, x, y, losses.mse, state=state)
    report = gradcheck.check_gradients(
        lambda p: objective.loss_value(model, p, x, y, losses.mse, state=state),
        model.params, grads)
    assert report.max_error < 1e-7, report  # float64 central differences on a linear model


def test_throwaway_components_train_through_run(registered):
    result = run(_config(), MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 6
    evals = [r["mse"] for r in result.history if r["kind"] == "eval"]
    assert evals[-1] < evals[0]  # the Gauss-Newton line step decreases the loss
    train = [r for r in result.history if r["kind"] == "train"]
    assert all(set(r["optimizer"]) == {"alpha", "backtracks"} for r in train)
    assert all(r["optimizer"]["alpha"] > 0 for r in train)


def test_throwaway_optimizer_state_survives_checkpoints_exactly(registered, tmp_path):
    straight = run(_config(train={"batch": 4, "steps": 6, "eval_every": 3, "eval_size": 8,
                                  "dtype": "float64"}), MemorySink(), progress=False)
    config = _config(train={"batch": 4, "steps": 3, "eval_every": 3, "eval_size": 8,
                            "dtype": "float64"})
    sink = FileSink(str(tmp_path / "run"))
    run(config, sink, progress=False)
    state, _ = checkpoint.load(sink.checkpoint_path)
    saved = state["optimizer"]["state"]
    assert isinstance(saved["damping"], float) and len(saved["alphas"]) == 3
    assert set(saved["last_direction"]) == {"W_in", "W_rec", "W_out"}
    resumed = run(config.with_overrides({"train.steps": 6}), sink, resume=True, progress=False)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


def test_throwaway_components_train_through_the_cli(registered, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--task", "adding", "--T", "5", "--model", "sum-cell", "--width",
                 "2", "--optimizer", "gn-line", "--damping", "0.01", "--steps", "4",
                 "--eval-every", "2", "--eval-size", "8", "--batch", "4", "--dtype", "float64",
                 "--out", str(out), "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"name": "sum-cell", "width": 2, "scale": 0.3}
    assert config["optimizer"] == {"name": "gn-line", "damping": 0.01, "max_backtracks": 5}
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4]
    assert "alpha" in records[1]["optimizer"]


def test_help_lists_a_registered_components_options(registered, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "sum-cell: width=3 scale=0.3" in text
    assert "gn-line: damping=0.001 max_backtracks=5" in text
    assert "--max-backtracks" in text


def test_stream_state_is_carried_and_checkpointed(registered, tmp_path):
    """For a task that carries state, batch k starts from batch k-1's final state; a resumed
    run restores that state, so it ends bit-identical to a straight one."""
    seen = []
    real_forward = SumCell.forward

    def spy(self, params, x, state=None):
        y, cache = real_forward(self, params, x, state)
        seen.append((None if state is None else backend.to_host(state[0][1]).copy(),
                     backend.to_host(cache.final_state[0][1]).copy(), x.shape[1]))
        return y, cache

    train = {"batch": 4, "steps": 4, "eval_every": 2, "eval_size": 8, "dtype": "float64"}
    task = {"name": "adding-stream", "T": 4}
    opt = {"name": "sgd", "lr": 0.01}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SumCell, "forward", spy)
        run(_config(task=task, optimizer=opt, train=train), MemorySink(), progress=False)
    training = [s for s in seen if s[2] == 4]  # batch 4: training; eval chunks are 8 wide
    for previous, current in zip(training, training[1:]):
        np.testing.assert_array_equal(current[0], previous[1])
    straight = run(_config(task=task, optimizer=opt, train=dict(train, steps=6)), MemorySink(),
                   progress=False)
    sink = MemorySink()
    run(_config(task=task, optimizer=opt, train=train), sink, progress=False)
    resumed = run(_config(task=task, optimizer=opt, train=dict(train, steps=6)), sink,
                  resume=True, progress=False)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


def test_evaluation_in_chunks_equals_one_chunk():
    config = RunConfig.from_dict({"task": {"T": 5}, "model": {"hidden": 4},
                                  "train": {"steps": 2, "eval_size": 30, "eval_batch": 30,
                                            "dtype": "float64"}})
    from rnnlab.train import build, evaluate
    task, model, _, _ = build(config)
    batches = list(task.eval_batches(30, 7, 30))
    whole = evaluate(model, model.params, task, batches)
    xp = backend.get_xp()
    x, t, _ = batches[0]
    pieces = [(x[:, a:b], t[a:b], None) for a, b in ((0, 7), (7, 20), (20, 30))]
    chunked = evaluate(model, model.params, task, pieces)
    assert xp is np
    assert chunked["mse"] == pytest.approx(whole["mse"], rel=1e-12)  # re-associated sums


def test_models_refuse_unknown_options_naming_them():
    with pytest.raises(Exception, match=r"model 'elman' has no option 'width'; its options: "
                                        r"hidden, layers"):
        make_model("elman", 2, 1, "last", width=3)
