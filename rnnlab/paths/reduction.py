"""The reduction graph of a stacked Elman RNN and its paths (``path-space-rnn-gsgd.md`` Def. 3).

Shapes: n_in inputs, H_i hidden units in layer i (i = 1..d), n_out outputs, m = ``n_params``
scalar parameters, N_h = H_1 + ... + H_d hidden nodes, P reduction paths.

The reduction graph is the unrolled graph with time removed (Section 3.2, Figure 2):

* nodes: inputs ``x[k]``, hidden units ``h{i}[j]`` of every layer, outputs ``y[k]`` and, when the
  spec has biases, one **bias node** of value 1 (the bias node of ``path-sgd-relu-rnn.md``
  footnote 2, treated as one more input node, never as a hidden node);
* edges: one per scalar parameter, so an edge *is* its flat parameter index (the order of
  :func:`rnnlab.params.flatten`, via :func:`rnnlab.paths.unrolled.param_index`):
  ``layer{i}.W_in[j, k]`` (unit k of layer i-1, or input k, -> h{i}[j]),
  ``layer{i}.W_rec[j, k]`` (h{i}[k] -> h{i}[j], the only recurrent edges),
  ``layer{i}.b[j]`` (bias -> h{i}[j]), ``out.W[k, j]`` (h{d}[j] -> y[k]), ``out.b[k]``
  (bias -> y[k]).

A **reduction path** (Definition 3) starts at an input or the bias node, ends at an output and
crosses at most one recurrent edge. For a stacked RNN rnnlab reads "at most one" as one in the
whole path (not one per layer); Theorem 1 (gsgd) holds with this smaller set (checked by
:meth:`ReductionGraph.combination`), so the larger reading is never needed. Every edge is crossed
at most once, so counting vectors of reduction paths are 0/1 vectors.

**Theorem 1 (gsgd)** (values of unrolled paths are products and quotients of reduction-path
values) is the statement that every unrolled counting vector c is an *integer* combination of
reduction counting vectors. :meth:`ReductionGraph.combination` writes one down for any c.
Choose for every hidden node v a non-recurrent chain ``head(v)`` from an input to v and
``tail(v)`` from v to an output (:class:`Chains`); for an edge e = u -> w let
``R(e) = head(u) + e + tail(w)`` (head of an input and tail of an output are empty), a reduction
path with at most one recurrent edge. Then for every c with flow conservation at the hidden
nodes (in-count = out-count, true for any path)

    c = sum_e c_e R(e)  -  sum_v n_v(c) (head(v) + tail(v)),     n_v(c) = sum_{e into v} c_e,

because the right side equals c + sum_v head(v) (out_v(c) - in_v(c)). This is the paper's proof
of Theorem 1 (gsgd) (App. C.1, where p(i) = R(e_i)) written for stacked layers and biases; the
paper's example there (C_p = (1, 0, 3, 1, 0)) is the single-unit case.

Notes on the paper (checked by code in ``tests/test_paths_reduction.py``):

* Section 3.1 example: p_3 is printed as ending at N_5^{O,(1)} though it passes N_3^{H,(2)}; the
  end node must be N_5^{O,(2)}. With that fix Eq. (4) holds exactly.
* "P_r subset of P" (Section 3.2) needs T >= 2: for T = 1 the unrolled graph has no recurrent
  edge, so reduction paths through one are not unrolled paths.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import random

import numpy as np

from ..errors import ConfigError
from .support import require_elman
from .unrolled import n_params, param_index

EDGE_KINDS = ("in", "rec", "out", "bias")


@dataclasses.dataclass(frozen=True)
class RNode:
    """One node of the reduction graph.

    kind : {"input", "bias", "hidden", "output"}
    layer : 0 for inputs and the bias node, i = 1..d for hidden layers, d + 1 for outputs
    unit : the coordinate within its layer (0 for the bias node)
    """

    kind: str
    layer: int
    unit: int

    def __str__(self):
        if self.kind == "bias":
            return "bias"
        if self.kind == "hidden":
            return f"h{self.layer}[{self.unit}]"
        return f"{'x' if self.kind == 'input' else 'y'}[{self.unit}]"


@dataclasses.dataclass(frozen=True)
class REdge:
    """One edge of the reduction graph; ``param`` is both its id and its flat parameter index.

    kind : {"in", "rec", "out", "bias"}
        ``in`` for every W_in entry (input -> layer 1 or layer i-1 -> layer i), ``rec`` for
        W_rec, ``out`` for out.W, ``bias`` for hidden and output biases.
    """

    param: int
    name: str
    index: tuple
    src: RNode
    dst: RNode
    kind: str

    @property
    def recurrent(self) -> bool:
        return self.kind == "rec"

    def __str__(self):
        return f"{self.name}[{','.join(map(str, self.index))}]"


class ReductionGraph:
    """The reduction graph of ``spec`` (time removed; one edge per scalar parameter).

    Parameters
    ----------
    spec : ElmanSpec (or a model: its ``.spec``)

    Attributes
    ----------
    spec : ElmanSpec
    n_params : int
        m, the number of edges (= scalar parameters, biases included when ``spec.bias``).
    nodes : list of RNode
        Sources (inputs, then the bias node if any), hidden nodes layer by layer, outputs.
    hidden_nodes, sources, outputs : lists of RNode
    n_hidden : int
        N_h = sum of the layer widths (the bias node is not a hidden node).
    edges : list of REdge
        ``edges[p]`` is the edge of flat parameter p.
    """

    def __init__(self, spec):
        self.spec = spec = require_elman(spec, what="ReductionGraph")
        self.n_params = n_params(spec)
        d = spec.layers
        widths = (spec.n_in,) + tuple(spec.hidden)
        self.inputs = [RNode("input", 0, k) for k in range(spec.n_in)]
        self.bias = RNode("bias", 0, 0) if spec.bias else None
        self.hidden_nodes = [RNode("hidden", i, j) for i in range(1, d + 1)
                             for j in range(widths[i])]
        self.outputs = [RNode("output", d + 1, k) for k in range(spec.n_out)]
        self.sources = self.inputs + ([self.bias] if self.bias else [])
        self.nodes = self.sources + self.hidden_nodes + self.outputs
        self.n_hidden = len(self.hidden_nodes)

        edges = [None] * self.n_params

        def add(name, index, src, dst, kind):
            p = param_index(spec, name, index)
            edges[p] = REdge(p, name, tuple(index), src, dst, kind)

        for i in range(1, d + 1):
            below = (lambda k: RNode("input", 0, k)) if i == 1 else \
                (lambda k, i=i: RNode("hidden", i - 1, k))
            for j in range(widths[i]):
                h = RNode("hidden", i, j)
                for k in range(widths[i - 1]):
                    add(f"layer{i}.W_in", (j, k), below(k), h, "in")
                for k in range(widths[i]):
                    add(f"layer{i}.W_rec", (j, k), RNode("hidden", i, k), h, "rec")
                if spec.bias:
                    add(f"layer{i}.b", (j,), self.bias, h, "bias")
        for k in range(spec.n_out):
            for j in range(widths[d]):
                add("out.W", (k, j), RNode("hidden", d, j), self.outputs[k], "out")
            if spec.bias:
                add("out.b", (k,), self.bias, self.outputs[k], "bias")
        if any(e is None for e in edges):  # every parameter must be exactly one edge
            raise AssertionError("reduction graph does not cover every parameter")
        self.edges = edges
        self.out_edges = collections.defaultdict(list)
        self.in_edges = collections.defaultdict(list)
        for e in edges:
            self.out_edges[e.src].append(e.param)
            self.in_edges[e.dst].append(e.param)

    def __repr__(self):
        return (f"ReductionGraph(nodes={len(self.nodes)}, edges={self.n_params}, "
                f"hidden={self.n_hidden}, spec={self.spec})")

    # ------------------------------------------------------------------ paths
    @functools.cached_property
    def paths(self) -> list[tuple]:
        """Every reduction path (Definition 3) as a tuple of edges (flat parameter indices) in
        path order; depth first from each source in ``sources`` order."""
        found = []
        stack = [(s, (), False) for s in reversed(self.sources)]
        while stack:
            node, path, used_rec = stack.pop()
            if node.kind == "output":
                found.append(path)
                continue
            for p in reversed(self.out_edges[node]):
                e = self.edges[p]
                if e.recurrent and used_rec:
                    continue
                stack.append((e.dst, path + (p,), used_rec or e.recurrent))
        return found

    @functools.cached_property
    def path_index(self) -> dict:
        """Reduction path (tuple of edges) -> its row in :attr:`paths` / :meth:`counting_matrix`."""
        return {p: r for r, p in enumerate(self.paths)}

    def count_paths(self) -> int:
        """The number of reduction paths by dynamic programming (independent of the
        enumeration): f0(v), f1(v) = paths from a source to v with 0 / 1 recurrent edge."""
        f0 = collections.Counter({s: 1 for s in self.sources})
        f1 = collections.Counter()
        # Within a layer the recurrent edges need f0 of the same layer: do inter-layer and bias
        # edges first, then the recurrent ones.
        for layer in range(1, self.spec.layers + 2):
            targets = [v for v in self.nodes if v.layer == layer and v.kind != "bias"]
            for v in targets:
                for p in self.in_edges[v]:
                    e = self.edges[p]
                    if not e.recurrent:
                        f0[v] += f0[e.src]
                        f1[v] += f1[e.src]
            for v in targets:
                for p in self.in_edges[v]:
                    e = self.edges[p]
                    if e.recurrent:
                        f1[v] += f0[e.src]
        return sum(f0[o] + f1[o] for o in self.outputs)

    def counting_vector(self, path) -> np.ndarray:
        """(m,) int64 counting vector of a path given as edges (reduction or unrolled params)."""
        return np.bincount(np.asarray(path, dtype=np.int64),
                           minlength=self.n_params).astype(np.int64)

    def counting_matrix(self) -> np.ndarray:
        """(P, m) int64, one 0/1 counting vector per reduction path (rows in :attr:`paths`
        order)."""
        C = np.zeros((len(self.paths), self.n_params), dtype=np.int64)
        for r, path in enumerate(self.paths):
            C[r, list(path)] = 1
        return C

    def is_path(self, path) -> bool:
        """Whether ``path`` (a sequence of edges) is a reduction path in the sense of Def. 3."""
        if not path:
            return False
        es = [self.edges[p] for p in path]
        if es[0].src.kind not in ("input", "bias") or es[-1].dst.kind != "output":
            return False
        if any(a.dst != b.src for a, b in zip(es, es[1:])):
            return False
        return sum(e.recurrent for e in es) <= 1

    def describe(self, path) -> str:
        """A readable form such as ``x[0] -> h1[1] -> h1[0] -> y[0]``."""
        es = [self.edges[p] for p in path]
        return " -> ".join([str(es[0].src)] + [str(e.dst) for e in es]) if es else ""

    def value(self, path, w):
        """The product of the weights ``w`` (flat sequence, any number type) along ``path``."""
        out = 1
        for p in path:
            out = out * w[p]
        return out

    # ------------------------------------------------------------------ flow structure
    def conservation_matrix(self) -> np.ndarray:
        """(N_h, m) int64: row v has +1 on the edges into hidden node v and -1 on the edges out
        of it. Every path's counting vector c satisfies ``conservation_matrix() @ c = 0``; the
        rows are also the log-space directions of the node-wise rescalings of
        Theorem 1 (path-sgd) (multiply in-edges by a, out-edges by 1/a)."""
        M = np.zeros((self.n_hidden, self.n_params), dtype=np.int64)
        for r, v in enumerate(self.hidden_nodes):
            for p in self.in_edges[v]:
                M[r, p] += 1
            for p in self.out_edges[v]:
                M[r, p] -= 1
        return M

    def visits(self, c) -> dict:
        """Hidden node -> n_v(c) = sum of c over the edges into v (how often a path with
        counting vector c passes v)."""
        c = np.asarray(c)
        return {v: int(sum(int(c[p]) for p in self.in_edges[v])) for v in self.hidden_nodes}

    # ------------------------------------------------------------------ Theorem 1 (gsgd)
    @functools.cached_property
    def default_chains(self) -> "Chains":
        """Head/tail chains from the cyclic skeleton (:meth:`Chains.cyclic`)."""
        return Chains.cyclic(self)

    def combination(self, c, chains: "Chains | None" = None) -> dict:
        """Integer coefficients x (dict: path row -> int) with
        ``sum_r x[r] * counting_matrix()[r] == c`` whenever c satisfies flow conservation
        (every unrolled path does); see the module docstring for the formula.

        The identity is not assumed: :func:`check_combination` verifies it exactly.
        """
        chains = chains or self.default_chains
        c = np.asarray(c)
        x = collections.Counter()
        for p in np.flatnonzero(c).tolist():
            e = self.edges[p]
            x[self._row(chains.head(e.src) + (p,) + chains.tail(e.dst))] += int(c[p])
        for v, n in self.visits(c).items():
            if n:
                x[self._row(chains.head(v) + chains.tail(v))] -= n
        return {r: k for r, k in x.items() if k}

    def _row(self, path) -> int:
        try:
            return self.path_index[path]
        except KeyError:
            raise AssertionError(f"{self.describe(path)} is not a reduction path") from None

    def check_combination(self, coeffs: dict, c) -> bool:
        """True if sum_r coeffs[r] * (counting vector of path r) equals c exactly (Python
        ints)."""
        total = [0] * self.n_params
        for r, k in coeffs.items():
            for p in self.paths[r]:
                total[p] += int(k)
        return total == [int(v) for v in np.asarray(c).tolist()]


class Chains:
    """For every hidden node v one skeleton in-edge and one skeleton out-edge, both
    non-recurrent and not from the bias node, giving ``head(v)`` (edges from an input up to v)
    and ``tail(v)`` (edges from v up to an output).

    Parameters
    ----------
    graph : ReductionGraph
    in_edge, out_edge : dict hidden RNode -> flat parameter index
    """

    def __init__(self, graph: ReductionGraph, in_edge: dict, out_edge: dict):
        self.graph = graph
        for v in graph.hidden_nodes:
            for which, table, side, rel in (("in", in_edge, "dst", "into"),
                                            ("out", out_edge, "src", "out of")):
                if v not in table:
                    raise ConfigError(f"hidden node {v} has no skeleton {which}-edge")
                e = graph.edges[table[v]]
                if e.kind in ("rec", "bias") or getattr(e, side) != v:
                    raise ConfigError(f"skeleton {which}-edge {e} of {v} must be a "
                                      f"non-recurrent, non-bias edge {rel} {v}")
        self.in_edge = dict(in_edge)
        self.out_edge = dict(out_edge)

    @classmethod
    def cyclic(cls, graph: ReductionGraph) -> "Chains":
        """Unit j of layer i takes its in-edge from unit (j mod H_{i-1}) below and its out-edge
        to unit (j mod H_{i+1}) above (inputs and outputs count as layers 0 and d+1): the index
        pattern of ``path-space-rnn-gsgd.md`` Algorithm 1 with the fix of
        ``optimizers.md`` 2.2, applied to every layer."""
        spec = graph.spec
        d = spec.layers
        widths = (spec.n_in,) + tuple(spec.hidden) + (spec.n_out,)
        in_edge, out_edge = {}, {}
        for v in graph.hidden_nodes:
            i, j = v.layer, v.unit
            in_edge[v] = param_index(spec, f"layer{i}.W_in", (j, j % widths[i - 1]))
            above = "out.W" if i == d else f"layer{i + 1}.W_in"
            out_edge[v] = param_index(spec, above, (j % widths[i + 1], j))
        return cls(graph, in_edge, out_edge)

    def head(self, v: RNode) -> tuple:
        """Edges from an input to ``v`` along skeleton in-edges (empty for a source)."""
        out = []
        while v.kind == "hidden":
            p = self.in_edge[v]
            out.append(p)
            v = self.graph.edges[p].src
        return tuple(reversed(out))

    def tail(self, v: RNode) -> tuple:
        """Edges from ``v`` to an output along skeleton out-edges (empty for an output)."""
        out = []
        while v.kind == "hidden":
            p = self.out_edge[v]
            out.append(p)
            v = self.graph.edges[p].dst
        return tuple(out)


# ----------------------------------------------------------------------------- unrolled paths
def sample_unrolled_paths(graph, n: int, seed: int = 0) -> list[tuple]:
    """``n`` paths of an :class:`rnnlab.paths.UnrolledGraph` drawn uniformly at random (with
    replacement), as tuples of edge ids, without enumerating them.

    Exact uniform sampling backwards from the outputs with the path counts of
    ``graph.paths_into()`` (Python ints, so no overflow however long T is): pick an output with
    probability proportional to the number of paths ending there, then repeatedly an in-edge with
    probability proportional to the number of paths reaching its source.
    """
    rng = random.Random(seed)
    count = graph.paths_into()
    outs = graph.output_nodes
    total = sum(count[o] for o in outs)
    in_ptr, in_edges, src = graph.in_ptr.tolist(), graph.in_edges.tolist(), graph.edge_src.tolist()
    sources = set(graph.input_nodes)
    found = []
    for _ in range(n):
        r = rng.randrange(total)
        for v in outs:
            if r < count[v]:
                break
            r -= count[v]
        path = []
        while v not in sources:
            r = rng.randrange(count[v])
            for e in in_edges[in_ptr[v]:in_ptr[v + 1]]:
                if r < count[src[e]]:
                    break
                r -= count[src[e]]
            path.append(e)
            v = src[e]
        found.append(tuple(reversed(path)))
    return found
