"""Basis paths by the Skeleton Method (gsgd Algorithm 1, Theorems 2-3, App. B.4): the count
#weights - #hidden nodes, exact independence and spanning over the integers, the constructive
Theorem 2 (basis values + skeleton out-weight signs determine activations and outputs), the
paper discrepancies, and planted bugs that make the verify rows fail."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.errors import ConfigError
from rnnlab.models import ElmanSpec
from rnnlab.paths import checks
from rnnlab.paths import reduction_checks as rc
from rnnlab.paths.basis import BasisPaths, Skeleton, algorithm1_masks, forward_exact
from rnnlab.paths.unrolled import param_index


def make_spec(n_in, hidden, n_out, bias, outputs="every"):
    return ElmanSpec(n_in, tuple(hidden), n_out, "relu", bias, outputs)


specs = st.builds(make_spec, st.integers(1, 3), st.lists(st.integers(1, 4), min_size=1,
                                                          max_size=3),
                  st.integers(1, 3), st.booleans())
small_specs = st.builds(make_spec, st.integers(1, 2), st.lists(st.integers(1, 3), min_size=1,
                                                                max_size=2),
                        st.integers(1, 2), st.booleans())
seeds = st.integers(0, 2 ** 32 - 1)


# ----------------------------------------------------------------------------- masks
@given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5))
def test_algorithm1_printed_vs_fixed(n_in, H, K):
    m_in, m_out = algorithm1_masks((H, n_in), (K, H))
    assert (m_in.sum(axis=1) == 1).all() and (m_out.sum(axis=0) == 1).all()
    assert all(m_out[j % K, j] == 1 for j in range(H))
    if H > K:   # the printed M^o[j][j % n_out] indexes row j of a K-row matrix
        with pytest.raises(IndexError):
            algorithm1_masks((H, n_in), (K, H), reading="printed")
    else:
        printed = algorithm1_masks((H, n_in), (K, H), reading="printed")
        assert np.array_equal(printed[0], m_in) and np.array_equal(printed[1], m_out)


def test_cyclic_skeleton_chains_for_equal_widths():
    sk = Skeleton.cyclic(make_spec(3, (4, 4, 4), 2, True))
    assert sk.is_chain
    masks = sk.matrix_masks()
    assert np.array_equal(masks["layer2.W_in"], np.eye(4, dtype=np.int64))
    assert np.array_equal(masks["layer3.W_in"], np.eye(4, dtype=np.int64))
    assert [int(np.flatnonzero(r)[0]) for r in masks["layer1.W_in"]] == [0, 1, 2, 0]
    assert [int(np.flatnonzero(c)[0]) for c in masks["out.W"].T] == [0, 1, 0, 1]
    assert not Skeleton.cyclic(make_spec(2, (3, 2), 2, True)).is_chain
    again = Skeleton.from_matrix_masks(sk.spec, masks)
    assert all(np.array_equal(again.in_masks[i], sk.in_masks[i]) for i in (1, 2, 3))


def test_skeleton_validation_names_the_problem():
    spec = make_spec(2, (3,), 2, False)
    m_in, m_out = algorithm1_masks((3, 2), (2, 3))
    bad_in = m_in.copy()
    bad_in[0] = 1
    with pytest.raises(ConfigError, match=r"one 1 per row.*rows \[0\]"):
        Skeleton(spec, {1: bad_in}, {1: m_out})
    bad_out = m_out.copy()
    bad_out[:, 2] = 0
    with pytest.raises(ConfigError, match=r"one 1 per column.*columns \[2\]"):
        Skeleton(spec, {1: m_in}, {1: bad_out})
    with pytest.raises(ConfigError, match="shape"):
        Skeleton(spec, {1: m_in.T}, {1: m_out})


# ----------------------------------------------------------------------------- Theorem 3
def test_count_matches_the_paper_formula_one_layer_no_bias():
    # d inputs, h hidden, K outputs: dh + h^2 + hK weights, h hidden nodes
    for d, h, K in ((1, 1, 1), (2, 3, 1), (3, 4, 3)):
        bp = BasisPaths(make_spec(d, (h,), K, False))
        assert len(bp) == d * h + h * h + h * K - h
        kinds = bp.kinds
        assert kinds.count("skeleton") == h              # P_s: one per hidden node
        assert kinds.count("recurrent") == h * h         # P_b2: one per recurrent weight
        assert kinds.count("non-skeleton") == h * (d - 1) + h * (K - 1)   # P_ns


def test_stacked_skeleton_paths_count_chains_not_hidden_nodes():
    """Sec. 4 says |P_s| = #hidden nodes; for d equal-width layers it is H (one per chain)."""
    bp = BasisPaths(make_spec(2, (3, 3, 3), 2, False))
    assert bp.kinds.count("skeleton") == 3 and bp.graph.n_hidden == 9


def test_biases_are_weights_and_the_bias_node_is_not_hidden():
    spec = make_spec(2, (3, 2), 2, True)
    bp = BasisPaths(spec)
    m = sum(int(np.prod(s)) for s in spec.param_shapes().values())
    assert len(bp) == m - 5
    assert bp.kinds.count("bias") == 3 + 2 + 2       # one per hidden bias and per output bias
    r = rc.basis_report(spec, T_values=(2,))
    assert r["basis_rank"] == r["joint_rank"] == m - 5   # not m - 6 (bias node not hidden)


@settings(max_examples=40)
@given(specs, st.integers(1, 5))
def test_theorem3_basis(spec, T):
    r = rc.basis_report(spec, T_values=(T,), seed=T)
    assert r["count"] == r["expected"] == r["n_weights"] - r["n_hidden"]
    assert r["basis_rank"] == r["count"]          # independent (exact rank)
    assert r["joint_rank"] == r["count"]          # spans every reduction path
    assert r["basis_are_reduction_paths"]
    assert r["kernel_ok"] and r["conservation_rank"] == r["n_hidden"]
    assert r["reduction_ok"] and r["unrolled_ok"] and r["exponents_ok"]


@settings(max_examples=25)
@given(small_specs, seeds)
def test_theorem3_for_any_valid_skeleton(spec, seed):
    """Any one-in/one-out skeleton gives a basis (the choice is not unique, gsgd Sec. 4 Remark),
    including non-chain ones."""
    rng = np.random.default_rng(seed)
    widths = (spec.n_in,) + spec.hidden + (spec.n_out,)
    in_masks, out_masks = {}, {}
    for i in range(1, spec.layers + 1):
        m = np.zeros((widths[i], widths[i - 1]), dtype=np.int64)
        m[np.arange(widths[i]), rng.integers(0, widths[i - 1], widths[i])] = 1
        in_masks[i] = m
        m = np.zeros((widths[i + 1], widths[i]), dtype=np.int64)
        m[rng.integers(0, widths[i + 1], widths[i]), np.arange(widths[i])] = 1
        out_masks[i] = m
    r = rc.basis_report(spec, T_values=(3,), skeleton=Skeleton(spec, in_masks, out_masks))
    assert r["basis_rank"] == r["joint_rank"] == r["count"] == r["expected"]
    assert r["reduction_ok"] and r["unrolled_ok"] and r["exponents_ok"]


@given(small_specs)
def test_each_non_skeleton_weight_is_on_exactly_one_basis_path(spec):
    """The premise of G-SGD's inverse chain rule (gsgd App. B.1)."""
    bp = BasisPaths(spec)
    skeleton = bp.tree | set(bp.free)
    B = bp.matrix()
    for p in range(bp.graph.n_params):
        if p not in skeleton:
            assert B[:, p].sum() == 1 and B[bp.row_of_edge[p], p] == 1


def test_coefficients_are_the_paper_relation():
    """Eq. (4)'s relation v_p1 = v_p2 v_p3 v_p4 / v_p5^2 (p2..p5 basis paths of the cyclic
    skeleton on n_in = 2, h = 2, K = 2) is what :meth:`coefficients` returns."""
    spec = make_spec(2, (2,), 2, False)
    bp = BasisPaths(spec)
    g = bp.graph
    idx = lambda name, *i: param_index(spec, name, i)   # noqa: E731
    p1 = (idx("layer1.W_in", 0, 1), idx("layer1.W_rec", 0, 0), idx("out.W", 1, 0))
    x = bp.coefficients(g.counting_vector(p1))
    named = {g.describe(bp.paths[r]): k for r, k in x.items()}
    assert named == {"x[1] -> h1[0] -> y[0]": 1, "x[0] -> h1[0] -> h1[0] -> y[0]": 1,
                     "x[0] -> h1[0] -> y[1]": 1, "x[0] -> h1[0] -> y[0]": -2}


def test_largest_default_case():
    """3 layers of width 4, 3 inputs, 3 outputs, biases, T = 5 (sampled unrolled paths)."""
    spec = make_spec(3, (4, 4, 4), 3, True)
    r = rc.basis_report(spec, T_values=(5,))
    assert r["basis_rank"] == r["joint_rank"] == r["count"] == 119 - 12
    assert r["unrolled_ok"] and r["reduction_ok"] and r["kernel_ok"] and r["exponents_ok"]
    t1 = rc.theorem1_report(spec, 5)
    assert t1["exact"] and t1["integral"] and t1["in_span"]


# ----------------------------------------------------------------------------- Theorem 2
@settings(max_examples=40)
@given(specs, st.integers(1, 5), seeds)
def test_theorem2_equal_basis_values_and_signs(spec, T, seed):
    r = rc.theorem2_report(spec, seed=seed, T=T, B=3)
    assert r["values_equal"] and r["weights_differ"] and r["positive_rescaling"]
    assert r["patterns_equal"] and r["outputs_equal"]          # exact rational forward
    # float64 library forward: the bound is (T + d) layers of dot products of width
    # <= H + n_in + 1 plus one rounding per weight, times 4 eps, relative to the |w|-network
    assert r["float_error"] <= r["float_tol"]


@settings(max_examples=40)
@given(specs, st.integers(1, 5), seeds)
def test_theorem2_sign_flip_changes_the_network(spec, T, seed):
    r = rc.theorem2_report(spec, seed=seed, T=T, B=3)
    assert r["flip_values_equal"] and r["flip_patterns_ok"] and r["flip_outputs_ok"]


def test_theorem2_weights_from_values_in_floats():
    spec = make_spec(2, (3, 3), 2, True)
    bp = BasisPaths(spec)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(bp.graph.n_params)
    w2 = bp.weights_from_values(bp.values(list(w)), {o: w[o] for o in bp.free})
    # each weight is rebuilt from <= 2 d + 3 factors with integer exponents: a few eps relative
    assert np.allclose(w2, w, rtol=64 * np.finfo(float).eps, atol=0)


def test_stacked_rnn_needs_more_than_the_signs_of_w_out():
    spec = make_spec(2, (2, 2), 2, False)
    r = rc.stacked_sign_report(spec, seed=0)
    assert r["lower_nodes"] == 2 and r["keeps_values_and_Wo"] and r["output_changed"]


def test_single_layer_signs_of_w_out_suffice():
    """For one layer the free weights are exactly the selected W^o entries (the paper's
    statement)."""
    spec = make_spec(3, (4,), 2, True)
    bp = BasisPaths(spec)
    assert all(bp.graph.edges[o].name == "out.W" for o in bp.free) and len(bp.free) == 4


def test_forward_exact_matches_library_forward():
    spec = make_spec(2, (3, 2), 2, True)
    rng = np.random.default_rng(3)
    w = rc.random_rationals(rng, BasisPaths(spec).graph.n_params)
    x = [[rc.random_rationals(rng, 2) for _ in range(2)] for _ in range(4)]
    y = np.array(forward_exact(spec, w, x).y, dtype=float)
    err, tol = rc._float_comparison(spec, w, w, x)
    assert err == 0.0
    from rnnlab.models import ElmanRNN
    from rnnlab.params import unflatten
    p = unflatten(np.array([float(v) for v in w]), spec, host=True)
    yl, _ = ElmanRNN(spec, p).forward(p, np.array(x, dtype=float))
    # same arithmetic up to summation order: (T + d)(H + n_in + 2) roundings of O(1) terms
    assert np.allclose(yl, y, rtol=1e-12, atol=1e-12)
    assert all(isinstance(v, (int, Fraction)) for v in np.ravel(forward_exact(spec, w, x).y))


# ----------------------------------------------------------------------------- verify rows
MINE = {c.claim for c in checks.CHECKS if c.group == "reduction_checks"}


def run_mine(plant=None, only=None):
    results = checks.run_checks(layers=(1, 2), widths=(2,), T=2, instances=1, plant=plant,
                                only=only)
    return {r.claim: r for r in results if r.claim in MINE}


def test_verify_rows_pass_without_a_plant():
    rows = run_mine()
    assert len(rows) == len(MINE) >= 10
    assert all(r.passed for r in rows.values()), [r.claim for r in rows.values() if not r.passed]


@pytest.mark.parametrize("plant, fails", [
    ("skeleton_rec_swap", "Theorem 3 (gsgd): basis paths are independent"),
    ("skeleton_mask_printed", "Theorem 3 (gsgd) count"),
    ("reduction_no_rec", "Theorem 1 (gsgd):"),
])
def test_planted_bug_fails_its_row(plant, fails):
    rows = run_mine(plant=plant, only=fails)
    assert rows and all(not r.passed for r in rows.values())


def test_wrong_recurrent_index_is_caught_exactly():
    """The planted W_rec[j, k] read as j -> k: same count, still independent, but does not span
    (rank [basis; reduction] > count)."""
    spec = make_spec(1, (3,), 1, False)
    r = rc.basis_report(spec, T_values=(2,), plant="skeleton_rec_swap")
    assert r["count"] == r["expected"] and r["joint_rank"] > r["count"]
    assert not r["reduction_ok"] and not r["exponents_ok"]


GRID = [make_spec(n_in, hidden, n_out, bias)
        for hidden in [(w,) * L for L in (1, 2, 3) for w in (1, 2, 3, 4)]
        + [(a, b) for a in range(1, 5) for b in range(1, 5) if a != b]
        + [(a, b, c) for a in (1, 4) for b in (2, 3) for c in (1, 4)]
        for n_in, n_out in ((1, 3), (3, 1), (3, 3)) for bias in (False, True)]


@pytest.mark.slow
@pytest.mark.parametrize("spec", GRID, ids=lambda s: f"{s.n_in}-{s.hidden}-{s.n_out}-{s.bias}")
def test_grid_exhaustive(spec):
    """Every claim on a grid: layers 1-3, equal widths 1-4, all unequal pairs, some unequal
    triples, (n_in, n_out) in {(1,3), (3,1), (3,3)}, bias on/off; T = 1..4."""
    r = rc.basis_report(spec, T_values=(1, 2, 3, 4))
    assert r["basis_rank"] == r["joint_rank"] == r["count"] == r["expected"]
    assert r["reduction_ok"] and r["unrolled_ok"] and r["exponents_ok"] and r["kernel_ok"]
    for T in (1, 4):
        t1 = rc.theorem1_report(spec, T, seed=T)
        assert t1["exact"] and t1["integral"] and t1["in_span"]
    t2 = rc.theorem2_report(spec, seed=1, T=3)
    assert t2["values_equal"] and t2["patterns_equal"] and t2["outputs_equal"]
    assert t2["flip_patterns_ok"] and t2["flip_outputs_ok"]


@pytest.mark.slow
@settings(max_examples=150)
@given(specs, st.integers(1, 5), seeds)
def test_theorems_2_3_exhaustive(spec, T, seed):
    r = rc.basis_report(spec, T_values=tuple(range(1, T + 1)), seed=seed % 100)
    assert r["basis_rank"] == r["joint_rank"] == r["count"] == r["expected"]
    assert r["reduction_ok"] and r["unrolled_ok"] and r["exponents_ok"] and r["kernel_ok"]
    t2 = rc.theorem2_report(spec, seed=seed, T=T, B=4)
    assert t2["patterns_equal"] and t2["outputs_equal"] and t2["positive_rescaling"]
    assert t2["flip_patterns_ok"] and t2["flip_outputs_ok"]
    assert t2["float_error"] <= t2["float_tol"]
