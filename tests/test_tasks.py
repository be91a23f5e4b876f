"""The adding problem: layout, markers, targets, determinism, and its chance level."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import AddingProblem, ConfigError, backend, make_task


def _batch(task, seed, B):
    x, targets, mask = task.batch(backend.host_rng(seed), B)
    return backend.to_host(x), backend.to_host(targets), mask


@pytest.mark.parametrize("T", [2, 3, 7, 50])
def test_batch_layout(xp, T):
    task = AddingProblem(T)
    x, targets, mask = task.batch(backend.host_rng(1), 64)
    assert isinstance(x, xp.ndarray) and isinstance(targets, xp.ndarray)
    assert x.shape == (T, 64, 2) and targets.shape == (64, 1) and mask is None
    assert x.dtype == np.float32 and targets.dtype == np.float32  # the training dtype
    assert (task.n_in, task.n_out, task.outputs, task.loss) == (2, 1, "last", "mse")
    x, targets = backend.to_host(x), backend.to_host(targets)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=0), 2.0)  # exactly two markers each
    # one marker in the first half [0, T // 2) and one in the second [T // 2, T) (for odd T the
    # middle step belongs to the second half, as in the uRNN reference generator)
    half = T // 2
    np.testing.assert_array_equal(markers[:half].sum(axis=0), 1.0)
    np.testing.assert_array_equal(markers[half:].sum(axis=0), 1.0)
    # the target is the sum of the two marked values
    expected = (values * markers).sum(axis=0)
    np.testing.assert_allclose(targets[:, 0], expected, rtol=1e-6)  # float32 sum of two terms


def test_batch_float64():
    x, targets, _ = AddingProblem(5, dtype="float64").batch(backend.host_rng(0), 3)
    assert x.dtype == np.float64 and targets.dtype == np.float64


def test_marker_positions_cover_both_halves():
    """Over many sequences every allowed position is used (uniform placement, not a fixed one)."""
    T = 8
    x, _, _ = _batch(AddingProblem(T), 3, 2000)
    positions = np.argwhere(x[..., 1] == 1)[:, 0]
    counts = np.bincount(positions, minlength=T)
    # 2000 sequences over 4 positions per half: ~500 each, so every position appears
    assert (counts > 0).all()
    assert counts[:4].sum() == counts[4:].sum() == 2000


def test_same_seed_same_batch(xp):
    task = AddingProblem(10)
    a = _batch(task, 42, 16)
    b = _batch(task, 42, 16)
    c = _batch(task, 43, 16)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def _eval_set(task, n, seed):
    (batch,) = task.eval_batches(n, seed, batch_size=n)
    return batch


def test_eval_set_is_fixed(xp):
    task = AddingProblem(6)
    a = _eval_set(task, 50, seed=3)
    b = _eval_set(task, 50, seed=3)
    c = _eval_set(task, 50, seed=4)
    for u, v in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(backend.to_host(u), backend.to_host(v))
    assert not np.array_equal(backend.to_host(a[0]), backend.to_host(c[0]))
    assert a[0].shape == (6, 50, 2) and a[2] is None
    # the held-out set is not the training stream of the same seed
    assert not np.array_equal(backend.to_host(a[0]), _batch(task, 3, 50)[0])


def test_eval_batches_are_bounded_and_cover_n(xp):
    task = AddingProblem(5)
    sizes = [x.shape[1] for x, _, _ in task.eval_batches(23, seed=1, batch_size=10)]
    assert sizes == [10, 10, 3]
    again = [backend.to_host(x) for x, _, _ in task.eval_batches(23, seed=1, batch_size=10)]
    first = [backend.to_host(x) for x, _, _ in task.eval_batches(23, seed=1, batch_size=10)]
    for u, v in zip(again, first):
        np.testing.assert_array_equal(u, v)


def test_batches_are_identical_on_every_backend(xp):
    """Data are drawn on the host: the same seed gives the same batch whatever the backend."""
    task = AddingProblem(7)
    with backend.use_backend("numpy"):
        reference = [backend.to_host(a) for a in task.batch(backend.host_rng(9), 4)[:2]]
    got = task.batch(backend.host_rng(9), 4)
    assert isinstance(got[0], xp.ndarray)
    for u, v in zip(got[:2], reference):
        np.testing.assert_array_equal(backend.to_host(u), v)


def test_chance_level_is_one_sixth(xp):
    """Predicting 1 for every sequence: MSE = Var(U1 + U2) = 1/6."""
    task = AddingProblem(4, dtype="float64")
    n = 200_000
    x, targets, mask = task.batch(backend.host_rng(7), n)
    ones = backend.to_device(np.ones((n, 1)))
    value = task.metric(ones, targets, mask)["mse"]
    # (U1 + U2 - 1)^2 has variance E[Z^4] - (1/6)^2 = 1/15 - 1/36 = 7/180 (Z triangular on
    # [-1, 1]), so the mean of n draws has standard error sqrt(7/180/n) ~ 4.4e-4; 5 SE
    se = math.sqrt(7 / 180 / n)
    assert abs(value - 1 / 6) < 5 * se
    assert task.baseline() == {"mse": pytest.approx(1 / 6, rel=1e-15)}  # one rounding of 1/6
    assert task.metric_name == "mse" and task.baseline_value() == task.baseline()["mse"]


def test_metric_is_mse_of_last_step():
    task = AddingProblem(3)
    out = np.array([[1.0], [0.0]])
    tgt = np.array([[0.5], [2.0]])
    assert task.metric(out, tgt) == {"mse": (0.25 + 4.0) / 2}


def test_make_task():
    task = make_task("adding", T=12)
    assert isinstance(task, AddingProblem) and task.T == 12
    assert repr(task) == "AddingProblem(T=12)"
    assert make_task("adding").T == 100  # the declared default
    with pytest.raises(ConfigError, match=r"task 'adding' has no option 'length'; "
                                          r"its options: T"):
        make_task("adding", length=5)


@pytest.mark.parametrize("T,message", [(1, "T must be an integer >= 2; got 1"),
                                       (0, "T must be an integer >= 2; got 0"),
                                       (2.5, "T must be an integer >= 2; got 2.5"),
                                       (True, "T must be an integer >= 2; got True")])
def test_bad_length(T, message):
    with pytest.raises(ConfigError, match=message):
        AddingProblem(T)


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1; got 0"):
        AddingProblem(4).batch(backend.host_rng(0), 0)


def test_bad_dtype():
    with pytest.raises(ConfigError, match="dtype must be one of float32, float64; got 'int32'"):
        AddingProblem(4, dtype="int32")


def test_unknown_task():
    with pytest.raises(ConfigError, match=r"task must be one of .*adding.*; got 'no-such-task'"):
        make_task("no-such-task", T=10)


def test_solved_reads_the_threshold_and_its_direction():
    from rnnlab.tasks import Task
    task = AddingProblem(T=5)
    assert task.threshold == 0.01 and task.better == "lower"
    assert task.solved(0.009) and not task.solved(0.01) and not task.solved(float("nan"))
    assert not task.solved(None)
    accuracy = type("Accuracy", (Task,), {"threshold": 0.99, "better": "higher"})()
    assert accuracy.solved(0.995) and not accuracy.solved(0.98)
    assert not Task().solved(0.0)  # no threshold: never solved


def test_eval_batches_refuse_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of validation, test"):
        next(AddingProblem(T=5).eval_batches(4, 0, 4, split="train"))
