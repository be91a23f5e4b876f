"""The eight pathological problems (``shared/notes/tasks.md`` section 1): layouts, masks, lengths,
targets re-derived from the inputs, determinism, the zero-one metric, the chance levels, the
registry, option checks, and one short training run each."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import ConfigError, RunConfig, backend
from rnnlab.tasks import (TASKS, Addition, Memory5, Memory20, Multiplication, RandomPermutation,
                          TemporalOrder2, TemporalOrder3, Xor, make_task)
from rnnlab.train import MemorySink, run

#            name: (class, n_in, n_out, outputs, loss, smallest T)
SPECS = {
    "addition": (Addition, 2, 1, "masked", "mse", 10),
    "multiplication": (Multiplication, 2, 1, "masked", "mse", 10),
    "xor": (Xor, 2, 2, "masked", "cross_entropy", 10),
    "order2": (TemporalOrder2, 8, 4, "masked", "cross_entropy", 10),
    "order3": (TemporalOrder3, 8, 8, "masked", "cross_entropy", 10),
    "permutation": (RandomPermutation, 100, 100, "every", "cross_entropy", 2),
    "memory5": (Memory5, 4, 4, "every", "cross_entropy", 11),
    "memory20": (Memory20, 7, 7, "every", "cross_entropy", 21),
}
NAMES = tuple(SPECS)
VARIABLE = ("addition", "multiplication", "xor", "order2", "order3")
OPERANDS = ("addition", "multiplication", "xor")
ORDERS = ("order2", "order3")


def _host(task, seed, B):
    x, targets, mask = task.batch(backend.host_rng(seed), B)
    return backend.to_host(x), backend.to_host(targets), None if mask is None else \
        backend.to_host(mask)


def _lengths_from_inputs(name, x):
    """Each sequence's length read off its inputs alone: the operand problems put their second
    -1 cue at L - 3; temporal order puts the trigger symbol (6) at L - 1."""
    if name in OPERANDS:
        cue = x[..., 1] == -1
        cue[0] = False  # the start cue
        assert (cue.sum(axis=0) == 1).all()
        return cue.argmax(axis=0) + 3
    trigger = x[..., 6] == 1
    assert (trigger.sum(axis=0) == 1).all()
    return trigger.argmax(axis=0) + 1


# ---------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_declared_model(xp, name):
    cls, n_in, n_out, outputs, loss, _ = SPECS[name]
    T, B = 30, 12
    task = make_task(name, T=T)
    assert isinstance(task, cls) and task.name == name
    assert (task.n_in, task.n_out, task.outputs, task.loss) == (n_in, n_out, outputs, loss)
    assert (task.metric_name, task.threshold, task.better) == ("error", 0.01, "lower")
    assert not task.carries_state
    x, targets, mask = task.batch(backend.host_rng(0), B)
    assert isinstance(x, xp.ndarray) and isinstance(targets, xp.ndarray)
    # variable lengths are padded to the longest possible one: int(1.1 * 30) - 1 = 32 steps
    steps = 32 if name in VARIABLE else T
    assert x.shape == (steps, B, n_in) and x.dtype == np.float32
    if loss == "mse":
        assert targets.shape == (steps, B, 1) and targets.dtype == np.float32
    else:
        assert targets.shape == (steps, B) and targets.dtype == np.int64
        assert int(targets.min()) >= 0 and int(targets.max()) < n_out
    if outputs == "masked":
        assert isinstance(mask, xp.ndarray) and mask.shape == (steps, B)
        assert mask.dtype == np.float32
    else:
        assert mask is None
    x64 = make_task(name, T=T, dtype="float64").batch(backend.host_rng(0), 3)
    assert x64[0].dtype == np.float64


@pytest.mark.parametrize("name", VARIABLE)
def test_lengths_and_mask(name):
    """Lengths are integers in [T, int(1.1 T)), all of them used; the mask is 1 exactly at each
    sequence's last real step; the inputs are zero after it."""
    T, B = 50, 3000
    task = make_task(name, T=T)
    x, targets, mask = _host(task, 1, B)
    assert x.shape[0] == task.max_length == 54  # int(55) - 1
    lengths = _lengths_from_inputs(name, x)
    assert lengths.min() >= T and lengths.max() < 55
    assert set(np.unique(lengths)) == set(range(50, 55))  # uniform over the 5 lengths
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask.sum(axis=0), 1.0)
    np.testing.assert_array_equal(mask.argmax(axis=0), lengths - 1)
    after = np.arange(x.shape[0])[:, None] >= lengths[None, :]
    assert (x[after] == 0).all()
    # targets are zero at every unscored step
    unscored = targets[..., 0] if targets.ndim == 3 else targets
    assert (unscored[mask == 0] == 0).all()


def test_smallest_length_is_fixed_length():
    """T = 10: int(1.1 * 10) = 11, so every sequence has length 10 and no padding."""
    task = Addition(10)
    x, _, mask = _host(task, 0, 50)
    assert x.shape[0] == 10
    np.testing.assert_array_equal(mask[-1], 1.0)


# ---------------------------------------------------------------------------- operands
@pytest.mark.parametrize("name", OPERANDS)
@pytest.mark.parametrize("T,first,second", [(100, (1, 10), (10, 50)), (200, (2, 20), (20, 100)),
                                            (30, (1, 3), (3, 15))])
def test_operand_layout_and_targets(name, T, first, second):
    """Markers: -1 at step 0 and at L - 3, +1 at one step in each scaled range ([MS11]: [1, 10)
    and [10, 50) for T = 100; the first range's lower end is at least 1, off the start cue);
    the target at L - 1 recomputed from the two marked values."""
    B = 4000
    task = make_task(name, T=T)
    x, targets, mask = _host(task, 2, B)
    values, marker = x[..., 0], x[..., 1]
    lengths = _lengths_from_inputs(name, x)
    cols = np.arange(B)
    assert set(np.unique(marker)) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(marker[0], -1.0)
    np.testing.assert_array_equal(marker[lengths - 3, cols], -1.0)
    assert ((marker == -1).sum(axis=0) == 2).all()
    assert ((marker == 1).sum(axis=0) == 2).all()
    positions = np.sort(np.argwhere(marker.T == 1)[:, 1].reshape(B, 2), axis=1)
    i, j = positions[:, 0], positions[:, 1]
    assert i.min() == first[0] and i.max() == first[1] - 1  # every end of the range is used
    assert j.min() == second[0] and j.max() == second[1] - 1
    real = np.arange(x.shape[0])[:, None] < lengths[None, :]
    if name == "xor":
        assert set(np.unique(values[real])) == {0.0, 1.0}
    else:
        assert values[real].min() >= 0 and values[real].max() < 1
    a, b = values[i, cols], values[j, cols]
    scored = mask.argmax(axis=0)
    if name == "addition":
        np.testing.assert_allclose(targets[scored, cols, 0], a + b, rtol=1e-6)
    elif name == "multiplication":
        np.testing.assert_allclose(targets[scored, cols, 0], a * b, rtol=1e-6)
    else:
        np.testing.assert_array_equal(targets[scored, cols], (a != b).astype(np.int64))
        assert 0.45 < targets[scored, cols].mean() < 0.55  # a fair coin (4000 draws, ~6 SE)


# ---------------------------------------------------------------------------- temporal order
@pytest.mark.parametrize("name,T,ranges", [
    ("order2", 100, [(1, 10), (40, 50)]), ("order2", 200, [(2, 20), (80, 100)]),
    ("order3", 100, [(1, 10), (30, 40), (50, 60)])])
def test_temporal_order_layout_and_targets(name, T, ranges):
    """One-hot symbols: start (7) at step 0, trigger (6) at L - 1, one X (4) or Y (5) in each
    inclusive range, distractors 0-3 elsewhere; the class recomputed from the X/Y order."""
    B = 4000
    task = make_task(name, T=T)
    x, targets, mask = _host(task, 3, B)
    lengths = _lengths_from_inputs(name, x)
    real = np.arange(x.shape[0])[:, None] < lengths[None, :]
    np.testing.assert_array_equal(x.sum(axis=-1), real.astype(np.float32))  # one-hot or empty
    ids = np.where(real, x.argmax(axis=-1), -1)
    np.testing.assert_array_equal(ids[0], 7)
    informative = (ids == 4) | (ids == 5)
    assert (informative.sum(axis=0) == len(ranges)).all()
    positions = np.sort(np.argwhere(informative.T)[:, 1].reshape(B, len(ranges)), axis=1)
    for k, (lo, hi) in enumerate(ranges):
        assert positions[:, k].min() == lo and positions[:, k].max() == hi
    others = real & ~informative
    others[0] = False
    others[lengths - 1, np.arange(B)] = False
    assert set(np.unique(ids[others])) == {0, 1, 2, 3}
    bits = np.take_along_axis(ids.T, positions, axis=1) == 5  # [k-th symbol is Y]
    if name == "order2":
        expected = 2 * bits[:, 0] + bits[:, 1]  # XX, XY, YX, YY
    else:
        expected = 4 * bits[:, 2] + 2 * bits[:, 1] + bits[:, 0]  # [MS11] code ordering
    got = targets[mask.argmax(axis=0), np.arange(B)]
    np.testing.assert_array_equal(got, expected)
    # classes are balanced in a batch (B = 4000 is a multiple of 4 and of 8)
    np.testing.assert_array_equal(np.bincount(got, minlength=task.n_out), B // task.n_out)


# ---------------------------------------------------------------------------- permutation
def test_permutation_layout_and_targets():
    T, B = 20, 1000
    task = RandomPermutation(T)
    x, targets, mask = _host(task, 4, B)
    assert mask is None
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    ids = x.argmax(axis=-1)
    assert set(np.unique(ids[0])) == {0, 1}
    assert (ids[0] == 1).sum() == B // 2  # balanced bit
    assert ids[1:].min() == 2 and ids[1:].max() == 99
    np.testing.assert_array_equal(targets[:-1], ids[1:])  # next-symbol prediction
    np.testing.assert_array_equal(targets[-1], ids[0])   # then recall the first symbol


# ---------------------------------------------------------------------------- memorisation
@pytest.mark.parametrize("name,K,C", [("memory5", 5, 2), ("memory20", 10, 5)])
def test_memorisation_layout_and_targets(name, K, C):
    T, B = 30, 500
    task = make_task(name, T=T)
    x, targets, _ = _host(task, 5, B)
    np.testing.assert_array_equal(x.sum(axis=-1), 1.0)
    ids = x.argmax(axis=-1)
    trigger, blank = C, C + 1
    data = ids[:K]
    assert data.max() < C and len(np.unique(data)) == C
    np.testing.assert_array_equal(ids[T - K - 1], trigger)
    np.testing.assert_array_equal(ids[K:T - K - 1], blank)
    np.testing.assert_array_equal(ids[T - K:], blank)
    np.testing.assert_array_equal(targets[:T - K], blank)
    np.testing.assert_array_equal(targets[T - K:], data)


def test_memory5_full_batch_enumerates_the_32_patterns():
    task = Memory5(12)
    x, targets, _ = _host(task, 0, 32)
    patterns = {tuple(col) for col in x[:5].argmax(axis=-1).T}
    assert len(patterns) == 32
    other = _host(task, 99, 32)
    np.testing.assert_array_equal(x, other[0])  # deterministic: the full batch for every seed
    x64 = _host(task, 0, 64)[0][:5].argmax(axis=-1).T
    _, counts = np.unique(x64, axis=0, return_counts=True)
    np.testing.assert_array_equal(counts, 2)  # multiples of 32: every pattern equally often


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_other_seed_other_batch(xp, name):
    task = make_task(name, T=SPECS[name][5] + 3)
    B = 10  # not a multiple of 32: memory5 samples its patterns
    a, b, c = _host(task, 42, B), _host(task, 42, B), _host(task, 43, B)
    for u, v in zip(a, b):
        if u is not None:
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])
    with backend.use_backend("numpy"):
        reference = _host(task, 42, B)
    np.testing.assert_array_equal(a[0], reference[0])  # drawn on the host on every backend


@pytest.mark.parametrize("name", ["addition", "order3", "memory20"])
def test_eval_batches_fixed_and_chunked(name):
    task = make_task(name, T=30)
    first = [backend.to_host(x) for x, _, _ in task.eval_batches(23, seed=1, batch_size=10)]
    again = [backend.to_host(x) for x, _, _ in task.eval_batches(23, seed=1, batch_size=10)]
    other = [backend.to_host(x) for x, _, _ in task.eval_batches(23, seed=2, batch_size=10)]
    assert [u.shape[1] for u in first] == [10, 10, 3]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0], other[0])


# ---------------------------------------------------------------------------- metric
def _perfect(task, targets, mask):
    """Outputs that are right at every scored step and wild (1e3 or garbage) elsewhere."""
    B = targets.shape[1]
    if task.loss == "mse":
        out = np.full(targets.shape, 1e3, dtype=np.float32)
        scored = mask == 1
        out[scored] = targets[scored]
        return out
    out = np.full((*targets.shape, task.n_out), -20.0, dtype=np.float32)
    np.put_along_axis(out, targets[..., None], 20.0, axis=-1)
    if mask is not None:  # unscored steps: a confident wrong class
        wrong = (targets + 1) % task.n_out
        bad = np.full_like(out, -20.0)
        np.put_along_axis(bad, wrong[..., None], 20.0, axis=-1)
        out = np.where((mask == 0)[..., None], bad, out)
    assert out.shape[1] == B
    return out


def _metric(task, out, targets, mask):
    to = backend.to_device
    return task.metric(to(out), to(targets), None if mask is None else to(mask))


@pytest.mark.parametrize("name", NAMES)
def test_metric_perfect_outputs_score_zero(name):
    task = make_task(name, T=SPECS[name][5] + 5)
    x, targets, mask = _host(task, 6, 40)
    got = _metric(task, _perfect(task, targets, mask), targets, mask)
    assert set(got) == {"error", "loss"}
    assert got["error"] == 0.0
    assert got["loss"] < 1e-6  # unscored steps are ignored by the loss too


@pytest.mark.parametrize("name", ["addition", "multiplication"])
def test_real_valued_criterion(name):
    """|y_hat - y| < 0.04 at the scored step: off by 0.05 is wrong, by 0.03 right; a miss in one
    of 8 sequences gives error 1/8; NaN is wrong."""
    task = make_task(name, T=20)
    _, targets, mask = _host(task, 7, 8)
    perfect = _perfect(task, targets, mask)
    for offset, error in [(0.05, 1.0), (-0.05, 1.0), (0.03, 0.0), (-0.03, 0.0)]:
        out = perfect + offset * mask[..., None]
        got = _metric(task, out, targets, mask)
        assert got["error"] == error
        assert got["loss"] == pytest.approx(offset ** 2, rel=1e-4)
    one = perfect.copy()
    s = int(mask[:, 3].argmax())
    one[s, 3, 0] += 0.05
    assert _metric(task, one, targets, mask)["error"] == 1 / 8
    one[s, 3, 0] = np.nan
    assert _metric(task, one, targets, mask)["error"] == 1 / 8


@pytest.mark.parametrize("name", ["xor", "order2", "order3"])
def test_softmax_single_step_criterion(name):
    task = make_task(name, T=20)
    _, targets, mask = _host(task, 8, 8)
    out = _perfect(task, targets, mask)
    s = int(mask[:, 5].argmax())
    out[s, 5] = 0.0
    out[s, 5, (targets[s, 5] + 1) % task.n_out] = 1.0  # one wrong arg-max at a scored step
    got = _metric(task, out, targets, mask)
    assert got["error"] == 1 / 8
    assert got["loss"] > 0.1


@pytest.mark.parametrize("name", ["order2", "memory5"])
def test_non_finite_logits_are_wrong(name):
    """NumPy's arg-max of a NaN row is the NaN's index: 0 for an all-NaN row, which would match
    a class-0 target; the metric counts such steps as wrong."""
    task = make_task(name, T=12)
    _, targets, mask = _host(task, 13, 40)
    out = _perfect(task, targets, mask)
    scored = np.ones(targets.shape, bool) if mask is None else mask == 1
    column = int(np.argwhere(scored & (targets == 0))[0, 1])
    out[:, column] = np.nan
    with np.errstate(invalid="ignore"):
        assert _metric(task, out, targets, mask)["error"] == 1 / 40


def test_xor_tie_counts_as_class_zero():
    """Equal logits are the sigmoid's logit 0, which [MS11]'s ``px > 0`` reads as class 0."""
    task = Xor(10)
    _, targets, mask = _host(task, 9, 200)
    got = _metric(task, np.zeros((*targets.shape, 2), np.float32), targets, mask)
    scored = targets[mask == 1]
    assert got["error"] == pytest.approx(scored.mean())
    assert got["loss"] == pytest.approx(math.log(2), rel=1e-6)


def test_permutation_judges_the_last_step_only():
    task = RandomPermutation(10)
    _, targets, _ = _host(task, 10, 4)
    out = _perfect(task, targets, None)
    noisy = out.copy()
    noisy[3, 0] = 0.0  # a wrong prediction of an unpredictable step: loss up, error unchanged
    got = _metric(task, noisy, targets, None)
    assert got["error"] == 0.0 and got["loss"] > 0.1
    noisy[-1, 2] = 0.0
    noisy[-1, 2, 1 - targets[-1, 2]] = 1.0
    assert _metric(task, noisy, targets, None)["error"] == 1 / 4


@pytest.mark.parametrize("name", ["memory5", "memory20"])
def test_memorisation_every_step_must_be_right(name):
    task = make_task(name, T=30)
    _, targets, _ = _host(task, 11, 5)
    out = _perfect(task, targets, None)
    out[2, 1] = 0.0
    out[2, 1, 0] = 1.0  # a data symbol where a blank is due: that sequence is wrong
    out[-1, 4] = 0.0
    out[-1, 4, (targets[-1, 4] + 1) % task.C] = 1.0  # and a wrong recalled symbol in another
    assert _metric(task, out, targets, None)["error"] == 2 / 5


@pytest.mark.parametrize("name", VARIABLE)
def test_masked_metric_needs_the_mask(name):
    task = make_task(name, T=10)
    _, targets, mask = _host(task, 0, 3)
    with pytest.raises(ConfigError, match="mask"):
        _metric(task, _perfect(task, targets, mask), targets, None)


# ---------------------------------------------------------------------------- chance levels
def _constant_outputs(task, targets):
    """The trivial predictor of each baseline docstring, as outputs of the right shape."""
    name, shape = task.name, targets.shape
    if name == "addition":
        return np.ones(shape, np.float32)
    if name == "multiplication":
        return np.full(shape, 0.25, np.float32)
    logits = np.zeros((*shape, task.n_out), np.float32)
    off = -60.0  # e^-60: classes the predictor rules out add < 1e-24 nats
    if name == "permutation":
        logits[:-1, :, :2] = off        # noise steps: uniform over the 98 symbols 2..99
        logits[-1, :, 2:] = off         # last step: uniform over the bit {0, 1}
    elif name in ("memory5", "memory20"):
        K, C = task.K, task.C
        logits[:-K] = off
        logits[:-K, :, C + 1] = 0.0     # the blank, certain before the answer window
        logits[-K:, :, C:] = off        # the answers: uniform over the C data symbols
    return logits


@pytest.mark.parametrize("name,T,B", [
    ("addition", 10, 40000), ("multiplication", 10, 40000), ("xor", 10, 20000),
    ("order2", 10, 20000), ("order3", 10, 20000), ("permutation", 10, 2000),
    ("memory5", 12, 3200), ("memory20", 21, 2000)])
def test_baseline_matches_a_large_sample(name, T, B):
    """The closed-form chance levels against the trivial predictor scored on B sequences.

    Tolerances: an error rate p estimated from B independent sequences has standard error
    sqrt(p (1 - p) / B) (0.0013 for addition's p = 0.92 at B = 40000; 0.0035 for XOR), and an
    MSE has standard error std(squared error) / sqrt(B), estimated from the sample itself; we
    allow 5 standard errors (a 6e-7 chance of a false alarm for a correct value; the draws are
    seeded, so the test is deterministic). Exact cases: the cross-entropy of a predictor that
    is uniform over a support containing every target does not depend on the draw (1e-5
    covers float32 rounding); balanced classes (temporal order, the permutation bit) and the
    enumerated memory5 batch make those error rates exact too.
    """
    task = make_task(name, T=T)
    _, targets, mask = _host(task, 12345, B)
    got = _metric(task, _constant_outputs(task, targets), targets, mask)
    want = task.baseline()
    assert set(want) == {"error", "loss"}
    assert task.baseline_value() == want["error"]
    p = want["error"]
    se = math.sqrt(p * (1 - p) / B)
    assert abs(got["error"] - p) <= 5 * se + 1e-12
    if task.loss == "mse":
        prediction = 1.0 if name == "addition" else 0.25
        squared = (targets[mask == 1][:, 0].astype(np.float64) - prediction) ** 2
        assert abs(got["loss"] - want["loss"]) <= 5 * squared.std() / math.sqrt(B)
    else:
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-5)


def test_baselines_closed_forms():
    """The numbers of ``tasks.md`` section 1 (and the derivations in the docstrings)."""
    assert Addition(100).baseline() == pytest.approx({"error": 0.9216, "loss": 1 / 6})
    mult = Multiplication(100).baseline()
    assert mult["loss"] == pytest.approx(7 / 144)
    assert mult["error"] == pytest.approx(0.88875, abs=1e-5)
    assert Xor(100).baseline() == pytest.approx({"error": 0.5, "loss": math.log(2)})
    assert TemporalOrder2(100).baseline() == pytest.approx({"error": 0.75, "loss": math.log(4)})
    assert TemporalOrder3(100).baseline() == pytest.approx({"error": 0.875, "loss": math.log(8)})
    assert RandomPermutation(100).baseline()["error"] == 0.5
    assert Memory5(100).baseline() == pytest.approx({"error": 31 / 32,
                                                     "loss": 5 * math.log(2) / 100})
    assert Memory20(100).baseline()["error"] == pytest.approx(1 - 5.0 ** -10, abs=1e-15)


# ---------------------------------------------------------------------------- registry, options
@pytest.mark.parametrize("name", NAMES)
def test_registry_builds_each_by_name(name):
    assert name in TASKS
    task = make_task(name, T=50)
    assert isinstance(task, SPECS[name][0]) and task.T == 50
    assert repr(task) == f"{SPECS[name][0].__name__}(T=50)"
    assert make_task(name).T == 100  # the declared default
    assert [o.name for o in TASKS.options(name)] == ["T"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_are_config_errors_naming_the_option(name):
    lowest = SPECS[name][5]
    make_task(name, T=lowest)  # the smallest allowed length builds
    for bad in (lowest - 1, 0, -5, 2.5, True, "30", None):
        with pytest.raises(ConfigError, match=rf"T must be an integer >= {lowest}"):
            make_task(name, T=bad)
    with pytest.raises(ConfigError, match=rf"T must be an integer >= {lowest}"):
        SPECS[name][0](lowest - 1)  # direct construction checks too
    with pytest.raises(ConfigError, match=rf"task '{name}' has no option 'length'"):
        make_task(name, length=50)
    with pytest.raises(ConfigError, match="batch_size"):
        make_task(name, T=lowest).batch(backend.host_rng(0), 0)


# ---------------------------------------------------------------------------- the trainer
@pytest.mark.parametrize("name", NAMES)
def test_trains_through_the_runner(name):
    """Each task plugs into the trainer: the model takes its outputs mode from the task, the
    loss its targets and mask, the evaluation its metric."""
    T = SPECS[name][5]
    config = RunConfig(task={"name": name, "T": T}, model={"name": "elman", "hidden": 8},
                       optimizer={"name": "adam", "lr": 1e-2},
                       train={"steps": 20, "batch": 10, "eval_size": 20, "test_size": 20,
                              "eval_batch": 20})
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 20
    assert result.metric == "error" and result.threshold == 0.01
    assert result.baseline == make_task(name, T=T).baseline()["error"]
    for metrics in (result.final, result.test):
        assert set(metrics) == {"error", "loss"}
        assert 0.0 <= metrics["error"] <= 1.0 and math.isfinite(metrics["loss"])
    train = [r for r in result.history if r.get("kind") == "train"]
    assert train and all(math.isfinite(r["loss"]) for r in train)
