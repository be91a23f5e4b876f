"""The reduction graph (gsgd Definition 3) and Theorem 1: every unrolled path's counting vector is
an integer combination of reduction-path counting vectors, checked exactly."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab.models import ElmanSpec
from rnnlab.paths import exact
from rnnlab.paths import reduction_checks as rc
from rnnlab.paths.reduction import Chains, ReductionGraph, sample_unrolled_paths
from rnnlab.paths.unrolled import UnrolledGraph, n_params, param_index


def make_spec(n_in, hidden, n_out, bias, outputs="every"):
    return ElmanSpec(n_in, tuple(hidden), n_out, "relu", bias, outputs)


specs = st.builds(make_spec, st.integers(1, 3), st.lists(st.integers(1, 4), min_size=1,
                                                          max_size=3),
                  st.integers(1, 3), st.booleans(), st.sampled_from(("every", "last")))
small_specs = st.builds(make_spec, st.integers(1, 2), st.lists(st.integers(1, 3), min_size=1,
                                                                max_size=2),
                        st.integers(1, 2), st.booleans(), st.sampled_from(("every", "last")))
lengths = st.integers(1, 5)


# ----------------------------------------------------------------------------- structure
def test_edges_are_parameters():
    spec = make_spec(2, (3, 2), 2, True)
    g = ReductionGraph(spec)
    assert g.n_params == n_params(spec) == len(g.edges)
    assert [e.param for e in g.edges] == list(range(g.n_params))
    e = g.edges[param_index(spec, "layer2.W_rec", (0, 1))]
    assert (str(e.src), str(e.dst), e.kind) == ("h2[1]", "h2[0]", "rec")   # W[j, k]: k -> j
    e = g.edges[param_index(spec, "layer2.W_in", (1, 2))]
    assert (str(e.src), str(e.dst)) == ("h1[2]", "h2[1]")
    e = g.edges[param_index(spec, "out.b", (1,))]
    assert (str(e.src), str(e.dst), e.kind) == ("bias", "y[1]", "bias")
    assert g.n_hidden == 5 and g.bias is not None and g.bias not in g.hidden_nodes


@given(specs)
def test_paths_follow_definition3(spec):
    g = ReductionGraph(spec)
    r = rc.reduction_report(spec)
    assert r["paths"] == r["dp_count"]
    assert r["distinct"] and r["all_valid"] and r["zero_one"] and r["conservation"]
    # every path with a recurrent edge uses exactly one, and paths are sources -> outputs
    for p in g.paths:
        assert sum(g.edges[q].recurrent for q in p) <= 1


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.booleans())
def test_single_layer_closed_form_count(n_in, H, K, bias):
    # f0(h) = n_in + b, f1(h) = H (n_in + b); outputs: K [(H + H^2)(n_in + b) + b]
    b = int(bias)
    g = ReductionGraph(make_spec(n_in, (H,), K, bias))
    assert len(g.paths) == g.count_paths() == K * ((H + H * H) * (n_in + b) + b)


def test_is_path_rejects_two_recurrent_edges_and_breaks():
    spec = make_spec(1, (2,), 1, False)
    g = ReductionGraph(spec)
    i = param_index(spec, "layer1.W_in", (0, 0))
    r01 = param_index(spec, "layer1.W_rec", (1, 0))
    r10 = param_index(spec, "layer1.W_rec", (0, 1))
    o0 = param_index(spec, "out.W", (0, 0))
    o1 = param_index(spec, "out.W", (0, 1))
    assert g.is_path((i, r01, o1))
    assert not g.is_path((i, r01, r10, o0))      # two recurrent edges
    assert not g.is_path((i, o1))                 # i ends at h1[0], o1 leaves h1[1]
    assert g.describe((i, r01, o1)) == "x[0] -> h1[0] -> h1[1] -> y[0]"


def test_counting_vectors_share_the_unrolled_index_space():
    spec = make_spec(2, (2, 2), 1, True, "last")
    g = ReductionGraph(spec)
    ug = UnrolledGraph(spec, 3)
    for path in ug.iter_paths():
        params = ug.edge_param[list(path)]
        assert np.array_equal(g.counting_vector(params), ug.counting_vector(path))


# ----------------------------------------------------------------------------- Theorem 1
@settings(max_examples=40)
@given(specs, lengths)
def test_theorem1_integer_combination(spec, T):
    r = rc.theorem1_report(spec, T, seed=T)
    assert r["exact"], r["failures"]
    assert r["integral"] and r["in_span"]


@settings(max_examples=25)
@given(small_specs, lengths, st.integers(0, 2 ** 32 - 1))
def test_theorem1_with_any_chains(spec, T, seed):
    """The combination formula works for any choice of head/tail chains, not only the cyclic
    skeleton (random in-edge from the layer below, random out-edge to the layer above)."""
    g = ReductionGraph(spec)
    rng = np.random.default_rng(seed)
    in_edge, out_edge = {}, {}
    for v in g.hidden_nodes:
        ins = [p for p in g.in_edges[v] if g.edges[p].kind == "in"]
        outs = [p for p in g.out_edges[v] if g.edges[p].kind in ("in", "out")]
        in_edge[v] = int(rng.choice(ins))
        out_edge[v] = int(rng.choice(outs))
    chains = Chains(g, in_edge, out_edge)
    ug = UnrolledGraph(spec, T, max_paths=10 ** 9)
    for path in sample_unrolled_paths(ug, 40, seed=seed % 1000):
        c = ug.counting_vector(path)
        x = g.combination(c, chains)
        assert all(isinstance(k, int) for k in x.values())
        assert g.check_combination(x, c)


def test_theorem1_rational_solution_cross_check():
    """An independent exact solve (tracked elimination) also writes each unrolled counting vector
    as a combination of reduction paths; both combinations reproduce c exactly."""
    spec = make_spec(2, (2,), 2, True, "every")
    g = ReductionGraph(spec)
    C = g.counting_matrix()
    space = exact.RowSpace(track=True)
    space.add_all(C.tolist())
    assert space.rank == g.n_params - g.n_hidden
    ug = UnrolledGraph(spec, 4)
    for path in list(ug.iter_paths())[::7]:
        c = ug.counting_vector(path)
        x = space.express(c.tolist())
        assert x is not None
        assert exact.combine(C, x, g.n_params) == c.tolist()
        assert g.check_combination(g.combination(c), c)


def test_non_paths_are_not_combinations():
    """Negative control: a vector without flow conservation is not in the span (the check can
    fail)."""
    spec = make_spec(2, (2,), 2, False)
    g = ReductionGraph(spec)
    c = np.zeros(g.n_params, dtype=np.int64)
    c[param_index(spec, "layer1.W_in", (0, 0))] = 1
    assert not g.check_combination(g.combination(c), c)
    assert not exact.in_row_span(g.counting_matrix(), c)


def test_planted_reduction_bug_fails_theorem1():
    spec = make_spec(2, (2,), 2, False)
    assert not rc.theorem1_report(spec, 3, plant="reduction_no_rec")["exact"]
    assert rc.theorem1_report(spec, 3)["exact"]


def test_paper_examples():
    r = rc.paper_examples()
    assert r["eq4"] and r["c1_matches"] and r["c1_exact"]
    assert r["p3_fixed_is_path"] and not r["p3_printed_is_path"]


@given(small_specs)
def test_reduction_paths_are_unrolled_paths_iff_T_at_least_2(spec):
    r1, r2 = rc.subset_report(spec, 1), rc.subset_report(spec, 2)
    if r2["checked"]:
        assert r2["subset"]
    if r1["checked"]:
        assert r1["missing"] > 0 and r1["missing_recurrent"]


# ----------------------------------------------------------------------------- sampling
def test_sampler_is_valid_and_covers_small_graphs():
    spec = make_spec(1, (2,), 1, True, "every")
    ug = UnrolledGraph(spec, 3)
    everything = set(ug.iter_paths())
    samples = sample_unrolled_paths(ug, 20 * len(everything), seed=1)
    assert set(samples) <= everything
    counts = collections.Counter(samples)
    assert set(counts) == everything
    # uniform: each of the P paths appears 20 times on average; with 20 P draws the count of one
    # path is Binomial(20P, 1/P), whose standard deviation is ~4.5, so 0 or 60 would be 4-9 sigma
    assert max(counts.values()) < 60 and min(counts.values()) > 0


@pytest.mark.slow
@settings(max_examples=150)
@given(specs, lengths)
def test_theorem1_exhaustive(spec, T):
    r = rc.theorem1_report(spec, T, seed=T + 17)
    assert r["exact"] and r["integral"] and r["in_span"], r["failures"]
