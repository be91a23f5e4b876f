"""gamma^2 three ways and kappa = 1/2 d^2 gamma^2 / dp^2 by enumeration, fast formulas and finite
differences; the paper's printed kappa^(2) forms against the definition."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import ConfigError
from rnnlab.models import ElmanSpec
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import UnrolledGraph, fit_T, n_params, norms

from strategies import seeds

EPS = np.finfo(np.float64).eps


@st.composite
def norm_problems(draw, max_paths=20_000, min_T=1):
    """(spec, T, params): relu, 1-3 layers of widths 1-4, in/out 1-3, T 1-5, bias on/off."""
    hidden = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    spec = ElmanSpec(draw(st.integers(1, 3)), hidden, draw(st.integers(1, 3)), "relu",
                     draw(st.booleans()), draw(st.sampled_from(("every", "last", "masked"))))
    T = max(fit_T(spec, draw(st.integers(min_T, 5)), max_paths), 1)
    rng = np.random.default_rng(draw(seeds))
    return spec, T, random_params(spec, rng)


def random_params(spec, rng, scale=0.8):
    return unflatten(scale * rng.standard_normal(n_params(spec)), spec, host=True)


def is_by_name(spec, k):
    """A kappa result in the one shape: parameter name -> float64 host array of its shape."""
    return (list(k) == list(spec.param_shapes())
            and all(type(v) is np.ndarray and v.dtype == np.float64
                    and v.shape == tuple(spec.param_shapes()[n]) for n, v in k.items()))


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = np.maximum(np.abs(a), np.abs(b))
    return float(np.max(np.where(den > 0, np.abs(a - b) / np.where(den > 0, den, 1), 0)))


def nonneg_bound(spec, T, n_terms):
    # a float64 sum of n nonnegative terms, each a product of <= T + d factors, or a forward /
    # backward pass of (T + d) layers of dot products of width <= H + n_in + 2, has relative
    # error <= (n + (T + d)(H + n_in + 2)) eps; two such computations are compared
    return 2 * (n_terms + (T + spec.layers) * (max(spec.hidden) + spec.n_in + 2)) * EPS


# ----------------------------------------------------------------------------- gamma^2
@given(norm_problems())
def test_gamma2_three_ways_agree(problem):
    spec, T, p = problem
    P = UnrolledGraph(spec, T).count_paths()
    a = norms.gamma2_enumeration(spec, p, T)
    b = norms.gamma2_recursion(spec, p, T)
    c = norms.gamma2_squared_network(spec, p, T)
    paths = UnrolledGraph(spec, T).bulk()
    d = norms.gamma2_from_counts(paths.counts, host_vector(p, spec))
    tol = nonneg_bound(spec, T, P)
    assert rel(a, b) <= tol and rel(a, c) <= tol and rel(a, d) <= tol


def test_gamma2_by_hand():
    # 1-1-1 RNN, no bias, outputs at the last of T = 3 steps: paths a r^2 c, a r c, a c
    a, r, c = 0.7, -1.3, 2.1
    spec = ElmanSpec(1, (1,), 1, "relu", False, "last")
    p = {"layer1.W_in": np.array([[a]]), "layer1.W_rec": np.array([[r]]),
         "out.W": np.array([[c]])}
    want = a * a * c * c * (r ** 4 + r ** 2 + 1)
    for f in (norms.gamma2_enumeration, norms.gamma2_recursion, norms.gamma2_squared_network):
        assert math.isclose(f(spec, p, 3), want, rel_tol=1e-15 * 8)  # a few roundings
    k = norms.kappa_enumeration(spec, p, 3)
    # kappa(r) = 1/2 d^2/dr^2 = a^2 c^2 (6 r^2 + 1); kappa1 = a^2 c^2 (2 r^2 + 1); kappa2 = 4 r^2
    assert math.isclose(k.kappa["layer1.W_rec"][0, 0], a * a * c * c * (6 * r * r + 1),
                        rel_tol=1e-14)
    assert math.isclose(k.kappa1["layer1.W_rec"][0, 0], a * a * c * c * (2 * r * r + 1),
                        rel_tol=1e-14)
    assert math.isclose(k.kappa2["layer1.W_rec"][0, 0], 4 * a * a * c * c * r * r,
                        rel_tol=1e-14)
    # the printed Section 4.4 matrix form (T = 3: t1 = 0, t2 = 2): W~ dg/dh_3 h_2 with
    # h~_1 = a^2, h~_2 = a^2 (1 + r^2), dg/dh~_3 = c^2 -> r^2 c^2 a^2 (1 + r^2), not 4 a^2 c^2 r^2
    printed = norms.kappa2_paper_matrix_form(spec, p, 3)["layer1.W_rec"][0, 0]
    assert math.isclose(printed, r * r * c * c * a * a * (1 + r * r), rel_tol=1e-14)
    fast = norms.kappa(spec, p, 3)["layer1.W_rec"][0, 0]
    assert math.isclose(fast, a * a * c * c * (6 * r * r + 1), rel_tol=1e-14)


# ----------------------------------------------------------------------------- kappa
@given(norm_problems())
def test_kappa_fast_equals_definition_by_enumeration(problem):
    spec, T, p = problem
    P = UnrolledGraph(spec, T).count_paths()
    parts = norms.kappa_enumeration(spec, p, T)
    enum = {f: host_vector(getattr(parts, f), spec) for f in ("kappa", "kappa1", "kappa2")}
    k1 = host_vector(norms.kappa1_fast(spec, p, T), spec)
    k = host_vector(norms.kappa(spec, p, T), spec)
    tol = nonneg_bound(spec, T, P + n_params(spec))
    assert rel(enum["kappa1"], k1) <= tol
    assert rel(enum["kappa"], k) <= tol
    assert np.array_equal(host_vector(norms.kappa(spec, p, T, second_term=False), spec), k1)
    # kappa = kappa1 + kappa2 with the true kappa2 (sums of the same nonnegative terms)
    assert rel(enum["kappa"], enum["kappa1"] + enum["kappa2"]) <= tol
    # Section 4.4: only W_rec can repeat on a path, so kappa2 vanishes elsewhere (exactly)
    k2 = norms.kappa2_fast(spec, p, T)
    for name, value in k2.items():
        if "W_rec" not in name:
            assert not value.any()
    rec = host_vector({k: np.full(v.shape, "W_rec" in k, dtype=float)
                       for k, v in k2.items()}, spec) > 0
    assert not enum["kappa2"][~rec].any()


@given(norm_problems(max_paths=5_000))
@settings(max_examples=10)
def test_kappa_matches_finite_differences(problem):
    spec, T, p = problem
    fd = host_vector(norms.kappa_finite_difference(spec, p, T), spec)
    k = host_vector(norms.kappa(spec, p, T), spec)
    scale = norms.gamma2_recursion(spec, p, T) + k.max()
    # second differences with h = 1e-3 lose ~4 N eps gamma^2 / (2 h^2) <= 5e-7 gamma^2 to
    # round-off (N <= 1e3 flops per gamma^2) and O(h^4) to truncation after one Richardson step
    assert np.max(np.abs(fd - k)) <= 1e-6 * scale


@given(norm_problems(max_paths=3_000, min_T=3))
@settings(max_examples=10)
def test_printed_second_terms_are_fixed_fractions_of_the_true_one(problem):
    spec, T, p = problem
    P = UnrolledGraph(spec, T).count_paths()
    parts = norms.kappa_enumeration(spec, p, T)
    enum = {f: host_vector(getattr(parts, f), spec) for f in ("kappa", "kappa2")}
    eq10 = host_vector(norms.kappa2_lemma1_literal(spec, p, T), spec)
    eq11 = host_vector(norms.kappa2_theorem3_literal(spec, p, T), spec)
    shifted = host_vector(norms.kappa2_paper_matrix_form(spec, p, T, shift_h=True), spec)
    fast2 = host_vector(norms.kappa2_fast(spec, p, T), spec)
    # all sides are sums of nonnegative terms; errors measured against kappa >= kappa2;
    # the (I - A)^-1 of Eq. 11 adds n_nodes^2 roundings at most
    tol = nonneg_bound(spec, T, P + UnrolledGraph(spec, T).n_nodes ** 2)
    den = np.maximum(enum["kappa"], 1e-300)
    assert np.max(np.abs(2 * eq10 - enum["kappa2"]) / den) <= tol     # Lemma 1: half
    assert np.max(np.abs(4 * eq11 - enum["kappa2"]) / den) <= tol     # Theorem 3: a quarter
    assert np.max(np.abs(4 * shifted - enum["kappa2"]) / den) <= tol  # matrix form, h shifted
    assert np.max(np.abs(fast2 - enum["kappa2"]) / den) <= tol        # corrected form


def test_printed_matrix_form_is_not_proportional():
    spec = ElmanSpec(2, (3,), 2, "relu", True, "every")
    p = random_params(spec, np.random.default_rng(3))
    for T in (3, 4, 6):
        true2 = host_vector(norms.kappa_enumeration(spec, p, T).kappa2, spec)
        printed = host_vector(norms.kappa2_paper_matrix_form(spec, p, T), spec)
        ratio = printed[true2 > 0] / true2[true2 > 0]
        # a proportional formula would give a ratio constant to ~1e-14; these differ by > 10%
        assert ratio.max() / ratio.min() > 1.1


def test_squared_pass_gives_kappa1_like_the_library_backward():
    spec = ElmanSpec(2, (3, 2), 2, "relu", True, "every")
    p = random_params(spec, np.random.default_rng(4))
    T = 5
    h, delta = norms.squared_network_pass(spec, p, T)
    k1 = norms.kappa1_fast(spec, p, T)
    for i in (1, 2):
        mine = sum(np.outer(delta[i - 1][t], h[i - 1][t - 1]) for t in range(1, T + 1))
        # nonnegative sums of <= T products: relative error <= 4 T eps
        np.testing.assert_allclose(mine, k1[f"layer{i}.W_rec"], rtol=4 * T * EPS * 10)
    assert h[0][0].sum() == 0                        # h~_0 = 0
    g = sum(float(np.ones(2) @ (norms.squared_params(spec, p)["out.W"] @ h[1][t]
                                + norms.squared_params(spec, p)["out.b"])) for t in range(1, T + 1))
    assert math.isclose(g, norms.gamma2_squared_network(spec, p, T), rel_tol=1e-13)


def test_kappa_ratio_and_errors():
    spec = ElmanSpec(1, (2,), 1, "relu", False, "last")
    p = unflatten(np.full(n_params(spec), 0.5), spec, host=True)
    assert norms.kappa_ratio(spec, p, 1) == 0.0       # T = 1: no path repeats an edge
    assert norms.kappa_ratio(spec, p, 6) > 0.0
    with pytest.raises(ConfigError, match="undefined"):
        norms.kappa_ratio(spec, unflatten(np.zeros(n_params(spec)), spec, host=True), 3)
    tanh = ElmanSpec(1, (2,), 1, "tanh")
    with pytest.raises(ConfigError, match="positively homogeneous"):
        norms.kappa(tanh, unflatten(np.ones(n_params(tanh)), tanh, host=True), 3)
    with pytest.raises(ConfigError, match="T must be"):
        norms.gamma2_squared_network(spec, p, 0)


def test_kappa_with_zero_weights_has_no_division():
    # zero weights make p_i^(2c-2) with c = 0 an exponent of -2; the enumeration must avoid it
    spec = ElmanSpec(2, (2,), 1, "relu", True, "every")
    flat = 0.8 * np.random.default_rng(5).standard_normal(n_params(spec))
    flat[::3] = 0.0
    p = unflatten(flat, spec, host=True)
    with np.errstate(all="raise"):
        enum = norms.kappa_enumeration(spec, p, 4)
    assert rel(host_vector(enum.kappa, spec),
               host_vector(norms.kappa(spec, p, 4), spec)) <= nonneg_bound(spec, 4, 10_000)


@pytest.mark.slow
@given(norm_problems(max_paths=200_000))
@settings(max_examples=40)
def test_kappa_definition_large(problem):
    spec, T, p = problem
    P = UnrolledGraph(spec, T).count_paths()
    enum = norms.kappa_enumeration(spec, p, T)
    assert rel(host_vector(enum.kappa, spec), host_vector(norms.kappa(spec, p, T), spec)) \
        <= nonneg_bound(spec, T, P + n_params(spec))
    assert rel(norms.gamma2_enumeration(spec, p, T),
               norms.gamma2_squared_network(spec, p, T)) <= nonneg_bound(spec, T, P)


def test_fast_formulas_run_on_every_backend(xp):
    # kappa1 and Theorem 3 call the model's forward/backward on the active backend; results come
    # back as float64 host arrays equal to the host enumeration
    spec = ElmanSpec(2, (3,), 2, "relu", True, "every")
    p = random_params(spec, np.random.default_rng(6))
    k = norms.kappa(spec, p, 4)
    assert is_by_name(spec, k)
    P = UnrolledGraph(spec, 4).count_paths()
    tol = nonneg_bound(spec, 4, P + n_params(spec))
    assert rel(host_vector(k, spec),
               host_vector(norms.kappa_enumeration(spec, p, 4).kappa, spec)) <= tol
    assert rel(norms.gamma2_squared_network(spec, p, 4),
               norms.gamma2_recursion(spec, p, 4)) <= tol


def test_every_kappa_function_returns_one_shape():
    # a dict keyed by parameter name of float64 host arrays of each parameter's shape, like
    # gradients; kappa_enumeration a frozen KappaParts whose fields are such dicts
    spec = ElmanSpec(2, (2, 3), 1, "relu", True, "every")
    p = random_params(spec, np.random.default_rng(7))
    T = 3
    results = {
        "kappa": norms.kappa(spec, p, T),
        "kappa (kappa^(1) only)": norms.kappa(spec, p, T, second_term=False),
        "kappa1_fast": norms.kappa1_fast(spec, p, T),
        "kappa2_fast": norms.kappa2_fast(spec, p, T),
        "kappa2_paper_matrix_form": norms.kappa2_paper_matrix_form(spec, p, T),
        "kappa2_paper_matrix_form shift_h": norms.kappa2_paper_matrix_form(spec, p, T,
                                                                           shift_h=True),
        "kappa2_lemma1_literal": norms.kappa2_lemma1_literal(spec, p, T),
        "kappa2_theorem3_literal": norms.kappa2_theorem3_literal(spec, p, T),
        "kappa_finite_difference": norms.kappa_finite_difference(spec, p, T),
    }
    parts = norms.kappa_enumeration(spec, p, T)
    assert isinstance(parts, norms.KappaParts)
    for field in ("kappa", "kappa1", "kappa2", "kappa2_eq10", "kappa2_eq11"):
        results[f"kappa_enumeration.{field}"] = getattr(parts, field)
    for name, k in results.items():
        assert is_by_name(spec, k), name
    with pytest.raises(AttributeError):
        parts.kappa = {}                             # frozen
    assert not hasattr(norms, "kappa_flat") and not hasattr(norms, "flat_params_dict")
