"""Losses and metrics: values against straightforward references, gradients by finite
differences, Gauss-Newton curvature products against explicit Hessians, masks, stability for
huge logits, and messages for bad input."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from rnnlab import ConfigError, backend, gradcheck, losses
from rnnlab.losses import (LOSSES, MSE, Loss, SoftmaxCrossEntropy, bits_per_character,
                           error_rate, get_loss, mse, softmax_cross_entropy)

# the references below sum the same float64 terms in another order: round-off ~1e-16 relative
RTOL = 1e-12
# finite-difference gradient checks in float64 with eps = 1e-5 (see test_gradients.py)
GRAD_TOL = 1e-6


def _dev(a):
    return backend.to_device(np.asarray(a))


def _ref_mse(o, t, mask=None):
    o, t = np.asarray(o, float), np.asarray(t, float)
    m = np.ones(o.shape[:-1]) if mask is None else np.asarray(mask, float)
    total, count = 0.0, 0.0
    for idx in np.ndindex(*o.shape[:-1]):
        if m[idx]:
            count += 1
            total += sum((o[idx][k] - t[idx][k]) ** 2 for k in range(o.shape[-1]))
    return total / (count * o.shape[-1])


def _ref_xent(z, t, mask=None):
    """mean over scored positions of -log(exp(z_t) / sum_k exp(z_k)), no stabilisation."""
    z = np.asarray(z, float)
    m = np.ones(z.shape[:-1]) if mask is None else np.asarray(mask, float)
    total, count = 0.0, 0.0
    for idx in np.ndindex(*z.shape[:-1]):
        if m[idx]:
            count += 1
            row = z[idx]
            total += -math.log(math.exp(row[t[idx]]) / sum(math.exp(v) for v in row))
    return total / count


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return {"o": rng.standard_normal((4, 3, 5)), "t": rng.standard_normal((4, 3, 5)),
            "cls": rng.integers(0, 5, size=(4, 3)),
            "mask": np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=float)}


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("masked", [False, True])
def test_mse_value(xp, data, masked):
    mask = data["mask"] if masked else None
    value, d = mse(_dev(data["o"]), _dev(data["t"]), None if mask is None else _dev(mask))
    assert isinstance(value, float)
    assert value == pytest.approx(_ref_mse(data["o"], data["t"], mask), rel=RTOL)
    assert isinstance(d, xp.ndarray) and d.shape == data["o"].shape and d.dtype == np.float64


def test_mse_hand_computed():
    # outputs (2, 2) vs targets: squared errors 1, 4, 0, 9 -> mean 14/4 = 3.5
    # gradient 2 (o - t) / 4 = [[0.5, -1], [0, 1.5]]
    value, d = mse(np.array([[1.0, 0.0], [2.0, 3.0]]), np.array([[0.0, 2.0], [2.0, 0.0]]))
    assert value == 3.5
    np.testing.assert_array_equal(d, [[0.5, -1.0], [0.0, 1.5]])


@pytest.mark.parametrize("masked", [False, True])
def test_xent_value(xp, data, masked):
    mask = data["mask"] if masked else None
    value, d = softmax_cross_entropy(_dev(data["o"]), _dev(data["cls"]),
                                     None if mask is None else _dev(mask))
    assert value == pytest.approx(_ref_xent(data["o"], data["cls"], mask), rel=RTOL)
    assert isinstance(d, xp.ndarray) and d.shape == data["o"].shape and d.dtype == np.float64


def test_xent_hand_computed():
    # logits [0, ln 3] (probabilities 1/4, 3/4); target 1 -> -ln(3/4) = ln(4/3)
    # gradient softmax - onehot = [1/4, -1/4]
    value, d = softmax_cross_entropy(np.array([[0.0, math.log(3)]]), np.array([1]))
    assert value == pytest.approx(math.log(4 / 3), rel=1e-14)  # a few ulps from exp/log
    np.testing.assert_allclose(d, [[0.25, -0.25]], rtol=1e-14)  # ulps of exp/log


def test_xent_uniform_logits_is_log_k():
    value, _ = softmax_cross_entropy(np.zeros((6, 7)), np.arange(6))
    assert value == pytest.approx(math.log(7), rel=1e-14)  # exact up to ulps of log


def test_float32_outputs_keep_float32_gradient(xp):
    o = _dev(np.ones((2, 3), dtype=np.float32))
    _, d = mse(o, _dev(np.zeros((2, 3), dtype=np.float32)))
    assert d.dtype == np.float32
    _, d = softmax_cross_entropy(o, _dev(np.array([0, 2])))
    assert d.dtype == np.float32


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["mse", "xent"])
def test_loss_gradients_by_finite_differences(xp, data, name, masked):
    mask = _dev(data["mask"]) if masked else None
    if name == "mse":
        targets = _dev(data["t"])
        fn = mse
    else:
        targets = _dev(data["cls"])
        fn = softmax_cross_entropy
    outputs = {"o": _dev(data["o"])}
    _, d = fn(outputs["o"], targets, mask)
    report = gradcheck.check_gradients(lambda p: fn(p["o"], targets, mask)[0], outputs, {"o": d})
    assert report.max_error < GRAD_TOL, str(report)
    if masked:  # unscored positions get exactly zero gradient
        off = backend.to_host(d)[data["mask"] == 0]
        np.testing.assert_array_equal(off, 0.0)


def test_mask_equals_selecting_positions(data):
    """Masking equals scoring only the selected rows."""
    sel = data["mask"] == 1
    v_mask, _ = mse(data["o"], data["t"], data["mask"])
    v_sel, _ = mse(data["o"][sel], data["t"][sel])
    assert v_mask == pytest.approx(v_sel, rel=RTOL)
    x_mask, _ = softmax_cross_entropy(data["o"], data["cls"], data["mask"])
    x_sel, _ = softmax_cross_entropy(data["o"][sel], data["cls"][sel])
    assert x_mask == pytest.approx(x_sel, rel=RTOL)
    assert error_rate(data["o"], data["cls"], data["mask"]) == pytest.approx(  # ratio of counts
        error_rate(data["o"][sel], data["cls"][sel]), rel=RTOL)


def test_integer_and_bool_masks_accepted(data):
    ref, _ = mse(data["o"], data["t"], data["mask"])
    assert mse(data["o"], data["t"], data["mask"].astype(int))[0] == ref
    assert mse(data["o"], data["t"], data["mask"].astype(bool))[0] == ref


def test_losses_do_not_modify_inputs(data):
    o, t, mask = data["o"].copy(), data["t"].copy(), data["mask"].copy()
    mse(o, t, mask)
    softmax_cross_entropy(o, data["cls"], mask)
    np.testing.assert_array_equal(o, data["o"])
    np.testing.assert_array_equal(t, data["t"])
    np.testing.assert_array_equal(mask, data["mask"])


# ----------------------------------------------------------------------------- loss objects
def test_losses_are_loss_objects_callable_as_before(data):
    assert isinstance(mse, MSE) and isinstance(mse, Loss) and mse.name == "mse"
    assert isinstance(softmax_cross_entropy, SoftmaxCrossEntropy)
    assert softmax_cross_entropy.name == "cross_entropy"
    for fn, targets in [(mse, data["t"]), (softmax_cross_entropy, data["cls"])]:
        called = fn(data["o"], targets, data["mask"])
        direct = fn.value_and_grad(data["o"], targets, data["mask"])
        assert called[0] == direct[0]  # the call is value_and_grad: the same operations
        np.testing.assert_array_equal(called[1], direct[1])
        assert fn(data["o"], targets)[0] == fn.value_and_grad(data["o"], targets)[0]
    assert losses.mse is mse and repr(mse) == "MSE()"
    assert not hasattr(losses, "log_softmax")


# ----------------------------------------------------------------------------- curvature
def _explicit_hessian(name, o, mask):
    """d^2 loss / d outputs^2 of the flattened outputs, written out from the definitions:
    MSE 2 / (count K) on the diagonal of scored components; cross-entropy the blocks
    (diag(p) - p p^T) / count of the scored positions, p = softmax of the row (no shift)."""
    o = np.asarray(o, float)
    lead, K = o.shape[:-1], o.shape[-1]
    m = np.ones(lead) if mask is None else np.asarray(mask, float)
    count = m.sum()
    hess = np.zeros((o.size, o.size))
    for n, idx in enumerate(np.ndindex(*lead)):
        if not m[idx]:
            continue
        rows = slice(n * K, (n + 1) * K)
        if name == "mse":
            hess[rows, rows] = np.eye(K) * 2 / (count * K)
        else:
            p = np.exp(o[idx]) / np.exp(o[idx]).sum()
            hess[rows, rows] = (np.diag(p) - np.outer(p, p)) / count
    return hess


def _fd_hessian(fn, o, targets, mask, eps=1e-5):
    """The same Hessian by central differences of the loss's gradient."""
    cols = []
    for i in range(o.size):
        step = np.zeros(o.size)
        step[i] = eps
        plus = fn(o + step.reshape(o.shape), targets, mask)[1]
        minus = fn(o - step.reshape(o.shape), targets, mask)[1]
        cols.append((plus - minus).ravel() / (2 * eps))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["mse", "xent"])
def test_gn_product_equals_explicit_hessian(xp, data, name, masked):
    mask = data["mask"] if masked else None
    fn, targets = (mse, data["t"]) if name == "mse" else (softmax_cross_entropy, data["cls"])
    r = np.random.default_rng(1).standard_normal(data["o"].shape)
    hr = fn.gn_product(_dev(data["o"]), _dev(targets), None if mask is None else _dev(mask),
                       _dev(r))
    assert isinstance(hr, xp.ndarray) and hr.shape == r.shape and hr.dtype == np.float64
    hess = _explicit_hessian(name, data["o"], mask)
    # a few float64 roundings per entry on each side, against entries of size ~0.1: 1e-12
    np.testing.assert_allclose(backend.to_host(hr).ravel(), hess @ r.ravel(), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["mse", "xent"])
def test_explicit_hessian_is_the_gradients_derivative(data, name, masked):
    """The test's closed form above is itself right: it matches central differences of
    value_and_grad (truncation ~eps^2 ~1e-10, round-off ~1e-16 / eps ~1e-11, hence 1e-8)."""
    mask = data["mask"] if masked else None
    fn, targets = (mse, data["t"]) if name == "mse" else (softmax_cross_entropy, data["cls"])
    np.testing.assert_allclose(_fd_hessian(fn, data["o"], targets, mask),
                               _explicit_hessian(name, data["o"], mask), rtol=0, atol=1e-8)


def test_gn_product_hand_computed():
    # MSE, 2 positions x K = 2: H = 2 / 4 I -> H r = r / 2
    np.testing.assert_array_equal(mse.gn_product(np.zeros((2, 2)), np.zeros((2, 2)), None,
                                                 np.array([[1.0, 2.0], [-4.0, 0.0]])),
                                  [[0.5, 1.0], [-2.0, 0.0]])
    # cross-entropy, logits [0, ln 3] (p = [1/4, 3/4]), r = [1, 0]:
    # p r = [1/4, 0], sum = 1/4, p r - p sum = [1/4 - 1/16, -3/16] = [3/16, -3/16]
    hr = softmax_cross_entropy.gn_product(np.array([[0.0, math.log(3)]]), np.array([1]), None,
                                          np.array([[1.0, 0.0]]))
    np.testing.assert_allclose(hr, [[3 / 16, -3 / 16]], rtol=1e-14)  # ulps of exp/log


@pytest.mark.parametrize("name", ["mse", "xent"])
def test_masked_positions_contribute_nothing_to_curvature(data, name):
    fn, targets = (mse, data["t"]) if name == "mse" else (softmax_cross_entropy, data["cls"])
    rng = np.random.default_rng(2)
    off = data["mask"] == 0
    r = rng.standard_normal(data["o"].shape)
    hr = fn.gn_product(data["o"], targets, data["mask"], r)
    np.testing.assert_array_equal(hr[off], 0.0)  # no curvature at an unscored position
    r_off = r * off[..., None]  # a direction that only moves unscored outputs
    np.testing.assert_array_equal(fn.gn_product(data["o"], targets, data["mask"], r_off), 0.0)
    o_moved = data["o"] + 10 * rng.standard_normal(data["o"].shape) * off[..., None]
    np.testing.assert_array_equal(fn.gn_product(o_moved, targets, data["mask"], r), hr)
    # and masking equals scoring only the selected rows
    sel = ~off
    np.testing.assert_allclose(hr[sel], fn.gn_product(data["o"][sel], targets[sel], None, r[sel]),
                               rtol=1e-14)  # the same operations, one count division


@pytest.mark.parametrize("name", ["mse", "xent"])
def test_gn_product_is_symmetric_positive_semidefinite(data, name):
    fn, targets = (mse, data["t"]) if name == "mse" else (softmax_cross_entropy, data["cls"])
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal((2,) + data["o"].shape)
    hu = fn.gn_product(data["o"], targets, data["mask"], u)
    hv = fn.gn_product(data["o"], targets, data["mask"], v)
    # the same products summed in different orders: ~1e-16 of the terms
    assert abs(np.vdot(u, hv) - np.vdot(v, hu)) <= 1e-13 * np.abs(u * hv).sum()
    assert np.vdot(v, hv) > 0


def test_gn_product_keeps_float32(xp):
    o = _dev(np.ones((2, 3), dtype=np.float32))
    r = _dev(np.ones((2, 3), dtype=np.float32))
    assert mse.gn_product(o, o, None, r).dtype == np.float32
    assert softmax_cross_entropy.gn_product(o, _dev(np.array([0, 2])), None, r).dtype == np.float32


def test_gn_product_bad_direction():
    with pytest.raises(ConfigError, match=r"r_outputs must have shape \(3, 2\); got \(3, 1\)"):
        mse.gn_product(np.zeros((3, 2)), np.zeros((3, 2)), None, np.zeros((3, 1)))
    with pytest.raises(ConfigError, match=r"r_outputs must have the outputs' dtype float64; "
                                          r"got float32"):
        softmax_cross_entropy.gn_product(np.zeros((3, 2)), np.zeros(3, dtype=int), None,
                                         np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ConfigError, match="mask selects no position to score"):
        mse.gn_product(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)))


# ----------------------------------------------------------------------------- stability
def test_huge_logits_are_stable(xp):
    logits = _dev(np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]]))
    targets = _dev(np.array([0, 1, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, d = softmax_cross_entropy(logits, targets)
    # row 0: target is the max, loss log(1 + e^-1e4 + e^-2e4) = 0 in float64
    # row 1: loss = 1e4 + log(1 + ...) - 0 = 1e4;  row 2: all equal, loss = log 3
    assert value == pytest.approx((0.0 + 1e4 + math.log(3)) / 3, rel=1e-14)  # ulps
    d = backend.to_host(d)
    assert np.isfinite(d).all()
    # softmax rows are [1, 0, 0], [1, 0, 0], [1/3, 1/3, 1/3]; minus one-hot, over 3 rows
    np.testing.assert_allclose(d, np.array([[0, 0, 0], [1, -1, 0], [1 / 3, 1 / 3, -2 / 3]]) / 3,
                               atol=1e-15)  # exp(-1e4) underflows to exactly 0


def test_xent_curvature_huge_logits():
    """(log_softmax is gone; its stability test moved here, to the softmax inside gn_product.)"""
    r = np.array([[1.0, -2.0], [0.5, 0.25]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hr = softmax_cross_entropy.gn_product(np.array([[1e4, 1e4 - math.log(2)], [1e4, -1e4]]),
                                              np.array([0, 0]), None, r)
    # row 0: p = [2/3, 1/3], (diag(p) - p p^T) r = (2/9) [1, -1] (r0 - r1) = [2/3, -2/3];
    # row 1: p = [1, 0] exactly (exp(-2e4) underflows), so the curvature is 0; both over 2 rows.
    # 1e4 - ln 2 is stored to ~ulp(1e4) = 2e-12 absolute, hence rtol 1e-10
    np.testing.assert_allclose(hr, np.array([[2 / 3, -2 / 3], [0.0, 0.0]]) / 2, rtol=1e-10,
                               atol=1e-300)


# ----------------------------------------------------------------------------- metrics
def test_error_rate_hand_computed(xp):
    logits = _dev(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    targets = _dev(np.array([1, 1, 1, 0]))  # predictions 1, 0, 1, 0: one wrong of four
    assert error_rate(logits, targets) == 0.25
    assert error_rate(logits, targets, _dev(np.array([0, 1, 1, 0]))) == 0.5


def test_error_rate_sequence_shape():
    logits = np.zeros((2, 3, 4))
    logits[..., 2] = 1.0  # always predicts class 2
    targets = np.array([[2, 2, 0], [1, 2, 2]])
    assert error_rate(logits, targets) == pytest.approx(2 / 6, rel=1e-15)  # one rounding of 2/6


def test_bits_per_character():
    # one division (and the ulps of log/log2): a few 1e-16 relative
    assert bits_per_character(math.log(2)) == pytest.approx(1.0, rel=1e-15)
    assert bits_per_character(math.log(27)) == pytest.approx(math.log2(27), rel=1e-14)
    assert bits_per_character(0.0) == 0.0


def test_get_loss():
    assert get_loss("mse") is mse
    assert get_loss("cross_entropy") is softmax_cross_entropy
    assert LOSSES == {"mse": mse, "cross_entropy": softmax_cross_entropy}
    assert [loss.name for loss in LOSSES.values()] == list(LOSSES)
    with pytest.raises(ConfigError, match=r"loss must be one of mse, cross_entropy; got 'hinge'"):
        get_loss("hinge")


# ----------------------------------------------------------------------------- bad input
def test_mse_wrong_target_shape():
    with pytest.raises(ConfigError, match=r"targets must have shape \(3, 2\); got \(3, 1\)"):
        mse(np.zeros((3, 2)), np.zeros((3, 1)))


def test_mse_integer_targets():
    with pytest.raises(ConfigError, match="targets must have a floating dtype"):
        mse(np.zeros((3, 2)), np.zeros((3, 2), dtype=int))


def test_xent_non_integer_targets():
    with pytest.raises(ConfigError, match=r"targets must be an integer array of class indices "
                                          r"with shape \(3,\)"):
        softmax_cross_entropy(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ConfigError, match="targets must be an integer array"):
        softmax_cross_entropy(np.zeros((3, 4)), [0, 1, 2])  # a list is not an array


def test_xent_wrong_target_shape():
    with pytest.raises(ConfigError, match=r"targets must have shape \(3,\); got \(3, 1\)"):
        softmax_cross_entropy(np.zeros((3, 4)), np.zeros((3, 1), dtype=int))


@pytest.mark.parametrize("bad", [4, -1, 100])
def test_xent_class_out_of_range(bad):
    with pytest.raises(ConfigError, match=r"targets must be class indices in \[0, 3\]"):
        softmax_cross_entropy(np.zeros((2, 4)), np.array([0, bad]))
    with pytest.raises(ConfigError, match=r"class indices in \[0, 3\]"):
        error_rate(np.zeros((2, 4)), np.array([bad, 0]))


@pytest.mark.parametrize("fn,targets", [(mse, np.zeros((2, 3, 4))),
                                        (softmax_cross_entropy, np.zeros((2, 3), dtype=int))])
def test_mask_with_no_ones(fn, targets):
    with pytest.raises(ConfigError, match="mask selects no position to score"):
        fn(np.zeros((2, 3, 4)), targets, np.zeros((2, 3)))


def test_mask_wrong_shape_or_values():
    with pytest.raises(ConfigError, match=r"mask must have shape \(2, 3\) \(the outputs' "
                                          r"leading shape\); got \(3, 2\)"):
        mse(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), np.ones((3, 2)))
    with pytest.raises(ConfigError, match="mask must hold only 0 and 1"):
        mse(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), np.full((2, 3), 0.5))


def test_nan_outputs_give_nan_loss_not_an_error():
    """A model's outputs may be non-finite (training detects divergence from the loss value
    itself, see rnnlab.validate.float_array's ``finite``): the loss is NaN, not an exception."""
    o = np.zeros((2, 3))
    o[1, 2] = np.nan
    value, d = mse(o, np.zeros((2, 3)))
    assert math.isnan(value) and np.isnan(d[1, 2])
    value, _ = softmax_cross_entropy(o, np.array([0, 1]))
    assert math.isnan(value)


def test_inf_outputs_give_inf_mse():
    o = np.zeros((2, 3))
    o[0, 0] = np.inf
    assert mse(o, np.zeros((2, 3)))[0] == math.inf


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_targets(bad):
    t = np.zeros((2, 3))
    t[1, 2] = bad
    with pytest.raises(ConfigError, match="targets contains NaN or inf values"):
        mse(np.zeros((2, 3)), t)


@pytest.mark.parametrize("fn,targets", [(mse, np.zeros((2, 3))),
                                        (softmax_cross_entropy, np.array([0, 1]))])
def test_outputs_must_be_float_arrays(fn, targets):
    with pytest.raises(ConfigError, match="must have a floating dtype"):
        fn(np.zeros((2, 3), dtype=int), targets)
    with pytest.raises(ConfigError, match="must be a numpy array; got list"):
        fn([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], targets)
