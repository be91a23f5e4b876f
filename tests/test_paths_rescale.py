"""Feasible node-wise rescalings (``path-sgd-relu-rnn.md`` Theorem 1): function, path values,
gamma^2 and the Path-SGD step are unchanged; time-varying factors are not feasible."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import ConfigError
from rnnlab.models import ElmanRNN, ElmanSpec
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import UnrolledGraph, fit_T, n_params, norms
from rnnlab.paths import rescale as R

from strategies import gains, seeds

EPS = np.finfo(np.float64).eps


@st.composite
def rescale_problems(draw, activations=("relu", "identity"), max_paths=20_000, min_T=1):
    """(spec, T, params, alpha, x): 1-3 layers of widths 1-4, in/out 1-3, T 1-5, bias on/off,
    factors from floats(0.25, 4.0)."""
    hidden = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    spec = ElmanSpec(draw(st.integers(1, 3)), hidden, draw(st.integers(1, 3)),
                     draw(st.sampled_from(activations)), draw(st.booleans()),
                     draw(st.sampled_from(("every", "last", "masked"))))
    T = max(fit_T(spec, draw(st.integers(min_T, 5)), max_paths), min(min_T, 5))
    alpha = [np.array(draw(st.lists(gains, min_size=w, max_size=w))) for w in hidden]
    rng = np.random.default_rng(draw(seeds))
    p = unflatten(0.8 * rng.standard_normal(n_params(spec)), spec, host=True)
    x = rng.standard_normal((T, 3, spec.n_in))
    return spec, T, p, alpha, x


def forward(spec, p, x):
    y, _ = ElmanRNN(spec, p).forward(p, x)
    return y


def abs_scale(spec, p, x):
    """Outputs of the |weights| identity network on |x|: bounds every intermediate sum."""
    from dataclasses import replace
    ab = {k: np.abs(v) for k, v in p.items()}
    return float(np.max(forward(replace(spec, activation="identity"), ab, np.abs(x))))


def forward_bound(spec, T):
    # (T + d) layers of dot products of width <= H + n_in + 1 on both sides plus one rounding
    # per rescaled weight: |y1 - y2| <= 4 (T + d)(H + n_in + 2) eps * abs_scale
    return 4 * (T + spec.layers) * (max(spec.hidden) + spec.n_in + 2) * EPS


@given(rescale_problems())
def test_rescaling_leaves_the_function_unchanged(problem):
    spec, T, p, alpha, x = problem
    q = R.rescale(spec, p, alpha)
    scale = max(abs_scale(spec, p, x), abs_scale(spec, q, x), 1e-300)
    assert np.max(np.abs(forward(spec, p, x) - forward(spec, q, x))) <= forward_bound(spec, T) * scale


@given(rescale_problems(activations=("relu",)))
def test_rescaling_leaves_every_path_value_and_gamma2_unchanged(problem):
    spec, T, p, alpha, _ = problem
    q = R.rescale(spec, p, alpha)
    paths = UnrolledGraph(spec, T).bulk()
    v1, v2 = paths.values(p), paths.values(q)
    # each value is a product of <= T + d factors, each rescaled with <= 2 roundings
    assert np.all(np.abs(v1 - v2) <= 4 * (T + spec.layers) * EPS * np.abs(v1))
    g1, g2 = norms.gamma2_recursion(spec, p, T), norms.gamma2_recursion(spec, q, T)
    assert abs(g1 - g2) <= 2 * (len(paths) + 4 * (T + spec.layers)) * EPS * g1


@given(rescale_problems(activations=("relu",)))
def test_kappa_is_covariant_and_the_path_sgd_step_invariant(problem):
    # Theorem 2: kappa(T_a p) = kappa(p) / s^2 and grad(T_a p) = grad(p) / s, so the step
    # p - eta grad / kappa maps to s * (that step): the updated networks compute the same function
    spec, T, p, alpha, x = problem
    s = host_vector(R.rescaling_factors(spec, alpha), spec)
    q = R.rescale(spec, p, alpha)
    target = np.random.default_rng(0).standard_normal(forward(spec, p, x).shape)

    def grad(params):
        model = ElmanRNN(spec, params)
        y, cache = model.forward(params, x)
        return host_vector(model.backward(params, y - target, cache)[0], spec)

    for second in (True, False):
        kp = host_vector(norms.kappa(spec, p, T, second_term=second), spec)
        kq = host_vector(norms.kappa(spec, q, T, second_term=second), spec)
        # nonnegative sums rescaled path by path: relative error <= 1e-12 at these sizes
        np.testing.assert_allclose(kq * s ** 2, kp, rtol=1e-12)
        fp, fq = host_vector(p, spec), host_vector(q, spec)
        # parameters on no path (W_rec when T = 1) have kappa = 0 and gradient 0: no step
        p1 = fp - 0.05 * np.divide(grad(p), kp, out=np.zeros_like(kp), where=kp > 0)
        q1 = fq - 0.05 * np.divide(grad(q), kq, out=np.zeros_like(kq), where=kq > 0)
        np.testing.assert_allclose(q1, s * p1, rtol=1e-12, atol=1e-12 * np.abs(s * fp).max())
        y_p = forward(spec, unflatten(p1, spec, host=True), x)
        y_q = forward(spec, unflatten(q1, spec, host=True), x)
        scale = abs_scale(spec, unflatten(p1, spec, host=True), x)
        assert np.max(np.abs(y_p - y_q)) <= 1e-11 * scale   # 1e-12 steps, amplified by <= 10


def test_plain_sgd_is_not_invariant():
    spec = ElmanSpec(2, (3,), 2, "relu", True, "every")
    p = unflatten(0.8 * np.random.default_rng(1).standard_normal(n_params(spec)), spec, host=True)
    alpha = [np.array([0.3, 2.0, 3.5])]
    q = R.rescale(spec, p, alpha)
    x = np.random.default_rng(2).standard_normal((4, 5, 2))
    target = np.zeros((4, 5, 2))
    outs = []
    for params in (p, q):
        model = ElmanRNN(spec, params)
        y, cache = model.forward(params, x)
        g, _ = model.backward(params, y - target, cache)
        outs.append(forward(spec, {k: params[k] - 0.1 * g[k] for k in params}, x))
    assert np.max(np.abs(outs[0] - outs[1])) > 1e-2


@given(rescale_problems(min_T=2))
def test_time_varying_factors_are_not_feasible(problem):
    spec, T, p, alpha, _ = problem
    rng = np.random.default_rng(T)
    const = [np.tile(a, (T, 1)) for a in alpha]
    res = R.per_time_rescaling(spec, p, T, const)
    assert np.all(res["spread"] == 0.0)        # constant factors: every E_i agrees exactly
    varying = [c * np.exp(rng.uniform(-0.7, 0.7, c.shape)) for c in const]
    res = R.per_time_rescaling(spec, p, T, varying)
    assert res["residual"] > 1e-6 * np.abs(host_vector(p, spec)).max()


def test_required_recurrent_weights_differ_per_time():
    # one unit, T = 3: rescaling h_t by f_t needs W_rec * f_t / f_(t-1) on the edge into step t
    spec = ElmanSpec(1, (1,), 1, "relu", False, "last")
    p = {"layer1.W_in": np.array([[1.0]]), "layer1.W_rec": np.array([[0.5]]),
         "out.W": np.array([[1.0]])}
    f = [np.array([[1.0], [2.0], [2.0]])]
    res = R.per_time_rescaling(spec, p, 3, f)
    rec = res["required"][1]                   # flat index 1 is layer1.W_rec[0,0]
    assert sorted(rec.tolist()) == [0.5, 1.0]  # t = 2 needs 0.5 * 2 / 1, t = 3 needs 0.5
    w_in = res["required"][0]                  # W_in would need 1, 2, 2 at t = 1, 2, 3
    assert sorted(w_in.tolist()) == [1.0, 2.0, 2.0]
    assert res["residual"] > 0.5


@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.integers(1, 2),
       st.integers(1, 2), st.booleans(), st.sampled_from(("every", "last")), st.integers(1, 4))
@settings(max_examples=15)
def test_feasible_rescalings_have_one_factor_per_unit(hidden, n_in, n_out, bias, outputs, T):
    spec = ElmanSpec(n_in, tuple(hidden), n_out, "relu", bias, outputs)
    assert R.feasible_rescaling_dimension(spec, T) == sum(hidden)


def test_rescaling_composes_and_checks_its_arguments():
    spec = ElmanSpec(2, (2, 3), 1, "relu", True, "every")
    p = unflatten(np.random.default_rng(3).standard_normal(n_params(spec)), spec, host=True)
    a = [np.array([0.5, 2.0]), np.array([3.0, 0.25, 1.5])]
    b = [np.array([1.5, 0.3]), np.array([0.5, 4.0, 2.0])]
    ab = [x * y for x, y in zip(a, b)]
    np.testing.assert_allclose(host_vector(R.rescale(spec, R.rescale(spec, p, a), b), spec),
                               host_vector(R.rescale(spec, p, ab), spec), rtol=8 * EPS)
    assert np.array_equal(R.rescale(spec, p, [np.ones(2), np.ones(3)])["out.W"], p["out.W"])
    q = R.rescale(spec, p, a)
    np.testing.assert_allclose(q["layer1.b"], a[0] * p["layer1.b"])   # b^i scales by alpha^i
    assert np.array_equal(q["out.b"], p["out.b"])                       # b_out unchanged
    with pytest.raises(ConfigError, match="must be > 0"):
        R.rescale(spec, p, [np.array([1.0, -1.0]), np.ones(3)])
    with pytest.raises(ConfigError, match="one vector per hidden layer"):
        R.rescale(spec, p, [np.ones(2)])
    with pytest.raises(ConfigError, match=r"shape \(3,\)"):
        R.rescale(spec, p, [np.ones(2), np.ones(2)])


@pytest.mark.parametrize("activation,changes", [("relu", True), ("identity", False)])
def test_negative_factor_breaks_relu_only(activation, changes):
    # Fig. 1's caption allows "any nonzero" factor; a ReLU commutes only with positive ones
    spec = ElmanSpec(2, (3,), 2, activation, True, "every")
    p = unflatten(0.8 * np.random.default_rng(4).standard_normal(n_params(spec)), spec, host=True)
    q = R.rescale(spec, p, [np.array([-1.0, 1.0, 1.0])], check=False)
    x = np.random.default_rng(5).standard_normal((4, 16, 2))
    diff = np.max(np.abs(forward(spec, p, x) - forward(spec, q, x)))
    if changes:
        assert diff > 1e-3
    else:
        assert diff <= forward_bound(spec, 4) * abs_scale(spec, p, x)


@pytest.mark.slow
@given(rescale_problems(max_paths=200_000))
@settings(max_examples=60)
def test_rescaling_invariance_large(problem):
    spec, T, p, alpha, x = problem
    q = R.rescale(spec, p, alpha)
    scale = max(abs_scale(spec, p, x), abs_scale(spec, q, x), 1e-300)
    assert np.max(np.abs(forward(spec, p, x) - forward(spec, q, x))) <= forward_bound(spec, T) * scale
    paths = UnrolledGraph(spec, T, max_paths=200_000).bulk()
    v1, v2 = paths.values(p), paths.values(q)
    assert np.all(np.abs(v1 - v2) <= 4 * (T + spec.layers) * EPS * np.abs(v1))
