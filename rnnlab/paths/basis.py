"""Basis paths of a ReLU RNN by the Skeleton Method (``path-space-rnn-gsgd.md`` Section 4,
Algorithm 1, App. B.4, Theorems 2-3 (gsgd); ``optimizers.md`` 2.1-2.6).

Shapes: n_in inputs, H_i hidden units in layer i (i = 1..d), n_out outputs, m scalar parameters
(= reduction-graph edges, biases included), N_h = H_1 + ... + H_d hidden nodes, r = m - N_h basis
paths.

**Skeleton.** Every hidden node v gets one skeleton *in*-edge (from the layer below, or an
input, never recurrent or bias) and one skeleton *out*-edge (to the layer above, or an output).
:class:`Skeleton` stores them as 0/1 masks: the in-mask of ``layer{i}.W_in`` has one 1 per row,
the out-mask of ``layer{i+1}.W_in`` (or ``out.W`` for the top layer) one 1 per column. The
default (:meth:`Skeleton.cyclic`) is Algorithm 1 with the index fix of ``optimizers.md`` 2.2:
``M_in[j, j mod n_in] = 1`` and ``M_out[j mod n_out, j] = 1``, applied to every layer; for equal
widths the inter-layer in- and out-masks are both the identity, i.e. one skeleton chain per unit
j: input (j mod n_in) -> h1[j] -> ... -> hd[j] -> output (j mod n_out) (``optimizers.md`` 2.5).

**Basis paths.** Let head(v) / tail(v) be the skeleton chains from an input to v and from v to an
output. For every edge e = u -> w that is *not* a skeleton in-edge the basis has the path

    Q_e = head(u) + e + tail(w)          (head of an input, tail of an output are empty),

i.e. the paper's P_s (e a skeleton out-edge: an all-skeleton path), P_ns (e a non-skeleton
non-recurrent edge, including every bias edge from the bias node) and P_b2 (e recurrent). There are
m - N_h of them (one per edge minus one skeleton in-edge per hidden node). Every non-skeleton edge
lies on exactly one basis path (its own), which is what G-SGD's inverse chain rule uses.

Why this is a basis (checked exactly by ``reduction_checks``): path counting vectors satisfy flow
conservation at the N_h hidden nodes, a subspace of dimension m - N_h; the m - N_h vectors Q_e
are independent (exact rank; a non-skeleton edge occurs in no other Q) and, for any c in that
subspace,

    c = sum_e c_e G(e) - sum_v n_v(c) N(v),   G(e) = Q_e (e not a skeleton in-edge),
                                              G(s_in(w)) = N(w),  N(v) = G(s_out(v)),

with integer coefficients (:meth:`BasisPaths.coefficients`). So the Q_e generate every path
vector over the integers (values by products and quotients, Definition 2), not just over the
reals. The same bookkeeping writes every non-skeleton-out weight as a Laurent monomial in the
basis-path values and the skeleton out-weights (:meth:`BasisPaths.exponents`), which is
Theorem 2 (gsgd) made constructive: given the basis values and the skeleton out-weights (whose
magnitudes only choose a point in the orbit of positive node-wise rescalings), every weight is
determined, hence the activation pattern and the output; only the *signs* of the skeleton
out-weights carry information.

Discrepancies with the paper (each checked by a test):

* Algorithm 1 prints ``M^o[j][j % n_out] = 1`` for j over the hidden units (the column index of
  the (K, h) matrix W^o): row j does not exist when h > K (an IndexError for the paper's own
  sMNIST setting, h = 100, K = 10). :func:`algorithm1_masks` keeps the printed reading
  (``reading="printed"``) next to the fix (``M^o[j % n_out][j]``); for h <= K both give the same
  mask. Its loops also run "j = 1 to n" with 0-based ``%``; rnnlab uses 0-based indices throughout.
* Theorem 2 (gsgd) names the signs of one selected entry per column of W^o. For a stacked RNN
  that is not enough: flipping the sign of a layer-i < d hidden node (in-weights times -1,
  out-weights times -1, a node-wise rescaling by -1) keeps every path value and W^o, but changes
  the output. The signs
  of *every* hidden node's skeleton out-weight are needed (for equal widths: W^o's selected
  entries and the diagonals of W_in^i, i >= 2).
* "The number of basis paths in P_s equals the number of hidden nodes" (Section 4) holds for one
  layer; for d stacked equal-width layers |P_s| = H (one per chain) while N_h = d H.
* Unequal stacked widths: the cyclic in- and out-masks of an inter-layer matrix differ, the
  skeleton is no longer a set of disjoint chains, but the construction above still gives a basis
  (checked); G-SGD's closed-form update (``optimizers.md`` 2.5) assumes equal widths.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import numpy as np

from ..errors import ConfigError
from . import exact
from .reduction import Chains, ReductionGraph
from .support import POSITIVELY_HOMOGENEOUS, require_elman
from .unrolled import param_index

BASIS_KINDS = ("skeleton", "non-skeleton", "bias", "recurrent")


# ----------------------------------------------------------------------------- masks
def algorithm1_masks(w_in_shape, w_out_shape, reading: str = "fixed"):
    """Algorithm 1 (Mask-Matrix-Constructor) of ``path-space-rnn-gsgd.md`` for one layer.

    Parameters
    ----------
    w_in_shape : (H, n_in)
    w_out_shape : (n_out, H)
    reading : {"fixed", "printed"}
        ``"printed"`` transcribes the pseudo-code as printed (0-based):
        ``M^o[j][j % n_out] = 1`` for j < shape(W^o)[1] = H, which raises IndexError when
        H > n_out. ``"fixed"`` swaps the indices, ``M^o[j % n_out][j] = 1`` (``optimizers.md``
        2.2): one skeleton out-edge per hidden unit.

    Returns
    -------
    M_in : (H, n_in) int64, one 1 per row
    M_out : (n_out, H) int64, one 1 per column
    """
    if reading not in ("fixed", "printed"):
        raise ConfigError(f"reading must be one of fixed, printed; got {reading!r}")
    m_in = np.zeros(w_in_shape, dtype=np.int64)
    n_out, n_in = w_in_shape
    for j in range(n_out):
        m_in[j, j % n_in] = 1
    m_out = np.zeros(w_out_shape, dtype=np.int64)
    n_out, n_in = w_out_shape
    for j in range(n_in):
        if reading == "printed":
            m_out[j, j % n_out] = 1
        else:
            m_out[j % n_out, j] = 1
    return m_in, m_out


class Skeleton:
    """Skeleton edges of every hidden node, as masks on the weight matrices.

    Parameters
    ----------
    spec : ElmanSpec (or a model: its ``.spec``)
    in_masks : dict i -> (H_i, H_{i-1}) 0/1 array
        Mask on ``layer{i}.W_in`` with exactly one 1 per row (the skeleton in-edge of each unit
        of layer i).
    out_masks : dict i -> 0/1 array
        For i < d a (H_{i+1}, H_i) mask on ``layer{i+1}.W_in``, for i = d a (n_out, H_d) mask on
        ``out.W``, with exactly one 1 per column (the skeleton out-edge of each unit of layer i).
    """

    def __init__(self, spec, in_masks: dict, out_masks: dict):
        self.spec = spec = require_elman(spec, what="Skeleton")
        d = spec.layers
        widths = (spec.n_in,) + tuple(spec.hidden) + (spec.n_out,)
        self.in_masks, self.out_masks = {}, {}
        for i in range(1, d + 1):
            above = "out.W" if i == d else f"layer{i + 1}.W_in"
            for kind, masks, store, shape, name, axis in (
                    ("in", in_masks, self.in_masks, (widths[i], widths[i - 1]),
                     f"layer{i}.W_in", 1),
                    ("out", out_masks, self.out_masks, (widths[i + 1], widths[i]), above, 0)):
                if i not in masks:
                    raise ConfigError(f"skeleton {kind}-mask for layer {i} ({name}) is missing")
                mask = np.asarray(masks[i])
                if mask.shape != shape:
                    raise ConfigError(f"skeleton {kind}-mask of layer {i} must have the shape "
                                      f"of {name}, {shape}; got {mask.shape}")
                if not np.isin(mask, (0, 1)).all():
                    raise ConfigError(f"skeleton {kind}-mask of layer {i} must be 0/1")
                counts = mask.sum(axis=axis)
                bad = np.flatnonzero(counts != 1).tolist()
                if bad:
                    what = "row" if axis == 1 else "column"
                    raise ConfigError(
                        f"skeleton {kind}-mask on {name} needs exactly one 1 per {what} (one "
                        f"skeleton {kind}-edge per hidden unit of layer {i}); {what}s {bad} "
                        f"have {counts[bad].tolist()}")
                store[i] = mask.astype(np.int64)

    @classmethod
    def cyclic(cls, spec) -> "Skeleton":
        """Algorithm 1 with the index fix, on every layer: unit j of layer i takes its in-edge
        from unit j mod H_{i-1} and its out-edge to unit j mod H_{i+1} (inputs = layer 0,
        outputs = layer d + 1). Equal widths give identity inter-layer masks (chains)."""
        spec = require_elman(spec, what="Skeleton.cyclic")
        d = spec.layers
        widths = (spec.n_in,) + tuple(spec.hidden) + (spec.n_out,)
        in_masks, out_masks = {}, {}
        for i in range(1, d + 1):
            in_masks[i], out_masks[i] = algorithm1_masks((widths[i], widths[i - 1]),
                                                         (widths[i + 1], widths[i]))
        return cls(spec, in_masks, out_masks)

    @classmethod
    def from_matrix_masks(cls, spec, masks: dict) -> "Skeleton":
        """Build from G-SGD-style masks, one per matrix: ``"layer1.W_in"`` (one 1 per row),
        ``"layer{i}.W_in"`` for i >= 2 (a permutation matrix: it is both the in-mask of layer i
        and the out-mask of layer i-1, so the widths must be equal), ``"out.W"`` (one 1 per
        column)."""
        spec = require_elman(spec, what="Skeleton.from_matrix_masks")
        d = spec.layers
        in_masks = {i: masks[f"layer{i}.W_in"] for i in range(1, d + 1)}
        out_masks = {i: masks[f"layer{i + 1}.W_in"] for i in range(1, d)}
        out_masks[d] = masks["out.W"]
        return cls(spec, in_masks, out_masks)

    def matrix_masks(self) -> dict:
        """One 0/1 mask per matrix (the union of in- and out-masks), as G-SGD uses them:
        ``"layer{i}.W_in"`` for i = 1..d and ``"out.W"``."""
        d = self.spec.layers
        out = {}
        for i in range(1, d + 1):
            m = self.in_masks[i].copy()
            if i >= 2:
                m |= self.out_masks[i - 1]
            out[f"layer{i}.W_in"] = m
        out["out.W"] = self.out_masks[d].copy()
        return out

    @property
    def is_chain(self) -> bool:
        """True if every inter-layer skeleton out-edge is also the skeleton in-edge of its target
        (disjoint chains input -> h1 -> ... -> hd -> output, the case G-SGD's update assumes)."""
        return all(np.array_equal(self.in_masks[i + 1], self.out_masks[i])
                   for i in range(1, self.spec.layers))

    def chains(self, graph: ReductionGraph) -> Chains:
        """The head/tail chains of this skeleton on ``graph``."""
        spec = self.spec
        d = spec.layers
        in_edge, out_edge = {}, {}
        for v in graph.hidden_nodes:
            i, j = v.layer, v.unit
            k = int(np.flatnonzero(self.in_masks[i][j])[0])
            in_edge[v] = param_index(spec, f"layer{i}.W_in", (j, k))
            k = int(np.flatnonzero(self.out_masks[i][:, j])[0])
            out_edge[v] = param_index(spec, "out.W" if i == d else f"layer{i + 1}.W_in", (k, j))
        return Chains(graph, in_edge, out_edge)


# ----------------------------------------------------------------------------- basis paths
class BasisPaths:
    """The basis paths selected by the Skeleton Method.

    Parameters
    ----------
    spec : ElmanSpec (or a model: its ``.spec``)
    skeleton : Skeleton, optional
        Default :meth:`Skeleton.cyclic`.

    Attributes
    ----------
    graph : ReductionGraph
    chains : Chains
    edges : list of int
        The edge e of each basis path Q_e (flat parameter index), ascending.
    paths : list of tuple
        Each basis path as its edges in path order (a reduction path).
    kinds : list of str
        ``"skeleton"`` (P_s), ``"non-skeleton"`` (P_ns, weights), ``"bias"`` (P_ns through a
        bias edge), ``"recurrent"`` (P_b2).
    tree : set of int
        The skeleton in-edges (one per hidden node; they have no basis path of their own).
    free : list of int
        The skeleton out-edges (one per hidden node), ascending: the weights whose values, with
        the basis values, determine all others (:meth:`exponents`).
    solved : list of int
        All other edges, ascending (r of them).
    """

    def __init__(self, spec, skeleton: Skeleton | None = None):
        self.spec = spec = require_elman(spec, what="BasisPaths")
        self.skeleton = skeleton or Skeleton.cyclic(spec)
        self.graph = ReductionGraph(spec)
        self.chains = self.skeleton.chains(self.graph)
        g, ch = self.graph, self.chains
        self.tree = set(ch.in_edge.values())
        self.free = sorted(set(ch.out_edge.values()))
        self.solved = [p for p in range(g.n_params) if p not in set(self.free)]
        self.edges, self.paths, self.kinds = [], [], []
        free = set(self.free)
        for e in g.edges:
            if e.param in self.tree:
                continue
            self.edges.append(e.param)
            self.paths.append(self._basis_path(e))
            self.kinds.append("recurrent" if e.recurrent else "skeleton" if e.param in free
                              else "bias" if e.kind == "bias" else "non-skeleton")
        self.row_of_edge = {p: r for r, p in enumerate(self.edges)}

    def _basis_path(self, e) -> tuple:
        """Q_e = head(src) + e + tail(dst)."""
        return self.chains.head(e.src) + (e.param,) + self.chains.tail(e.dst)

    def __len__(self):
        return len(self.edges)

    def __repr__(self):
        return (f"BasisPaths({len(self)} paths = {self.graph.n_params} weights - "
                f"{self.graph.n_hidden} hidden nodes, spec={self.spec})")

    @property
    def expected_count(self) -> int:
        """#weights - #hidden nodes (Theorem 3 (gsgd)), with biases counted as weights and the
        bias node not counted as a hidden node."""
        return self.graph.n_params - self.graph.n_hidden

    def matrix(self) -> np.ndarray:
        """(r, m) int64 counting vectors of the basis paths (0/1)."""
        B = np.zeros((len(self), self.graph.n_params), dtype=np.int64)
        for r, path in enumerate(self.paths):
            B[r, list(path)] = 1
        return B

    def describe(self, r: int) -> str:
        return f"{self.kinds[r]}: {self.graph.describe(self.paths[r])}"

    def values(self, w) -> list:
        """Basis-path values prod_{e in Q} w_e for a flat weight sequence (any number type:
        floats, Fractions)."""
        out = []
        for path in self.paths:
            v = 1
            for p in path:
                v = v * w[p]
            out.append(v)
        return out

    # ------------------------------------------------------------------ integer coordinates
    def generator(self, p: int) -> dict:
        """G(e) as integer basis coordinates (dict row -> int): the basis path Q_e, or N(w) if e
        is the skeleton in-edge of w."""
        if p in self.row_of_edge:
            return {self.row_of_edge[p]: 1}
        return self.node_combination(self.graph.edges[p].dst)

    def node_combination(self, v) -> dict:
        """N(v) = head(v) + tail(v) (a reduction path) in basis coordinates."""
        cache = self.__dict__.setdefault("_node_cache", {})
        if v not in cache:
            cache[v] = self.generator(self.chains.out_edge[v])
        return dict(cache[v])

    def coefficients(self, c) -> dict:
        """Integer coefficients x (dict row -> int) with ``sum_r x[r] Q_r = c`` for any c with
        flow conservation (any path's counting vector); verify with :meth:`check`."""
        c = np.asarray(c)
        x = collections.Counter()
        for p in np.flatnonzero(c).tolist():
            for r, k in self.generator(p).items():
                x[r] += int(c[p]) * k
        for v, n in self.graph.visits(c).items():
            if n:
                for r, k in self.node_combination(v).items():
                    x[r] -= n * k
        return {r: k for r, k in x.items() if k}

    def check(self, coeffs: dict, c) -> bool:
        """True if ``sum_r coeffs[r] * Q_r == c`` exactly."""
        total = [0] * self.graph.n_params
        for r, k in coeffs.items():
            for p in self.paths[r]:
                total[p] += int(k)
        return total == [int(v) for v in np.asarray(c).tolist()]

    # ------------------------------------------------------------------ Theorem 2 (gsgd)
    @functools.cached_property
    def exponents(self) -> dict:
        """For every solved edge e: ``(basis exponents, free exponents)``, two dicts (row -> int,
        free edge -> int) with

            w_e = prod_r v_r ** basis[r] * prod_o w_o ** free[o]

        as an identity of Laurent monomials in the weights (so it holds for signed weights).
        Built from e = Q_e - head(u) - tail(w) and head(v) = N(v) - tail(v); verified exactly by
        :meth:`check_exponents`.
        """
        g, ch = self.graph, self.chains

        def head_coords(v):  # head(v) = N(v) - tail(v)
            if v.kind != "hidden":
                return {}, {}
            basis = self.node_combination(v)
            free = collections.Counter()
            for o in ch.tail(v):
                free[o] -= 1
            return basis, dict(free)

        out = {}
        for p in self.solved:
            e = g.edges[p]
            basis, free = collections.Counter(), collections.Counter()
            if p in self.row_of_edge:          # e = Q_e - head(u) - tail(w)
                basis[self.row_of_edge[p]] += 1
                hb, hf = head_coords(e.src)
                for r, k in hb.items():
                    basis[r] -= k
                for o, k in hf.items():
                    free[o] -= k
                for o in ch.tail(e.dst):
                    free[o] -= 1
            else:                              # a skeleton in-edge: e = head(w) - head(u)
                for v, sign in ((e.dst, 1), (e.src, -1)):
                    hb, hf = head_coords(v)
                    for r, k in hb.items():
                        basis[r] += sign * k
                    for o, k in hf.items():
                        free[o] += sign * k
            out[p] = ({r: k for r, k in basis.items() if k},
                      {o: k for o, k in free.items() if k})
        return out

    def check_exponents(self) -> bool:
        """Exact check of :attr:`exponents`: for every solved edge e,
        sum_r basis[r] Q_r + sum_o free[o] 1_o equals the unit vector of e (integer vectors)."""
        m = self.graph.n_params
        for p, (basis, free) in self.exponents.items():
            total = [0] * m
            for r, k in basis.items():
                for q in self.paths[r]:
                    total[q] += k
            for o, k in free.items():
                total[o] += k
            unit = [0] * m
            unit[p] = 1
            if total != unit:
                return False
        return True

    def flip_node(self, free: dict, v) -> dict:
        """Skeleton out-weights ``free`` (edge -> weight) after the node-wise rescaling by
        alpha_v = -1 (every other alpha = +1): the skeleton out-weight of v changes sign, and so
        does that of every unit whose skeleton out-edge enters v (w_{u -> v} scales by
        alpha_v / alpha_u). Basis-path values are unchanged; for ReLU the function is not."""
        flipped = dict(free)
        for o in self.free:
            e = self.graph.edges[o]
            if (e.src == v) != (e.dst == v):
                flipped[o] = -flipped[o]
        return flipped

    def weights_from_values(self, values, free_weights: dict) -> list:
        """The unique flat weight vector with the given basis-path values and skeleton
        out-weights (Theorem 2 (gsgd) made constructive).

        Parameters
        ----------
        values : sequence of length r
            Basis-path values (nonzero), in :attr:`edges` order.
        free_weights : dict free edge -> nonzero value
            One value per skeleton out-edge (:attr:`free`). Magnitudes pick a point in the orbit
            of positive node-wise rescalings; signs matter.

        Returns
        -------
        list of length m, same number type as the inputs (exact for Fractions).
        """
        if sorted(free_weights) != self.free:
            raise ConfigError(f"free_weights must give exactly the skeleton out-edges "
                              f"{self.free}; got {sorted(free_weights)}")
        w = [None] * self.graph.n_params
        for o, val in free_weights.items():
            w[o] = val
        for p, (basis, free) in self.exponents.items():
            val = 1
            for r, k in basis.items():
                val = val * values[r] ** k
            for o, k in free.items():
                val = val * free_weights[o] ** k
            w[p] = val
        return w


# ----------------------------------------------------------------------------- exact forward
@dataclasses.dataclass(frozen=True)
class ExactForward:
    """An exact forward pass (:func:`forward_exact`).

    y : tuple (T, B, n_out)
        Outputs at every step (whatever ``spec.outputs``).
    pre : tuple (T, d, B, H_i)
        Hidden pre-activations z (``pre[t][i - 1][b][j]`` for layer i).
    """

    y: tuple
    pre: tuple

    @property
    def pattern(self) -> tuple:
        """The ReLU activation pattern: ``z > 0`` for every (t, layer, b, unit), flattened."""
        return tuple(z > 0 for step in self.pre for layer in step for row in layer for z in row)

    def node_pre(self, layer: int, unit: int) -> list:
        """All pre-activations of hidden unit ``unit`` of ``layer`` (1-based), over (t, b)."""
        return [row[unit] for step in self.pre for row in step[layer - 1]]


def forward_exact(spec, w, x) -> ExactForward:
    """An exact (Fraction) forward pass of the Elman RNN, for the Theorem 2 (gsgd) checks: an
    implementation independent of :class:`rnnlab.models.ElmanRNN`, written from the equations
    ``h_t^i = relu(W_in^i h_t^{i-1} + W_rec^i h_{t-1}^i + b^i)``, ``h_0 = 0``,
    ``y_t = W_out h_t^d + b_out``.

    Parameters
    ----------
    spec : ElmanSpec (or a model) with activation "relu" or "identity"
    w : flat sequence of m exact numbers (flatten order)
    x : nested sequence (T, B, n_in) of exact numbers

    Returns
    -------
    ExactForward
    """
    spec = require_elman(spec, activations=POSITIVELY_HOMOGENEOUS,
                         what="forward_exact (the Theorem 2 (gsgd) forward pass)")
    relu = spec.activation == "relu"
    start, mats = 0, {}
    for name, shape in spec.param_shapes().items():
        size = int(np.prod(shape))
        flat = list(w[start:start + size])
        mats[name] = ([flat[r * shape[1]:(r + 1) * shape[1]] for r in range(shape[0])]
                      if len(shape) == 2 else flat)
        start += size
    B = len(x[0])
    state = [[[0] * h for _ in range(B)] for h in spec.hidden]
    ys, pres = [], []
    for x_t in x:
        below, pre_t = [list(row) for row in x_t], []
        for i, width in enumerate(spec.hidden, start=1):
            w_in, w_rec = mats[f"layer{i}.W_in"], mats[f"layer{i}.W_rec"]
            bias = mats.get(f"layer{i}.b")
            z_i = [[sum(a * v for a, v in zip(w_in[j], below[b]))
                    + sum(a * v for a, v in zip(w_rec[j], state[i - 1][b]))
                    + (bias[j] if bias is not None else 0)
                    for j in range(width)] for b in range(B)]
            pre_t.append(tuple(tuple(row) for row in z_i))
            state[i - 1] = [[z if (z > 0 or not relu) else 0 for z in row] for row in z_i]
            below = state[i - 1]
        w_out, b_out = mats["out.W"], mats.get("out.b")
        ys.append(tuple(tuple(sum(a * v for a, v in zip(w_out[k], below[b]))
                              + (b_out[k] if b_out is not None else 0)
                              for k in range(spec.n_out)) for b in range(B)))
        pres.append(tuple(pre_t))
    return ExactForward(tuple(ys), tuple(pres))


def rank_facts(basis: BasisPaths) -> dict:
    """Exact ranks behind Theorem 3 (gsgd) (all by :mod:`rnnlab.paths.exact`):

    ``basis_rank`` (rank of the basis matrix), ``joint_rank`` (rank of the basis and all
    reduction paths together; it is also the rank of the reduction paths alone, since every
    basis path is a reduction path, see ``basis_are_reduction_paths``), ``conservation_rank``
    (rank of the node-rescaling directions), ``kernel_ok`` (basis @ rescaling directions == 0).
    """
    B = basis.matrix()
    space = exact.RowSpace()
    basis_rank = space.add_all(B.tolist())
    joint = space.add_all(basis.graph.counting_matrix().tolist())
    K = basis.graph.conservation_matrix()
    return {"basis_rank": basis_rank, "joint_rank": joint,
            "basis_are_reduction_paths": all(basis.graph.is_path(p) for p in basis.paths),
            "conservation_rank": exact.rank(K), "kernel_ok": bool((B @ K.T == 0).all())}
