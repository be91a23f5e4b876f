"""The unrolled graph of a stacked Elman RNN: a DAG with shared weights, and its paths.

Shapes: T steps, B batch, n_in inputs, H_i hidden units in layer i (i = 1..d), n_out outputs,
E edges, P paths, L the longest path (in edges), m = ``n_params`` scalar parameters.

The graph is the paper's N(G, pi, p) (``path-sgd-relu-rnn.md`` Section 2):

* input nodes ``("input", 0, t, k)`` for t = 1..T, k < n_in, whose value is x_t[k];
* with ``spec.bias`` one **bias node** ``("bias", 0, 0, 0)`` of value 1, joined to every hidden
  and output node (footnote 2), so b^i[j] is shared by the T edges into unit j of layer i;
* hidden nodes ``("hidden", i, t, j)`` for layers i = 1..d, t = 1..T, j < H_i;
* output nodes ``("output", d + 1, t, k)`` at every step (``outputs`` "every" or "masked": the
  mask belongs to the loss, the model emits y at every step) or only at t = T ("last").

Edges, each carrying the flat index pi(e) of its shared parameter:
``W_in^i[j, k]``: (i-1, t, k) -> (i, t, j); ``W_rec^i[j, k]``: (i, t-1, k) -> (i, t, j) for t >= 2;
``b^i[j]``: bias -> (i, t, j); ``out.W[k, j]``: (d, t, j) -> output (t, k); ``out.b[k]``: bias ->
output (t, k).

**The hidden units at time 0 are not nodes.** Section 2 of the paper lists them among the input
nodes, but with h_0 = 0 (Table 1) every path that starts there carries the value 0 and adds
nothing to the function. It would still add a term to the path regularizer (Eq. 2 sums over all
paths, whatever the input value), and those paths are not invariant under the node-wise
rescalings of Theorem 1 (path-sgd) (h_0 is not rescaled), so including them would break
Theorem 2 (path-sgd); the squared-network formula of Theorem 3 (path-sgd) agrees with leaving them
out only if it runs with h~_0 = 0. rnnlab therefore omits them, which makes Eq. (2), Eq. (3) and
Theorem 3 (path-sgd) agree.

Nodes are numbered in a topological order (bias first, then for each t: inputs, layer 1, ...,
layer d, outputs) and edges are numbered grouped by destination in that order, so one pass over
the edges in id order is a valid dynamic programme.

Paths are tuples of edge ids from an input or bias node to an output node. Their number grows
like H^T, so enumeration (lazy :meth:`UnrolledGraph.iter_paths` or vectorised
:meth:`UnrolledGraph.bulk`) first counts them exactly by dynamic programming with Python ints and
refuses above ``max_paths``.

This module is host-side analysis code: it works on NumPy arrays in float64 whatever the active
backend, and moves arrays to the backend only to call the model.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .. import backend
from ..errors import ConfigError
from ..params import host_vector, layout
from .support import POSITIVELY_HOMOGENEOUS, require_elman

KINDS = ("input", "bias", "hidden", "output")


# ----------------------------------------------------------------------------- parameter indexing
def _offsets(spec) -> dict:
    """name -> (offset, shape) in the flatten order of :func:`rnnlab.params.flatten`."""
    return {name: (start, shape) for name, shape, start, _ in layout(spec)}


def n_params(spec) -> int:
    """The number m of scalar parameters of ``spec`` (an Elman spec or model)."""
    spec = require_elman(spec, what="n_params")
    return sum(math.prod(s) for s in spec.param_shapes().values())


def param_index(spec, name: str, index) -> int:
    """The flat index of ``params[name][index]`` in :func:`rnnlab.params.flatten` order.

    Arrays come in ``spec.param_shapes()`` order, entries within an array in C order.

    >>> from rnnlab.models import ElmanSpec
    >>> param_index(ElmanSpec(1, (2,), 1), "layer1.W_rec", (0, 1))
    3
    """
    offsets = _offsets(require_elman(spec, what="param_index"))
    if name not in offsets:
        raise ConfigError(f"unknown parameter name {name!r}; expected one of {list(offsets)}")
    start, shape = offsets[name]
    index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ConfigError(f"index {index} is out of range for {name} of shape {shape}")
    return start + int(np.ravel_multi_index(index, shape))


def param_names_flat(spec) -> list[str]:
    """A readable name for every flat index, e.g. ``"layer1.W_rec[0,1]"`` or ``"out.b[2]"``."""
    spec = require_elman(spec, what="param_names_flat")
    names = []
    for name, shape in spec.param_shapes().items():
        for idx in np.ndindex(*shape):
            names.append(f"{name}[{','.join(map(str, idx))}]")
    return names


def fit_T(spec, T: int, max_paths: int) -> int:
    """The largest T' <= T (at least 1) whose unrolled graph has at most ``max_paths`` paths
    (for tests and benchmarks that must keep enumeration small)."""
    spec = require_elman(spec, what="fit_T")
    while T > 1 and UnrolledGraph(spec, T, max_paths=max_paths).count_paths() > max_paths:
        T -= 1
    return T


# ----------------------------------------------------------------------------- the graph
@dataclasses.dataclass(frozen=True)
class Node:
    """One node of the unrolled graph.

    kind : {"input", "bias", "hidden", "output"}
    layer : 0 for input and bias nodes, i = 1..d for hidden layers, d + 1 for outputs
    time : t = 1..T (0 for the bias node)
    unit : the coordinate within its layer (0 for the bias node)
    """

    kind: str
    layer: int
    time: int
    unit: int

    def __str__(self):
        if self.kind == "bias":
            return "bias"
        letter = {"input": "x", "hidden": f"h{self.layer}", "output": "y"}[self.kind]
        return f"{letter}[t={self.time},{self.unit}]"


class UnrolledGraph:
    """The time-unrolled DAG of ``spec`` over T steps with its parameter map pi.

    Parameters
    ----------
    spec : ElmanSpec (or a model: its ``.spec``)
    T : int
        Number of steps unrolled.
    max_paths : int
        Enumeration (:meth:`iter_paths`, :meth:`bulk`) refuses graphs with more paths.

    Attributes
    ----------
    spec, T, n_params, max_paths
    nodes : list of Node, in topological order
    edge_src, edge_dst, edge_param : (E,) int64
        Source node, destination node and flat parameter index pi(e) of every edge.
    input_nodes : list of int
        The bias node (first, if ``spec.bias``) and the input nodes.
    output_nodes : list of int
        Output nodes in (time, unit) order.
    bias_node : int or None
    output_times : tuple of int
        The steps that emit outputs.
    """

    def __init__(self, spec, T: int, max_paths: int = 1_000_000):
        from .. import validate
        self.spec = spec = require_elman(spec, what="UnrolledGraph")
        self.T = validate.positive_int("T", T)
        self.max_paths = validate.positive_int("max_paths", max_paths)
        self.n_params = n_params(spec)
        d = spec.layers
        self.output_times = tuple(range(1, T + 1)) if spec.outputs in ("every", "masked") \
            else (T,)
        offsets = _offsets(spec)

        def pidx(name, *index):
            start, shape = offsets[name]
            return start + int(np.ravel_multi_index(index, shape))

        nodes, ids = [], {}

        def add_node(kind, layer, time, unit):
            node = Node(kind, layer, time, unit)
            ids[node] = len(nodes)
            nodes.append(node)
            return ids[node]

        src, dst, par = [], [], []

        def add_edge(u, v, p):
            src.append(u)
            dst.append(v)
            par.append(p)

        self.bias_node = add_node("bias", 0, 0, 0) if spec.bias else None
        widths = (spec.n_in,) + spec.hidden
        for t in range(1, T + 1):
            for k in range(spec.n_in):
                add_node("input", 0, t, k)
            for i in range(1, d + 1):
                below = "input" if i == 1 else "hidden"
                for j in range(widths[i]):
                    v = add_node("hidden", i, t, j)
                    for k in range(widths[i - 1]):
                        add_edge(ids[Node(below, i - 1, t, k)], v, pidx(f"layer{i}.W_in", j, k))
                    if t >= 2:
                        for k in range(widths[i]):
                            add_edge(ids[Node("hidden", i, t - 1, k)], v,
                                     pidx(f"layer{i}.W_rec", j, k))
                    if spec.bias:
                        add_edge(self.bias_node, v, pidx(f"layer{i}.b", j))
            if t in self.output_times:
                for k in range(spec.n_out):
                    v = add_node("output", d + 1, t, k)
                    for j in range(widths[d]):
                        add_edge(ids[Node("hidden", d, t, j)], v, pidx("out.W", k, j))
                    if spec.bias:
                        add_edge(self.bias_node, v, pidx("out.b", k))

        self.nodes = nodes
        self._ids = ids
        self.edge_src = np.asarray(src, dtype=np.int64)
        self.edge_dst = np.asarray(dst, dtype=np.int64)
        self.edge_param = np.asarray(par, dtype=np.int64)
        kinds = [n.kind for n in nodes]
        self.input_nodes = [v for v, k in enumerate(kinds) if k in ("bias", "input")]
        self.output_nodes = [v for v, k in enumerate(kinds) if k == "output"]
        self.hidden_nodes = [v for v, k in enumerate(kinds) if k == "hidden"]
        n = len(nodes)
        # CSR adjacency: out-edges by source, in-edges by destination (edge ids ascending).
        order = np.argsort(self.edge_src, kind="stable")
        self.out_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.edge_src, minlength=n))])
        self.out_edges = order.astype(np.int64)
        order = np.argsort(self.edge_dst, kind="stable")
        self.in_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.edge_dst, minlength=n))])
        self.in_edges = order.astype(np.int64)
        self.is_output = np.zeros(n, dtype=bool)
        self.is_output[self.output_nodes] = True
        # Longest path in edges: input at t = 1 through every layer, recurrent edges to t = T.
        self.max_length = T + d

    # ------------------------------------------------------------------ small accessors
    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    def node_id(self, kind: str, layer: int, time: int, unit: int) -> int:
        """The id of a node, e.g. ``node_id("hidden", 1, 2, 0)``."""
        try:
            return self._ids[Node(kind, layer, time, unit)]
        except KeyError:
            raise ConfigError(f"no node ({kind!r}, layer={layer}, time={time}, unit={unit}) in "
                              f"this graph") from None

    def edges_of_param(self, index: int) -> np.ndarray:
        """The edge ids E_i sharing flat parameter ``index``."""
        return np.flatnonzero(self.edge_param == index)

    def describe_path(self, path) -> str:
        """A readable form such as ``x[t=1,0] -> h1[t=1,0] -> y[t=1,0]``."""
        path = [int(e) for e in path if e >= 0]
        if not path:
            return ""
        names = [str(self.nodes[self.edge_src[path[0]]])]
        names += [str(self.nodes[self.edge_dst[e]]) for e in path]
        return " -> ".join(names)

    def __repr__(self):
        return (f"UnrolledGraph(T={self.T}, nodes={self.n_nodes}, edges={self.n_edges}, "
                f"params={self.n_params}, spec={self.spec})")

    # ------------------------------------------------------------------ counting
    def paths_into(self) -> list[int]:
        """For every node, the exact number of paths from an input/bias node ending there
        (Python ints; input nodes count their empty path as 1)."""
        count = [0] * self.n_nodes
        for v in self.input_nodes:
            count[v] = 1
        # Edges are grouped by destination in topological order: one pass is a valid DP.
        for u, v in zip(self.edge_src.tolist(), self.edge_dst.tolist()):
            count[v] += count[u]
        return count

    def count_paths(self) -> int:
        """The exact number of input/bias -> output paths (dynamic programming, no overflow)."""
        count = self.paths_into()
        return sum(count[v] for v in self.output_nodes)

    def _refuse_if_too_many(self, what: str) -> int:
        count = self.count_paths()
        if count > self.max_paths:
            raise ConfigError(
                f"{what}: the unrolled graph (T={self.T}, {self.spec}) has {count:,} "
                f"input-output paths, more than max_paths={self.max_paths:,}; pass a larger "
                f"limit, e.g. UnrolledGraph(spec, T, max_paths={count}) (bulk memory grows like "
                f"paths x {self.max_length} x 8 bytes), or use the dynamic-programming routines "
                f"(count_paths, rnnlab.paths.norms.gamma2_recursion / gamma2_squared_network)")
        return count

    # ------------------------------------------------------------------ enumeration
    def iter_paths(self):
        """Yield every path as a tuple of edge ids, lazily (depth first, starting nodes in
        ``input_nodes`` order, out-edges in id order).

        Raises ConfigError, before yielding anything, when ``count_paths() > max_paths``.
        """
        self._refuse_if_too_many("iter_paths")
        return self._iter_paths()

    def _iter_paths(self):
        out_ptr, out_edges = self.out_ptr.tolist(), self.out_edges.tolist()
        dst, is_out = self.edge_dst.tolist(), self.is_output.tolist()
        for s in self.input_nodes:
            stack = [(s, ())]
            while stack:
                v, path = stack.pop()
                if is_out[v]:
                    yield path
                    continue
                for e in reversed(out_edges[out_ptr[v]:out_ptr[v + 1]]):
                    stack.append((dst[e], path + (e,)))

    def counting_vector(self, path) -> np.ndarray:
        """(m,) int64: how many edges of ``path`` carry each parameter (the vector c_p of
        ``path-space-rnn-gsgd.md`` Section 3.2, with v_p = prod_i p_i^(c_p,i))."""
        path = np.asarray([e for e in path if e >= 0], dtype=np.int64)
        return np.bincount(self.edge_param[path], minlength=self.n_params).astype(np.int64)

    def bulk(self) -> "PathSet":
        """All paths at once as a :class:`PathSet` (vectorised frontier expansion).

        Raises ConfigError when ``count_paths() > max_paths``.
        """
        count = self._refuse_if_too_many("bulk")
        starts = np.asarray(self.input_nodes, dtype=np.int64)
        paths = np.zeros((starts.shape[0], 0), dtype=np.int64)
        ends, origin = starts.copy(), starts.copy()
        done_paths, done_start = [], []
        out_deg = np.diff(self.out_ptr)
        width = self.max_length
        while ends.shape[0]:
            deg = out_deg[ends]
            total = int(deg.sum())
            owner = np.repeat(np.arange(ends.shape[0]), deg)
            first = np.repeat(self.out_ptr[ends] - (np.cumsum(deg) - deg), deg)
            new_edges = self.out_edges[first + np.arange(total)]
            paths = np.concatenate([paths[owner], new_edges[:, None]], axis=1)
            origin = origin[owner]
            ends = self.edge_dst[new_edges]
            finished = self.is_output[ends]
            if finished.any():
                block = np.full((int(finished.sum()), width), -1, dtype=np.int64)
                block[:, :paths.shape[1]] = paths[finished]
                done_paths.append(block)
                done_start.append(origin[finished])
            keep = ~finished
            paths, ends, origin = paths[keep], ends[keep], origin[keep]
        edges = (np.concatenate(done_paths) if done_paths
                 else np.zeros((0, width), dtype=np.int64))
        start = np.concatenate(done_start) if done_start else np.zeros(0, dtype=np.int64)
        if edges.shape[0] != count:  # the DP count and the enumeration are independent
            raise AssertionError(f"bulk enumeration found {edges.shape[0]} paths, DP {count}")
        return PathSet(self, edges, start)

    # ------------------------------------------------------------------ evaluation on the DAG
    def forward(self, x, params) -> np.ndarray:
        """Node values for a batch, computed node by node on the DAG (an implementation of
        ``path-sgd-relu-rnn.md`` Section 2 independent of :class:`ElmanRNN`).

        Parameters
        ----------
        x : (T, B, n_in)
        params : dict or (m,) flat vector

        Returns
        -------
        values : (n_nodes, B) float64
            h_v for every node (pre-activation sums for output nodes, 1 for the bias node).
        """
        w = host_vector(params, self.spec)[self.edge_param]
        x = self._check_x(x)
        values = np.zeros((self.n_nodes, x.shape[1]))
        relu = self.spec.activation == "relu"
        for v, node in enumerate(self.nodes):
            if node.kind == "bias":
                values[v] = 1.0
            elif node.kind == "input":
                values[v] = x[node.time - 1, :, node.unit]
            else:
                es = self.in_edges[self.in_ptr[v]:self.in_ptr[v + 1]]
                z = w[es] @ values[self.edge_src[es]]
                if node.kind == "hidden":
                    if relu:
                        z = np.maximum(z, 0.0)
                    elif self.spec.activation == "tanh":
                        z = np.tanh(z)
                values[v] = z
        return values

    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(backend.to_host(x), dtype=np.float64)
        if x.ndim != 3 or x.shape[0] != self.T or x.shape[2] != self.spec.n_in:
            raise ConfigError(f"x must have shape ({self.T}, B, {self.spec.n_in}) for this "
                              f"graph; got {x.shape}")
        return x

    def output_array(self, node_values) -> np.ndarray:
        """Rearrange (n_nodes, B) node values into the model's output layout: (T, B, n_out) for
        outputs "every"/"masked", (B, n_out) for "last"."""
        vals = np.asarray(node_values)[self.output_nodes]           # (times * n_out, B)
        vals = vals.reshape(len(self.output_times), self.spec.n_out, -1).transpose(0, 2, 1)
        return vals[0] if self.spec.outputs == "last" else vals


class PathSet:
    """All paths of an :class:`UnrolledGraph`, as arrays (from :meth:`UnrolledGraph.bulk`).

    Attributes
    ----------
    graph : UnrolledGraph
    edges : (P, L) int64
        Edge ids of each path from its start, padded with -1 (paths from different inputs or
        from the bias node have different lengths); L = T + d.
    start, end : (P,) int64
        Start (input or bias) and end (output) node of each path.
    counts : (P, m) int64
        Counting vectors (computed on first access).
    """

    def __init__(self, graph: UnrolledGraph, edges: np.ndarray, start: np.ndarray):
        self.graph = graph
        self.edges = edges
        self.start = start
        lengths = (edges >= 0).sum(axis=1)
        self.lengths = lengths
        last = edges[np.arange(edges.shape[0]), np.maximum(lengths - 1, 0)]
        self.end = graph.edge_dst[last] if edges.shape[0] else np.zeros(0, dtype=np.int64)

    def __len__(self):
        return int(self.edges.shape[0])

    @functools.cached_property
    def counts(self) -> np.ndarray:
        P, m = len(self), self.graph.n_params
        rows = np.repeat(np.arange(P), self.lengths)
        params = self.graph.edge_param[self.edges[self.edges >= 0]]
        flat = np.bincount(rows * m + params, minlength=P * m)
        return flat.reshape(P, m).astype(np.int64)

    def _gather(self, per_edge: np.ndarray) -> np.ndarray:
        """(P, L, ...) values of ``per_edge`` (E, ...) along each path, padding read as 1."""
        padded = np.concatenate([per_edge, np.ones((1,) + per_edge.shape[1:],
                                                   dtype=per_edge.dtype)])
        return padded[self.edges]  # index -1 reads the appended row of ones

    def values(self, params) -> np.ndarray:
        """(P,) path values v_p = product of the weights along each path
        (``path-space-rnn-gsgd.md`` Section 2.1); ``params`` a dict or an (m,) flat vector."""
        w = host_vector(params, self.graph.spec)[self.graph.edge_param]
        return np.prod(self._gather(w), axis=1)

    def activation(self, x, params) -> np.ndarray:
        """(P, B) uint8 activation status a_p: the product of the ReLU on/off indicators of the
        hidden nodes the path passes (all ones for the identity activation).

        The hidden values come from :meth:`UnrolledGraph.forward` (not from the model), so the
        reconstruction check compares two independent computations.
        """
        spec = require_elman(self.graph.spec, activations=POSITIVELY_HOMOGENEOUS,
                             what="PathSet.activation (the path decomposition of the output, "
                                  "Eq. 3 (gsgd))")
        node_values = self.graph.forward(x, params)
        on = np.ones(node_values.shape, dtype=bool)
        if spec.activation == "relu":
            hidden = self.graph.hidden_nodes
            on[hidden] = node_values[hidden] > 0
        per_edge = on[self.graph.edge_dst]                            # (E, B)
        return np.logical_and.reduce(self._gather(per_edge), axis=1).astype(np.uint8)

    def inputs(self, x) -> np.ndarray:
        """(P, B) the value at each path's start node: x_t[k] for an input node, 1 for bias."""
        x = self.graph._check_x(x)
        table = np.ones((self.graph.n_nodes, x.shape[1]))
        for v in self.graph.input_nodes:
            node = self.graph.nodes[v]
            if node.kind == "input":
                table[v] = x[node.time - 1, :, node.unit]
        return table[self.start]

    def output_terms(self, x, params) -> np.ndarray:
        """(P, B) v_p * a_p(x) * input_p(x): each path's contribution to its output node."""
        return (self.values(params)[:, None] * self.activation(x, params)) * self.inputs(x)

    def reconstruct(self, x, params) -> np.ndarray:
        """The model output rebuilt as a sum over paths (``path-space-rnn-gsgd.md`` Eq. 3,
        with the bias node as an input of value 1), in the layout of ``ElmanRNN.forward``."""
        terms = self.output_terms(x, params)
        sums = np.zeros((self.graph.n_nodes, terms.shape[1]))
        np.add.at(sums, self.end, terms)
        return self.graph.output_array(sums)
