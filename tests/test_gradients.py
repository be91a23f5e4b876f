"""BPTT gradients against central differences (rnnlab.gradcheck), in float64.

Tolerance: float64 central differences with eps = 1e-5 have truncation error ~eps^2 * L''' and
round-off ~1e-16 * |L| / eps, i.e. relative errors ~1e-9..1e-8 against the checker's floored
denominator; 1e-6 leaves two orders of margin while a real bug (a missing term, a transposed
matrix, a 1 % scaling) gives 1e-3 or more.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from rnnlab import ConfigError, backend, gradcheck, objective
from rnnlab.losses import mse, softmax_cross_entropy
from rnnlab.models import ACTIVATIONS, OUTPUT_MODES, ElmanRNN

import strategies as S

TOL = 1e-6  # see the module docstring
EPS, FLOOR = 1e-5, 1e-3  # check_gradients' defaults
LOSSES = {"mse": mse, "xent": softmax_cross_entropy}


def _arch(hidden, activation, bias, outputs, n_in=2, n_out=3):
    return dict(n_in=n_in, hidden=tuple(hidden), n_out=n_out, activation=activation, bias=bias,
                outputs=outputs)


def _setup(arch, T, B, seed, loss_name, with_state, scale=0.5):
    """A float64 model, a batch (x, targets, mask) and an optional state, on the active backend."""
    rng = np.random.default_rng(seed)
    model = ElmanRNN.from_arrays(S.host_arrays(arch, rng, scale), activation=arch["activation"],
                                 outputs=arch["outputs"], dtype="float64")
    x = rng.standard_normal((T, B, arch["n_in"]))
    lead = (B,) if arch["outputs"] == "last" else (T, B)
    if loss_name == "mse":
        targets = rng.standard_normal(lead + (arch["n_out"],))
    else:
        targets = rng.integers(0, arch["n_out"], size=lead)
    mask = S.host_mask(T, B, rng) if arch["outputs"] == "masked" else None
    state = S.host_state(arch, B, rng) if with_state else None
    dev = backend.to_device
    return (model, dev(x), dev(targets), None if mask is None else dev(mask),
            None if state is None else [dev(s) for s in state])


def roundoff_tolerance(value, grads):
    """max(TOL, 10 x the round-off floor of a central difference for this problem).

    Each loss evaluation is exact to ~u |L| (u = 2.2e-16), so the numeric derivative is exact to
    ~u |L| / eps; the checker divides by at least floor * max|grad|. Random draws with vanishing
    gradients (|L| / max|grad| ~ 1e3) cannot be resolved to 1e-6 by any correct backward; for
    well-conditioned draws this is just TOL, and it stays far below the 1e-3+ of a real bug
    except for extremely ill-conditioned draws.
    """
    scale = max((float(np.abs(backend.to_host(g)).max()) for g in grads.values()), default=0.0)
    scale = scale if scale > 0 else 1.0
    return max(TOL, 10 * 2.2e-16 * abs(value) / EPS / (FLOOR * scale))


def _check_params(arch, T, B, seed, loss_name, with_state, tol=None):
    """Gradient-check BPTT for one problem; ``tol=None`` means TOL, ``"roundoff"`` means
    :func:`roundoff_tolerance` (for random draws)."""
    model, x, targets, mask, state = _setup(arch, T, B, seed, loss_name, with_state)
    loss = LOSSES[loss_name]
    value, grads, _ = objective.loss_and_grads(model, model.params, x, targets, loss, mask, state)
    assert value == objective.loss_value(model, model.params, x, targets, loss, mask, state)

    def loss_fn(p):
        return objective.loss_value(model, p, x, targets, loss, mask, state)

    report = gradcheck.check_gradients(loss_fn, model.params, grads, eps=EPS, floor=FLOOR)
    tol = roundoff_tolerance(value, grads) if tol == "roundoff" else TOL
    assert report.max_error < tol, str(report)
    assert set(report.errors) == set(model.params)
    total = {k: int(v.size) for k, v in model.params.items()}
    assert {k: report.checked[k] + report.kinks[k] for k in total} == total
    if arch["activation"] != "relu":  # smooth losses have no kinks
        assert sum(report.kinks.values()) == 0, str(report)
    return report


# ----------------------------------------------------------------------------- the full grid
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
@pytest.mark.parametrize("hidden", [(3,), (3, 2), (2, 3, 2)], ids=["1layer", "2layers", "3layers"])
@pytest.mark.parametrize("outputs", OUTPUT_MODES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_param_gradients_grid(activation, bias, outputs, hidden, loss_name, with_state):
    seed = (1000 * ACTIVATIONS.index(activation) + 100 * OUTPUT_MODES.index(outputs)
            + 10 * len(hidden) + 2 * bias + with_state)
    _check_params(_arch(hidden, activation, bias, outputs), T=3, B=2, seed=seed,
                  loss_name=loss_name, with_state=with_state)


@pytest.mark.parametrize("outputs", OUTPUT_MODES)
def test_param_gradients_every_backend(xp, outputs):
    """A smaller grid on every backend (gradients stay on the input's backend)."""
    for activation in ACTIVATIONS:
        arch = _arch((3, 2), activation, True, outputs, n_in=1)
        report = _check_params(arch, T=3, B=2, seed=7, loss_name="xent", with_state=True)
        assert report.max_error < TOL


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=S.problems(), with_state=S.biases, use_xent=S.biases)
def test_param_gradients_property(problem, with_state, use_xent):
    arch, T, B, seed = problem
    loss_name = "xent" if use_xent and arch["n_out"] > 1 else "mse"
    _check_params(arch, T, B, seed, loss_name, with_state, tol="roundoff")


@pytest.mark.slow
@settings(max_examples=300)
@given(problem=S.problems(), with_state=S.biases, use_xent=S.biases)
def test_param_gradients_property_exhaustive(problem, with_state, use_xent):
    arch, T, B, seed = problem
    loss_name = "xent" if use_xent and arch["n_out"] > 1 else "mse"
    _check_params(arch, T, B, seed, loss_name, with_state, tol="roundoff")


# ----------------------------------------------------------------------------- state gradients
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_param_gradients_weights_first_gemm_path(activation):
    """B = 1 with H >= 24 takes the weights-first recurrent GEMM in forward and backward
    (elman._weights_first), which the small grid above never reaches."""
    from rnnlab.models.elman import _weights_first
    assert _weights_first(1, 25)
    _check_params(_arch((25,), activation, True, "every"), T=3, B=1, seed=3, loss_name="mse",
                  with_state=True)


def _state_dict(state):
    return {f"state{i}": s for i, s in enumerate(state)}


@pytest.mark.parametrize("hidden", [(3,), (2, 3, 2)], ids=["1layer", "3layers"])
@pytest.mark.parametrize("outputs", OUTPUT_MODES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_initial_state_gradient(activation, outputs, hidden):
    arch = _arch(hidden, activation, True, outputs)
    # T = 3 and weights N(0, 0.8^2) keep the deepest state's gradient well above round-off
    # (T = 4 with 0.5 gives |L| / |dL/dstate| ~ 3e3 and ~1e-6 round-off errors)
    model, x, targets, mask, state = _setup(arch, 3, 3, 21, "mse", with_state=True, scale=0.8)
    y, cache = model.forward(model.params, x, state)
    _, dy = mse(y, targets, mask)
    _, d_state = model.backward(model.params, dy, cache)
    assert [tuple(d.shape) for d in d_state] == [tuple(s.shape) for s in state]

    def loss_fn(states):
        out, _ = model.forward(model.params, x, list(states.values()))
        return mse(out, targets, mask)[0]

    report = gradcheck.check_gradients(loss_fn, _state_dict(state), _state_dict(d_state))
    assert report.max_error < TOL, str(report)


def _final_state_penalty(final, coeffs):
    """sum_i <c_i, h_T^i> + 0.5 * ||h_T^i||^2 and its gradient with respect to each h_T^i."""
    xp = backend.get_xp()
    value = sum(float(xp.vdot(c, h)) + 0.5 * float(xp.vdot(h, h)) for c, h in zip(coeffs, final))
    return value, [c + h for c, h in zip(coeffs, final)]


@pytest.mark.parametrize("hidden", [(3,), (2, 3)], ids=["1layer", "2layers"])
@pytest.mark.parametrize("outputs", OUTPUT_MODES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_d_final_state_injection(activation, outputs, hidden):
    """A loss that also depends on cache.final_state: backward(d_final_state=...) must add that
    gradient at the last step of every layer (params and initial state both checked)."""
    arch = _arch(hidden, activation, True, outputs)
    model, x, targets, mask, state = _setup(arch, 3, 2, 31, "mse", with_state=True)
    rng = np.random.default_rng(32)
    coeffs = [backend.to_device(rng.standard_normal((2, w))) for w in hidden]

    def total(p, st):
        y, cache = model.forward(p, x, st)
        value, dy = mse(y, targets, mask)
        extra, d_final = _final_state_penalty(cache.final_state, coeffs)
        return value + extra, dy, d_final, cache

    _, dy, d_final, cache = total(model.params, state)
    grads, d_state = model.backward(model.params, dy, cache, d_final_state=d_final)
    report = gradcheck.check_gradients(lambda p: total(p, state)[0], model.params, grads)
    assert report.max_error < TOL, str(report)
    report = gradcheck.check_gradients(lambda s: total(model.params, list(s.values()))[0],
                                       _state_dict(state), _state_dict(d_state))
    assert report.max_error < TOL, str(report)
    # and the injected term matters: without it the gradient is wrong
    grads_without, _ = model.backward(model.params, dy, cache)
    wrong = gradcheck.check_gradients(lambda p: total(p, state)[0], model.params, grads_without)
    assert wrong.max_error > 1e-3  # BUG_TOL: 1000x above the round-off of a right gradient


@pytest.mark.parametrize("outputs", OUTPUT_MODES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_truncated_bptt_chunk_gradient(activation, outputs):
    """Chunk 2 of a sequence, started from chunk 1's final state held fixed: BPTT over the chunk
    is the gradient of the chunk's loss as a function of the parameters alone."""
    arch = _arch((3, 2), activation, True, outputs)
    model, _, _, _, _ = _setup(arch, 1, 3, 41, "mse", with_state=False)
    rng = np.random.default_rng(42)
    x1 = backend.to_device(rng.standard_normal((4, 3, 2)))
    x2 = backend.to_device(rng.standard_normal((3, 3, 2)))
    targets = backend.to_device(rng.standard_normal(((3,) if outputs == "last" else (3, 3)) + (3,)))
    mask = backend.to_device(S.host_mask(3, 3, rng)) if outputs == "masked" else None
    carried = model.forward(model.params, x1)[1].final_state  # constants from here on
    _, grads, _ = objective.loss_and_grads(model, model.params, x2, targets, mse, mask, carried)

    def loss_fn(p):
        return objective.loss_value(model, p, x2, targets, mse, mask, carried)

    report = gradcheck.check_gradients(loss_fn, model.params, grads)
    assert report.max_error < TOL, str(report)


# ----------------------------------------------------------------------------- kinks and bugs
def test_planted_relu_kink_is_counted():
    """x_1 = 0 and b = 0 put every layer-1 pre-activation at step 1 exactly on the ReLU kink, so
    moving any b_j by +-eps crosses it; the checker must count those, not judge them."""
    arrays = {"layer1.W_in": np.array([[1.0], [-2.0], [0.5]]),
              "layer1.W_rec": np.array([[0.3, 0.1, 0.0], [0.2, -0.4, 0.1], [0.0, 0.5, 0.2]]),
              "layer1.b": np.zeros(3),
              "out.W": np.array([[1.0, -1.5, 2.0]]), "out.b": np.array([0.1])}
    model = ElmanRNN.from_arrays(arrays, activation="relu", outputs="every", dtype="float64")
    x = np.array([0.0, 1.0]).reshape(2, 1, 1)
    targets = np.full((2, 1, 1), 5.0)  # far from y, so dL/dh_1 is not small
    y, cache = model.forward(model.params, x)
    _, dy = mse(y, targets)
    grads, _ = model.backward(model.params, dy, cache)

    def loss_fn(p):
        return mse(model.forward(p, x)[0], targets)[0]

    report = gradcheck.check_gradients(loss_fn, model.params, grads)
    assert report.kinks["layer1.b"] == 3, str(report)
    assert report.checked["layer1.b"] == 0
    assert report.max_error < TOL, str(report)  # everything not at the kink is still right
    # the kinks are real: judged anyway, the one-sided slopes disagree with the gradient
    forced = gradcheck.check_gradients(loss_fn, model.params, grads, kink_tol=np.inf)
    assert forced.kinks["layer1.b"] == 0
    assert forced.errors["layer1.b"] > 0.1  # analytic 0 (relu'(0) = 0) vs half a slope: ~1


class _ScaledGradModel(ElmanRNN):
    """A deliberately wrong backward: one gradient multiplied by 1.01."""

    def backward(self, params, dy, cache, d_final_state=None):
        grads, d_state = super().backward(params, dy, cache, d_final_state)
        grads["layer1.W_rec"] = grads["layer1.W_rec"] * 1.01
        return grads, d_state


class _ShrunkGradModel(ElmanRNN):
    """A deliberately wrong backward: every gradient a million times too small (which must not
    shrink the checker's scale until every element looks like a kink)."""

    def backward(self, params, dy, cache, d_final_state=None):
        grads, d_state = super().backward(params, dy, cache, d_final_state)
        return {k: g * 1e-6 for k, g in grads.items()}, d_state


class _NoRecurrenceModel(ElmanRNN):
    """A deliberately wrong backward: the gradient does not flow through W_rec to earlier steps
    (BPTT truncated to one step), obtained by backpropagating with zero recurrent matrices."""

    def backward(self, params, dy, cache, d_final_state=None):
        xp = backend.get_xp()
        cut = {k: (xp.zeros_like(v) if k.endswith("W_rec") else v) for k, v in params.items()}
        return super().backward(cut, dy, cache, d_final_state)


@pytest.mark.parametrize("buggy", [_ScaledGradModel, _NoRecurrenceModel, _ShrunkGradModel])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_planted_bug_is_caught(buggy, activation):
    arch = _arch((3, 2), activation, True, "every")
    rng = np.random.default_rng(51)
    good = ElmanRNN.from_arrays(S.host_arrays(arch, rng), activation=activation,
                                outputs="every", dtype="float64")
    model = buggy(good.spec, good.params)
    x = rng.standard_normal((4, 2, 2))
    targets = rng.standard_normal((4, 2, 3))
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets, mse)

    def loss_fn(p):
        return objective.loss_value(model, p, x, targets, mse)

    report = gradcheck.check_gradients(loss_fn, model.params, grads)
    # a 1 % error gives ~1e-2 relative, a dropped term O(1); 1e-3 is 1000x above round-off
    assert report.max_error > 1e-3, str(report)
    assert not report.passed()
    assert report.errors["layer1.W_rec"] > 1e-3
    assert sum(report.kinks.values()) == 0 or activation == "relu", str(report)
    if buggy is not _ShrunkGradModel:  # the output layer's gradient is untouched by these bugs
        assert report.errors["out.W"] < TOL
    assert check_directional_error(loss_fn, model.params, grads) > 1e-3  # as above


def check_directional_error(loss_fn, params, grads):
    return gradcheck.check_directional(loss_fn, params, grads, directions=3, seed=1)


def test_check_directional_large_model(xp):
    arch = _arch((24, 16), "tanh", True, "every", n_in=8, n_out=5)
    rng = np.random.default_rng(61)
    model = ElmanRNN.from_arrays(S.host_arrays(arch, rng, scale=0.3), activation="tanh",
                                 outputs="every", dtype="float64")
    x = backend.to_device(rng.standard_normal((12, 6, 8)))
    targets = backend.to_device(rng.integers(0, 5, size=(12, 6)))
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets,
                                           softmax_cross_entropy)

    def loss_fn(p):
        return objective.loss_value(model, p, x, targets, softmax_cross_entropy)

    # along unit directions <g, v> ~ |g| / sqrt(n) is smaller than single entries, so round-off
    # (~1e-16 |L| / eps) weighs more than element-wise: ~1e-8 relative; 1e-6 still has margin
    err = gradcheck.check_directional(loss_fn, model.params, grads, directions=6, seed=3)
    assert err < 1e-6
    bad = dict(grads)
    bad["layer2.W_rec"] = -grads["layer2.W_rec"]  # a sign error in one block
    # a sign error in one of 7 blocks changes <g, v> by O(1) relative
    assert gradcheck.check_directional(loss_fn, model.params, bad, directions=6, seed=3) > 1e-3


def test_gradcheck_refuses_float32():
    model = ElmanRNN.create(2, 3, 1, dtype="float32")
    grads = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ConfigError, match="float64"):
        gradcheck.check_gradients(lambda p: 0.0, model.params, grads)
    with pytest.raises(ConfigError, match="float64"):
        gradcheck.check_directional(lambda p: 0.0, model.params, grads)


def test_gradcheck_refuses_mismatched_keys():
    params = {"a": np.zeros(2), "b": np.zeros(3)}
    with pytest.raises(ConfigError, match="grads must have the keys of params"):
        gradcheck.check_gradients(lambda p: 0.0, params, {"a": np.zeros(2)})


@pytest.mark.parametrize("offset", [1e-4, 1e-6])
def test_gradcheck_near_a_stationary_point(offset):
    """L(w) = sum((w - c)^2) at w = c + offset: the gradient 2 offset is small next to the
    curvature 2, so the second difference 2 eps^2 exceeds kink_tol * eps * scale; these smooth
    elements must still be judged (not reported as kinks), so a wrong gradient fails."""
    c = np.array([0.3, -1.2, 2.0])
    w = {"w": c + offset * np.array([1.0, -2.0, 0.5])}

    def loss_fn(p):
        return float(((p["w"] - c) ** 2).sum())

    right = {"w": 2 * (w["w"] - c)}
    report = gradcheck.check_gradients(loss_fn, w, right)
    assert report.kinks == {"w": 0} and report.checked == {"w": 3}
    # the loss is ~offset^2, so round-off is tiny: quadratic central differences are exact
    assert report.max_error < TOL
    wrong = gradcheck.check_gradients(loss_fn, w, {"w": 2.5 * (w["w"] - c)})
    assert wrong.max_error > 0.1  # 2.5 vs 2: relative error 0.2


def test_gradcheck_scale_does_not_trust_the_analytic_gradient():
    """A backward returning all zeros for a loss with tiny gradients (1e-11 sum w^2): judged
    against a scale taken from the (zero) analytic gradient, the floor 1e-3 would swallow the
    whole true gradient; the checker's scale must include the numeric gradient."""
    w = {"w": np.array([0.5, -1.0, 2.0])}

    def loss_fn(p):
        return 1e-11 * float((p["w"] ** 2).sum())

    wrong = gradcheck.check_gradients(loss_fn, w, {"w": np.zeros(3)})
    assert wrong.max_error > 0.5  # analytic 0 vs numeric 2e-11 w: relative error 1
    right = gradcheck.check_gradients(loss_fn, w, {"w": 2e-11 * w["w"]})
    assert right.max_error < TOL


def test_gradcheck_on_a_known_function():
    """The checker itself, on L(w) = sum(w^3) with gradient 3 w^2: right passes, wrong fails."""
    w = {"w": np.array([0.5, -1.0, 2.0])}

    def loss_fn(p):
        return float((p["w"] ** 3).sum())

    good = gradcheck.check_gradients(loss_fn, w, {"w": 3 * w["w"] ** 2})
    assert good.max_error < TOL and good.checked == {"w": 3} and good.kinks == {"w": 0}
    bad = gradcheck.check_gradients(loss_fn, w, {"w": 3 * w["w"] ** 2 + np.array([0, 0, 0.1])})
    assert bad.errors["w"] > 1e-3  # 0.1 added to a gradient of 12: ~1e-2 relative
    assert "max rel error" in str(bad)


def test_weak_relu_kinks_in_a_long_irnn_are_detected_not_misjudged():
    """The README's example: an IRNN over 50 steps has many units hovering near 0, so a
    perturbation of 1e-5 crosses kinks whose slope jump is tiny next to the largest gradient but
    not next to the element's own. Judged as if smooth, such elements showed errors up to 7e-3;
    the checker must flag them as kinks, and still judge (and pass) every other element."""
    model = ElmanRNN.create(n_in=2, hidden=(32, 32), n_out=1, activation="relu",
                            init="identity", outputs="last", seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((50, 8, 2))
    y = np.ones((8, 1))
    value, grads, _ = objective.loss_and_grads(model, model.params, x, y, mse)

    def loss_fn(p):
        return objective.loss_value(model, p, x, y, mse)

    report = gradcheck.check_gradients(loss_fn, model.params, grads)
    assert report.max_error < TOL, str(report)
    assert sum(report.kinks.values()) > 0
    total = sum(int(v.size) for v in model.params.values())
    assert sum(report.checked.values()) > 0.9 * total  # kinks are the exception, not the rule
    # and a 0.1 % error in one parameter's gradient is still caught
    wrong = dict(grads, **{"layer1.W_rec": grads["layer1.W_rec"] * 1.001})
    assert gradcheck.check_gradients(loss_fn, model.params, wrong).max_error > 1e-4


def test_a_large_third_derivative_is_not_taken_for_a_kink():
    """Regression: a tanh network (no kinks) whose layer-3 W_rec[0, 3] has f''' ~ 30, so its
    central differences at eps and eps / 2 differ by f''' eps^2 / 8 ~ 4e-10, above the jump
    threshold; the check at eps / 4 (the gap shrinks 4-fold, as smooth functions do) must clear
    it. Found by the hypothesis property above."""
    arch = {"n_in": 2, "hidden": (5, 5, 5), "n_out": 2, "activation": "tanh", "bias": False,
            "outputs": "masked"}
    report = _check_params(arch, 1, 3, 7919, "mse", True, tol="roundoff")
    assert sum(report.kinks.values()) == 0
