"""The memory tasks (``shared/notes/tasks.md`` sections 2-4): copying, variable copying and
denoising. Exact layouts, the memoryless baseline scored through the task's own metric, the
perfect predictor, option checks, determinism, the registry, the CLI help and the trainer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import ConfigError, RunConfig, backend
from rnnlab.cli import main
from rnnlab.tasks import TASKS, Copying, Denoising, VariableCopying, make_task
from rnnlab.train import MemorySink, build, run

#            name: (class, outputs, smallest T, steps for T)
SPECS = {
    "copying": (Copying, "every", 1, lambda T: T + 20),
    "variable-copying": (VariableCopying, "every", 2, lambda T: T + 20),
    "denoising": (Denoising, "masked", 10, lambda T: T + 11),
}
NAMES = tuple(SPECS)
LN8 = math.log(8)


def _host(task, seed, B):
    x, targets, mask = task.batch(backend.host_rng(seed), B)
    return (backend.to_host(x), backend.to_host(targets),
            None if mask is None else backend.to_host(mask))


def _ids(x):
    """The symbol at each step, checking that the inputs are one-hot."""
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    assert set(np.unique(x)) <= {0.0, 1.0}
    return x.argmax(axis=-1)


def _metric(task, out, targets, mask):
    to = backend.to_device
    return task.metric(to(out), to(targets), None if mask is None else to(mask))


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_declared_model(xp, name):
    cls, outputs, _, steps = SPECS[name]
    T, B = 12, 7
    task = make_task(name, T=T)
    assert isinstance(task, cls) and task.name == name
    assert (task.n_in, task.n_out, task.outputs, task.loss) == (10, 9, outputs, "cross_entropy")
    assert (task.metric_name, task.better) == ("xent", "lower")
    assert task.length == steps(T) and not task.carries_state
    x, targets, mask = task.batch(backend.host_rng(0), B)
    assert isinstance(x, xp.ndarray) and isinstance(targets, xp.ndarray)
    assert x.shape == (steps(T), B, 10) and x.dtype == np.float32  # the training dtype
    assert targets.shape == (steps(T), B) and targets.dtype == np.int64
    if outputs == "masked":
        assert isinstance(mask, xp.ndarray) and mask.shape == (steps(T), B)
        assert mask.dtype == np.float32
    else:
        assert mask is None
    x64, _, mask64 = make_task(name, T=T, dtype="float64").batch(backend.host_rng(0), 3)
    assert x64.dtype == np.float64 and (mask64 is None or mask64.dtype == np.float64)


# ---------------------------------------------------------------------------- layouts
def test_copying_layout():
    """T = 5: 25 steps; data at 0..9, blank 10..13 (T - 1 steps), marker at 14 (T + 9), blank
    15..24; targets blank at 0..14, the data at 15..24."""
    T, B = 5, 40
    x, targets, mask = _host(Copying(T), 1, B)
    ids = _ids(x)
    assert ids.shape == (25, B) and mask is None
    data = ids[:10]
    assert data.min() >= 1 and data.max() <= 8
    expected = np.zeros((25, B), dtype=np.int64)
    expected[:10] = data
    expected[14] = 9
    np.testing.assert_array_equal(ids, expected)
    want = np.zeros((25, B), dtype=np.int64)
    want[15:] = data
    np.testing.assert_array_equal(targets, want)
    # the smallest lag: no blank between the data and the marker
    ids1 = _ids(_host(Copying(1), 2, 3)[0])
    assert ids1.shape[0] == 21 and (ids1[10] == 9).all() and (ids1[11:] == 0).all()


def test_variable_copying_layout():
    """T = 6: 26 steps; the marker at one loc in [11, 16); the data the targets at
    loc+1..loc+10; every other input after the data and every other target blank."""
    T, B = 6, 300
    x, targets, mask = _host(VariableCopying(T), 3, B)
    ids = _ids(x)
    assert ids.shape == (26, B) and mask is None
    data = ids[:10]
    assert data.min() >= 1 and data.max() <= 8
    assert ((ids[10:] == 9).sum(axis=0) == 1).all()
    loc = 10 + (ids[10:] == 9).argmax(axis=0)
    assert loc.min() >= 11 and loc.max() <= T + 9
    for b in range(B):
        expected = np.zeros(26, dtype=np.int64)
        expected[:10] = data[:, b]
        expected[loc[b]] = 9
        np.testing.assert_array_equal(ids[:, b], expected)
        want = np.zeros(26, dtype=np.int64)
        want[loc[b] + 1:loc[b] + 11] = data[:, b]
        np.testing.assert_array_equal(targets[:, b], want)


def test_variable_copying_marker_covers_its_range():
    """loc is uniform over the T - 1 positions 11..T+9: over 4000 draws for T = 20 each of the
    19 positions is expected ~210 times (sd ~14), so each appears, none outside, and every count
    is within 5 sd of the mean."""
    T, B = 20, 4000
    task = VariableCopying(T)
    assert task.marker_range == (11, T + 10)
    ids = _ids(_host(task, 4, B)[0])
    loc = 10 + (ids[10:] == 9).argmax(axis=0)
    counts = np.bincount(loc, minlength=T + 20)
    assert set(np.flatnonzero(counts)) == set(range(11, T + 10))
    mean = B / (T - 1)
    sd = math.sqrt(B * (1 / (T - 1)) * (1 - 1 / (T - 1)))
    assert np.abs(counts[11:T + 10] - mean).max() < 5 * sd
    assert (VariableCopying(2).marker_range) == (11, 12)  # the smallest T: one position


def test_denoising_layout():
    """T = 14: 25 steps; 10 data symbols at distinct positions among 0..13, in order; noise
    (blank) at the other 4; marker at 14; blank 15..24; targets the data at 15..24; mask 1 at
    exactly those steps."""
    T, B = 14, 200
    x, targets, mask = _host(Denoising(T), 5, B)
    ids = _ids(x)
    assert ids.shape == (25, B)
    head = ids[:T]
    assert ((head != 0).sum(axis=0) == 10).all()
    assert head.max() <= 8  # no marker among the data
    np.testing.assert_array_equal(ids[T], 9)
    np.testing.assert_array_equal(ids[T + 1:], 0)
    for b in range(B):
        np.testing.assert_array_equal(targets[T + 1:, b], head[head[:, b] != 0, b])
    np.testing.assert_array_equal(targets[:T + 1], 0)
    assert targets[T + 1:].min() >= 1
    want = np.zeros((25, B))
    want[T + 1:] = 1
    np.testing.assert_array_equal(mask, want)


def test_denoising_positions_are_uniform_subsets():
    """Each position in 0..T-1 carries data with probability 10/T; at T = 10 all do. 3000
    sequences at T = 20: each position is data ~1500 times (sd ~27); 5 sd bound."""
    ids = _ids(_host(Denoising(10), 6, 5)[0])
    assert (ids[:10] != 0).all()
    T, B = 20, 3000
    ids = _ids(_host(Denoising(T), 7, B)[0])
    hits = (ids[:T] != 0).sum(axis=1)
    p = 10 / T
    assert np.abs(hits - B * p).max() < 5 * math.sqrt(B * p * (1 - p))


def test_data_symbols_are_uniform_over_1_to_8():
    x, _, _ = _host(Copying(3), 8, 2000)
    counts = np.bincount(_ids(x)[:10].ravel(), minlength=9)
    assert counts[0] == 0
    n, p = 20000, 1 / 8  # each symbol ~2500 times, sd ~47; 5 sd bound
    assert np.abs(counts[1:] - n * p).max() < 5 * math.sqrt(n * p * (1 - p))


# ---------------------------------------------------------------------------- baselines
def _memoryless(task, x):
    """The memoryless predictor of the baseline, built from the layout and the inputs only
    (never the targets): blank certain, except uniform over the data symbols 1..8 at the 10
    recall steps, which it locates from the marker it sees (the 10 steps after it)."""
    ids = x.argmax(axis=-1)
    L, B = ids.shape
    after = np.zeros((L, B), dtype=bool)
    marker = (ids == 9).argmax(axis=0)
    for k in range(1, 11):
        after[marker + k, np.arange(B)] = True
    off = -60.0  # e^-60: ruled-out classes add < 1e-24 nats per step
    logits = np.full((L, B, 9), off)
    logits[..., 0] = np.where(after, off, 0.0)
    logits[..., 1:] = np.where(after, 0.0, off)[..., None]
    return logits


@pytest.mark.parametrize("name,T", [("copying", 7), ("copying", 100), ("variable-copying", 9),
                                    ("variable-copying", 100), ("denoising", 10),
                                    ("denoising", 100)])
def test_memoryless_predictor_scores_the_baseline(name, T):
    """The cross-entropy of the hand-built memoryless predictor does not depend on the draw
    (every target lies in its support with the same probability), so it must equal the
    closed-form baseline up to float64 rounding of a mean over L x B terms (1e-12). Its
    accuracy is the fraction of recall targets equal to its arg-max (class 1), p = 1/8, on
    10 x 2000 positions: standard error ~2.3e-3, allowed 5."""
    B = 2000
    task = make_task(name, T=T, dtype="float64")
    x, targets, mask = _host(task, 11, B)
    got = _metric(task, _memoryless(task, x), targets, mask)
    want = task.baseline()
    assert set(got) == set(want) == {"xent", "accuracy", "recall_error"}
    assert got["xent"] == pytest.approx(want["xent"], rel=1e-12)
    assert task.baseline_value() == want["xent"]
    p = want["accuracy"]
    assert abs(got["accuracy"] - p) < 5 * math.sqrt(p * (1 - p) / (10 * B))
    assert got["recall_error"] == pytest.approx(1 - got["accuracy"], abs=1e-15)
    assert task.threshold == pytest.approx(0.1 * want["xent"], rel=1e-15)
    assert not task.solved(got["xent"])


def test_baselines_closed_forms():
    """``tasks.md``: 10 ln 8 / (T + 20) = 0.173 (T = 100), 0.0945 (T = 200) for copying (not
    [NRU]'s printed T + 2n); the same for variable copying; ln 8 for denoising."""
    assert Copying(100).baseline()["xent"] == pytest.approx(0.1733, abs=1e-4)
    assert Copying(200).baseline()["xent"] == pytest.approx(0.0945, abs=1e-4)
    assert Copying(100).baseline()["xent"] != pytest.approx(10 * LN8 / (100 + 16))
    assert VariableCopying(100).baseline() == Copying(100).baseline()
    assert Denoising(100).baseline() == pytest.approx(
        {"xent": LN8, "accuracy": 0.125, "recall_error": 0.875})
    assert Denoising(100).threshold == pytest.approx(LN8 / 10)


# ---------------------------------------------------------------------------- metric
def _perfect(targets, mask):
    """Right at every step (blank where blank is due); for a masked task, a confident wrong
    class at every unscored step, which neither the loss nor the accuracy may see."""
    out = np.full((*targets.shape, 9), -20.0)
    np.put_along_axis(out, targets[..., None], 20.0, axis=-1)
    if mask is not None:
        bad = np.full_like(out, -20.0)
        np.put_along_axis(bad, ((targets + 1) % 9)[..., None], 20.0, axis=-1)
        out = np.where((mask == 0)[..., None], bad, out)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_perfect_predictor_solves(name):
    task = make_task(name, T=15)
    _, targets, mask = _host(task, 12, 30)
    got = _metric(task, _perfect(targets, mask), targets, mask)
    assert got["accuracy"] == 1.0 and got["recall_error"] == 0.0
    assert got["xent"] < 1e-12  # 8 e^-40 per step: 3e-17
    assert task.solved(got["xent"])


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_counts_the_recall_steps_only(name):
    """A wrong blank step changes xent but not accuracy; one wrong recalled symbol out of
    10 x 4 recall steps gives accuracy 39/40; a NaN row is wrong."""
    task = make_task(name, T=12)
    _, targets, mask = _host(task, 13, 4)
    out = _perfect(targets, mask)
    if mask is None:
        out[0, 0] = 0.0  # step 0 is always a blank target here
        got = _metric(task, out, targets, mask)
        assert got["accuracy"] == 1.0 and got["xent"] > 1e-3
    recall = np.argwhere(targets != 0)
    t, b = recall[5]
    out[t, b] = -20.0
    out[t, b, (targets[t, b] % 8) + 1] = 20.0  # another data symbol
    got = _metric(task, out, targets, mask)
    assert got["accuracy"] == 39 / 40 and got["recall_error"] == pytest.approx(1 / 40)
    t, b = recall[17]
    out[t, b] = np.nan
    with np.errstate(invalid="ignore"):
        assert _metric(task, out, targets, mask)["accuracy"] == 38 / 40


def test_denoising_metric_needs_the_mask():
    task = Denoising(10)
    _, targets, mask = _host(task, 0, 3)
    with pytest.raises(ConfigError, match="mask"):
        _metric(task, _perfect(targets, mask), targets, None)


def test_metric_refuses_targets_without_recall_steps():
    task = Copying(2)
    targets = np.zeros((22, 2), dtype=np.int64)
    with pytest.raises(ConfigError, match="recall"):
        _metric(task, np.zeros((22, 2, 9)), targets, None)


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_other_seed_other_batch(xp, name):
    task = make_task(name, T=11)
    a, b, c = _host(task, 42, 6), _host(task, 42, 6), _host(task, 43, 6)
    for u, v in zip(a, b):
        if u is not None:
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    with backend.use_backend("numpy"):
        reference = _host(task, 42, 6)
    np.testing.assert_array_equal(a[0], reference[0])  # drawn on the host on every backend
    first = [backend.to_host(x) for x, _, _ in task.eval_batches(13, seed=1, batch_size=5)]
    again = [backend.to_host(x) for x, _, _ in task.eval_batches(13, seed=1, batch_size=5)]
    assert [u.shape[1] for u in first] == [5, 5, 3]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("name", NAMES)
def test_registry_and_bad_options(name):
    cls, _, lowest, steps = SPECS[name]
    assert name in TASKS and [o.name for o in TASKS.options(name)] == ["T"]
    task = make_task(name, T=30)
    assert isinstance(task, cls) and repr(task) == f"{cls.__name__}(T=30)"
    assert make_task(name).T == 100  # the declared default
    assert make_task(name, T=lowest).batch(backend.host_rng(0), 2)[0].shape[0] == steps(lowest)
    for bad in (lowest - 1, 0, -3, 2.5, True, "30", None):
        with pytest.raises(ConfigError, match=rf"T must be an integer >= {lowest}"):
            make_task(name, T=bad)
    with pytest.raises(ConfigError, match=rf"T must be an integer >= {lowest}"):
        cls(lowest - 1)  # direct construction checks too
    with pytest.raises(ConfigError, match=rf"task '{name}' has no option 'length'"):
        make_task(name, length=50)
    with pytest.raises(ConfigError, match="batch_size"):
        make_task(name, T=lowest).batch(backend.host_rng(0), 0)


# ---------------------------------------------------------------------------- CLI, trainer
def test_listed_by_the_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
        assert f"  {name}: T=100" in out  # the options epilog, generated from the registry


@pytest.mark.parametrize("name", NAMES)
def test_trains_through_the_runner(name):
    """Each task plugs into rnnlab.config and the trainer: the model takes its outputs mode and
    sizes from the task, the loss its targets and mask, the evaluation its metric."""
    T = SPECS[name][2]
    config = RunConfig(task={"name": name, "T": T}, model={"name": "elman", "hidden": 6},
                       optimizer={"name": "adam", "lr": 1e-2},
                       train={"steps": 4, "batch": 5, "eval_size": 10, "test_size": 10,
                              "eval_batch": 10})
    task, model, _, _ = build(config)
    assert isinstance(task, SPECS[name][0]) and model.spec.outputs == SPECS[name][1]
    result = run(config, MemorySink(), progress=False)
    want = make_task(name, T=T).baseline()
    assert result.status == "finished" and result.step == 4
    assert result.metric == "xent" and result.baseline == want["xent"]
    assert result.threshold == pytest.approx(0.1 * want["xent"])
    for metrics in (result.final, result.test):
        assert set(metrics) == {"xent", "accuracy", "recall_error"}
        assert 0.0 <= metrics["accuracy"] <= 1.0 and math.isfinite(metrics["xent"])
    train = [r for r in result.history if r.get("kind") == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)
