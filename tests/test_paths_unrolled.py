"""The unrolled graph: parameter map pi, exact path counting, lazy and bulk enumeration, and the
reconstruction of every output as a sum over paths (``path-space-rnn-gsgd.md`` Eq. 3)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab import ConfigError, params as rparams
from rnnlab.models import ElmanRNN, ElmanSpec
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import UnrolledGraph, fit_T, n_params, param_index, param_names_flat

from strategies import seeds

EPS = np.finfo(np.float64).eps


@st.composite
def path_problems(draw, activations=("relu", "identity"), max_paths=20_000,
                  outputs=("every", "last", "masked")):
    """(spec, T, seed): 1-3 layers of widths 1-4, input/output 1-3, T 1-5 (shrunk until the
    graph has at most ``max_paths`` paths), bias on/off."""
    hidden = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    spec = ElmanSpec(draw(st.integers(1, 3)), hidden, draw(st.integers(1, 3)),
                     draw(st.sampled_from(activations)), draw(st.booleans()),
                     draw(st.sampled_from(outputs)))
    T = fit_T(spec, draw(st.integers(1, 5)), max_paths)
    return spec, T, draw(seeds)


def random_params(spec, seed, scale=0.7):
    return unflatten(scale * np.random.default_rng(seed).standard_normal(
        n_params(spec)), spec, host=True)


# ----------------------------------------------------------------------------- pi and names
@given(path_problems())
def test_param_index_matches_flatten_order(problem):
    spec, _, _ = problem
    numbered = unflatten(np.arange(n_params(spec), dtype=float), spec, host=True)
    vec, _ = rparams.flatten(numbered)
    for name, shape in spec.param_shapes().items():
        for idx in np.ndindex(*shape):
            k = param_index(spec, name, idx)
            assert vec[k] == numbered[name][idx] == k
    names = param_names_flat(spec)
    assert len(names) == n_params(spec) == len(set(names))


def test_param_index_examples_and_errors():
    spec = ElmanSpec(1, (2,), 1)           # W_in (2,1), W_rec (2,2), b (2,), out.W (1,2), out.b
    assert param_index(spec, "layer1.W_rec", (0, 1)) == 3
    assert param_index(spec, "out.b", 0) == 10
    assert param_names_flat(spec)[3] == "layer1.W_rec[0,1]"
    with pytest.raises(ConfigError, match="unknown parameter"):
        param_index(spec, "layer2.W_in", (0, 0))
    with pytest.raises(ConfigError, match="out of range"):
        param_index(spec, "layer1.W_rec", (2, 0))


@given(path_problems())
def test_every_edge_carries_its_shared_parameter(problem):
    spec, T, _ = problem
    g = UnrolledGraph(spec, T)
    names = param_names_flat(spec)
    d = spec.layers
    for e in range(g.n_edges):
        u, v = g.nodes[g.edge_src[e]], g.nodes[g.edge_dst[e]]
        name = names[g.edge_param[e]]
        if u.kind == "bias":
            want = f"out.b[{v.unit}]" if v.kind == "output" else f"layer{v.layer}.b[{v.unit}]"
        elif v.kind == "output":
            assert u.time == v.time and u.layer == d
            want = f"out.W[{v.unit},{u.unit}]"
        elif u.layer == v.layer:
            assert u.time == v.time - 1
            want = f"layer{v.layer}.W_rec[{v.unit},{u.unit}]"
        else:
            assert u.time == v.time and u.layer == v.layer - 1
            want = f"layer{v.layer}.W_in[{v.unit},{u.unit}]"
        assert name == want
    # sizes: one node per unit and step, outputs per spec, bias node iff spec.bias
    emit = T if spec.outputs != "last" else 1
    assert g.n_nodes == int(spec.bias) + T * (spec.n_in + sum(spec.hidden)) + emit * spec.n_out
    assert len(g.input_nodes) == int(spec.bias) + T * spec.n_in
    assert (g.bias_node is not None) == spec.bias
    # every parameter labels at least one edge, except W_rec when T = 1
    used = np.bincount(g.edge_param, minlength=g.n_params) > 0
    unused = {names[i].split("[")[0] for i in np.flatnonzero(~used)}
    assert unused <= ({f"layer{i}.W_rec" for i in range(1, d + 1)} if T == 1 else set())


# ----------------------------------------------------------------------------- counting
@pytest.mark.parametrize("n_in,H,n_out,T,outputs", [(1, 1, 1, 4, "every"), (2, 3, 2, 4, "every"),
                                                    (3, 2, 1, 5, "last"), (2, 4, 3, 3, "last")])
def test_count_matches_closed_form_single_layer(n_in, H, n_out, T, outputs):
    # one layer, no bias: input at step t to output at step t' >= t passes t' - t + 1 hidden
    # nodes, each any of H units -> n_in * H^(t'-t+1) * n_out paths
    g = UnrolledGraph(ElmanSpec(n_in, (H,), n_out, bias=False, outputs=outputs), T)
    ends = range(1, T + 1) if outputs == "every" else [T]
    want = sum(n_in * H ** (t2 - t + 1) * n_out for t2 in ends for t in range(1, t2 + 1))
    assert g.count_paths() == want


def test_count_is_exact_beyond_int64():
    # 8^40 * 40 ... > 2^63: the DP uses Python ints
    g = UnrolledGraph(ElmanSpec(1, (8,), 1, bias=False, outputs="last"), 40)
    want = sum(8 ** k for k in range(1, 41))
    assert g.count_paths() == want > 2 ** 63


@given(path_problems(max_paths=3_000))
def test_count_matches_networkx(problem):
    nx = pytest.importorskip("networkx")
    spec, T, _ = problem
    g = UnrolledGraph(spec, T)
    dag = nx.DiGraph()
    dag.add_edges_from(zip(g.edge_src.tolist(), g.edge_dst.tolist()))
    want = sum(sum(1 for _ in nx.all_simple_paths(dag, s, g.output_nodes))
               for s in g.input_nodes if s in dag)
    assert g.count_paths() == want


@given(path_problems())
def test_lazy_and_bulk_enumerate_the_same_paths(problem):
    spec, T, _ = problem
    g = UnrolledGraph(spec, T)
    lazy = list(g.iter_paths())
    bulk = g.bulk()
    rows = [tuple(int(e) for e in row if e >= 0) for row in bulk.edges]
    assert len(lazy) == len(bulk) == g.count_paths() == len(set(lazy))
    assert set(rows) == set(lazy)
    assert bulk.edges.shape[1] == T + spec.layers
    for row, s, e in zip(rows, bulk.start, bulk.end):
        # a path: consecutive edges meet, starts at an input/bias node, ends at an output
        assert g.edge_src[row[0]] == s and g.edge_dst[row[-1]] == e
        assert all(g.edge_dst[a] == g.edge_src[b] for a, b in zip(row, row[1:]))
        assert g.nodes[s].kind in ("input", "bias") and g.nodes[e].kind == "output"
    # counting vectors: lazy per path == bulk rows; they sum to the path length
    for k in range(0, len(rows), max(1, len(rows) // 20)):
        assert np.array_equal(g.counting_vector(rows[k]), bulk.counts[k])
    assert np.array_equal(bulk.counts.sum(axis=1), bulk.lengths)


def test_iter_paths_is_lazy_and_refusal_is_clear():
    spec = ElmanSpec(2, (4, 4), 2, outputs="every")
    g = UnrolledGraph(spec, 12, max_paths=10)
    count = g.count_paths()
    with pytest.raises(ConfigError) as info:
        g.iter_paths()
    message = str(info.value)
    assert f"{count:,}" in message and "max_paths=10" in message and "max_paths=" in message
    with pytest.raises(ConfigError, match="more than max_paths"):
        g.bulk()
    big = UnrolledGraph(spec, 12, max_paths=count)
    first = next(iter(big.iter_paths()))     # lazy: no materialisation of ~1e9 paths
    assert count > 10 ** 8 and len(first) >= 2


def test_describe_path_and_node_lookup():
    spec = ElmanSpec(1, (2,), 1, bias=False, outputs="last")
    g = UnrolledGraph(spec, 2)
    path = next(p for p in g.iter_paths() if len(p) == 3)
    assert g.describe_path(path).startswith("x[t=1,0] -> h1[t=1,")
    assert g.nodes[g.node_id("hidden", 1, 2, 1)].unit == 1
    with pytest.raises(ConfigError, match="no node"):
        g.node_id("hidden", 1, 3, 0)


# ----------------------------------------------------------------------------- reconstruction
@given(path_problems(), st.integers(1, 4))
def test_graph_forward_matches_model_hidden_states(problem, B):
    spec, T, seed = problem
    rng = np.random.default_rng(seed)
    p = random_params(spec, seed)
    x = rng.standard_normal((T, B, spec.n_in))
    g = UnrolledGraph(spec, T)
    values = g.forward(x, p)
    y, cache = ElmanRNN(spec, p).forward(p, x)
    for v, node in enumerate(g.nodes):
        if node.kind == "hidden":
            want = cache.h[node.layer - 1][node.time, :, node.unit]
            # same dot products in a different order: |error| <= (H + n_in + 1) eps * scale
            np.testing.assert_allclose(values[v], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.output_array(values), y, rtol=1e-12, atol=1e-12)


@given(path_problems(), st.integers(1, 3))
def test_outputs_are_sums_over_paths(problem, B):
    spec, T, seed = problem
    rng = np.random.default_rng(seed)
    p = random_params(spec, seed)
    x = rng.standard_normal((T, B, spec.n_in))
    paths = UnrolledGraph(spec, T).bulk()
    terms = paths.output_terms(x, p)
    y, _ = ElmanRNN(spec, p).forward(p, x)
    rebuilt = paths.reconstruct(x, p)
    assert rebuilt.shape == y.shape
    scale = np.zeros((paths.graph.n_nodes, B))
    np.add.at(scale, paths.end, np.abs(terms))
    # a sum of P products of <= T + d factors against the model's (T + d) layers of dot products:
    # |error| <= (P + (T + d)(H + n_in + 2)) eps * sum|terms| (first-order bound)
    bound = (len(paths) + (T + spec.layers) * (max(spec.hidden) + spec.n_in + 2)) * EPS
    assert np.max(np.abs(rebuilt - y)) <= bound * max(scale.max(), 1e-300)


def test_activation_inputs_and_values_by_hand():
    # 1 input, 1 unit, 1 output, T = 2, no bias: paths x1->h1->y1, x1->h1->h2->y2, x2->h2->y2
    spec = ElmanSpec(1, (1,), 1, "relu", bias=False, outputs="every")
    p = {"layer1.W_in": np.array([[2.0]]), "layer1.W_rec": np.array([[-1.0]]),
         "out.W": np.array([[3.0]])}
    g = UnrolledGraph(spec, 2)
    paths = g.bulk()
    x = np.array([[[1.0]], [[1.5]]])        # h1 = 2, h2 = relu(3 - 2) = 1: both on
    got = {g.describe_path(e): (v, a[0], i[0]) for e, v, a, i in zip(
        paths.edges, paths.values(p), paths.activation(x, p), paths.inputs(x))}
    assert got == {"x[t=1,0] -> h1[t=1,0] -> y[t=1,0]": (6.0, 1, 1.0),
                   "x[t=1,0] -> h1[t=1,0] -> h1[t=2,0] -> y[t=2,0]": (-6.0, 1, 1.0),
                   "x[t=2,0] -> h1[t=2,0] -> y[t=2,0]": (6.0, 1, 1.5)}
    np.testing.assert_allclose(paths.reconstruct(x, p)[:, 0, 0], [6.0, 3.0])
    x_off = np.array([[[1.0]], [[0.5]]])    # h2 = relu(1 - 2) = 0: paths through h2 are off
    assert paths.activation(x_off, p)[:, 0].tolist() == [1, 0, 0]


def test_tanh_has_no_path_decomposition_and_x_shape_is_checked():
    spec = ElmanSpec(1, (2,), 1, "tanh")
    paths = UnrolledGraph(spec, 2).bulk()
    p = random_params(spec, 0)
    with pytest.raises(ConfigError, match="positively homogeneous"):
        paths.activation(np.ones((2, 1, 1)), p)
    with pytest.raises(ConfigError, match=r"x must have shape \(2, B, 1\)"):
        paths.inputs(np.ones((3, 1, 1)))
    with pytest.raises(ConfigError, match="flat parameter vector"):
        paths.values(np.ones(3))


@pytest.mark.slow
@pytest.mark.parametrize("hidden,T", [((4, 4, 4), 4), ((3,), 9), ((2, 3), 7)])
def test_reconstruction_large(hidden, T):
    spec = ElmanSpec(3, hidden, 3, "relu", True, "every")
    p = random_params(spec, 1)
    x = np.random.default_rng(1).standard_normal((T, 4, 3))
    paths = UnrolledGraph(spec, T, max_paths=3_000_000).bulk()
    y, _ = ElmanRNN(spec, p).forward(p, x)
    terms = paths.output_terms(x, p)
    scale = np.abs(terms).sum()
    # same first-order bound as above, with P up to ~3e6
    bound = (len(paths) + (T + spec.layers) * (max(hidden) + 5)) * EPS
    assert np.max(np.abs(paths.reconstruct(x, p) - y)) <= bound * scale
    assert math.isclose(float(np.sum(paths.values(p) ** 2)),
                        float(np.sum(np.prod(host_vector(p, spec)[None, :] ** (2 * paths.counts),
                                             axis=1))), rel_tol=1e-9)
