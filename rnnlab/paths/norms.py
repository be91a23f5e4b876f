"""The path regularizer gamma^2 and its diagonal curvature kappa, each computed several ways.

Shapes: T steps, d hidden layers of widths H_i, m scalar parameters, P paths. gamma^2 is a
float. **Every kappa function returns one shape**: a dict keyed by parameter name, with the keys,
order and shapes of ``spec.param_shapes()`` (like gradients), of float64 host arrays;
:func:`kappa_enumeration` returns a :class:`KappaParts` whose fields are such dicts. For vector
arithmetic flatten them with :func:`rnnlab.params.host_vector` (``host_vector(k, spec)``).

Every function takes an Elman spec (or a model, for its ``.spec``) and refuses other model kinds
(:func:`rnnlab.paths.support.require_elman`); the squared-network formulas also refuse
activations that are not positively homogeneous (ReLU, or identity).

gamma^2 (``path-sgd-relu-rnn.md`` Section 4.1), three independent ways:

* :func:`gamma2_enumeration` -- Eq. (2): the sum over all input/bias -> output paths of the
  product of the squared edge weights (explicit enumeration, exponential in T);
* :func:`gamma2_recursion` -- Eq. (3): gamma_v^2 = sum_{u->v} gamma_u^2 w_{u->v}^2 over the
  unrolled DAG, gamma^2 = sum of gamma_v^2 over output nodes (linear in the graph size);
* :func:`gamma2_squared_network` -- Theorem 3 (path-sgd): the same model with every parameter
  squared, run by :meth:`ElmanRNN.forward` on the all-ones input with h_0 = 0, outputs summed
  over the steps that emit outputs. All values are >= 0, so the ReLUs are the identity and the
  pass is linear.

kappa_i = 1/2 d^2 gamma^2 / d p_i^2 (Eq. 8), for the SHARED parameters p_i:

* :func:`kappa_enumeration` -- from counting vectors. gamma^2 = sum_paths prod_i p_i^(2 c_i),
  so exactly kappa_i = sum_paths c_i (2 c_i - 1) p_i^(2 c_i - 2) prod_{j != i} p_j^(2 c_j).
* :func:`kappa1_fast` -- Theorem 3 (path-sgd): kappa^(1) = grad_{p~} g(1), one backward pass of
  the squared network through the library's :meth:`ElmanRNN.backward`.
* :func:`kappa2_fast` -- the W_rec term in matrix form, CORRECTED (see below).
* :func:`kappa2_paper_matrix_form` -- the W_rec term exactly as printed in Section 4.4, kept only
  for comparison: it does not equal the definition.
* :func:`kappa_finite_difference` -- central second differences of gamma^2 (with one Richardson
  step), an independent numerical check.
* :func:`kappa` -- the library's kappa = kappa^(1) + corrected kappa^(2); equals the definition.

Discrepancies with the paper (confirmed by ``rnnlab verify`` against enumeration)
----------------------------------------------------------------------------------
Write c = c_i(path) for the number of edges of a path that carry p_i and
R = prod_{j != i} p_j^(2 c_j), so one path contributes p_i^(2c) R to gamma^2 and
c (2c - 1) p_i^(2c-2) R = [c + 2 c (c - 1)] p_i^(2c-2) R to kappa_i.

1. Lemma 1, Eq. (9) is right: kappa^(1) contributes c p_i^(2c-2) R.
2. Lemma 1, Eq. (10) sums over ordered pairs e1 != e2 of E_i on the path, which contributes
   c (c - 1) p_i^(2c-2) R: HALF the true second term 2 c (c - 1) p_i^(2c-2) R. The lemma's
   kappa^(1) + kappa^(2) therefore does not equal kappa of Eq. (8); it must read
   kappa^(2) = 2 x Eq. (10). (Only W_rec entries have c >= 2, so only they are affected.)
3. Theorem 3 (path-sgd), Eq. (11) sums over ordered pairs of distinct edges with dh_{u'}/dh_v,
   which is nonzero only when (u->v) precedes (u'->v') on the path: c (c - 1) / 2 pairs per
   path, a QUARTER of the true term. kappa^(2) = 4 x Eq. (11).
4. The matrix form printed in Section 4.4,
   kappa2(W_rec) = W~ . sum_{t1=0}^{T-3} [ (W~^t1)^T . sum_{t2=2}^{T-t1-1} dg/dh_{t1+t2+1} h_{t2}^T ]
   (``.`` elementwise), besides lacking the factor 4 of item 3, pairs dg/dh_{t1+t2+1} with h_{t2}:
   a path that uses the edge k -> j at s -> s+1 and again at s+n+1 -> s+n+2 needs
   dg/dh_{s+n+2} paired with h_s (gap n + 2, not n + 1). Exactly:
   printed(W~, h_t) = (1/4) kappa2_true when h_{t2} is replaced by h_{t2-1}; taken literally it
   is not proportional to the true term (the ratio differs between entries of W_rec; only
   degenerate cases such as H = 1, T = 3, where each side is one number, are proportional);
   for T <= 2 both vanish. The correct form (:func:`kappa2_fast`) is
   kappa2(W_rec) = 4 W~ . sum_{n=0}^{T-3} [ (W~^n)^T . sum_{s=1}^{T-2-n} delta_{s+n+2} h~_s^T ]
   with h~_0 = 0 and delta_t = dg/dh~_t.
5. The sentence after that formula, "W_rec[j,k] = (W_rec[j,k])^2", redefines W_rec where the
   squared matrix W~ is meant.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import backend
from ..errors import ConfigError
from ..params import host_vector, unflatten
from .support import POSITIVELY_HOMOGENEOUS as _PH
from .support import require_elman
from .unrolled import UnrolledGraph

_SQUARED = "the squared-network formula, Theorem 3 (path-sgd)"


# ----------------------------------------------------------------------------- helpers
def squared_params(spec, params) -> dict:
    """p~ = p * p for every parameter (weights and biases), as float64 host arrays."""
    spec = require_elman(spec, what="squared_params")
    return unflatten(host_vector(params, spec) ** 2, spec, host=True)


def _model(spec, params):
    """An ElmanRNN on the active backend in float64 (the library's forward/backward)."""
    from ..models import ElmanRNN
    dev = {k: backend.to_device(v, dtype="float64") for k, v in params.items()}
    return ElmanRNN(spec, dev), dev


def _ones_input(spec, T):
    return backend.to_device(np.ones((T, 1, spec.n_in)), dtype="float64")


def _check_T(T):
    from .. import validate
    return validate.positive_int("T", T)


def _by_name(spec, vec) -> dict:
    """An (m,) vector as a dict keyed by parameter name (float64 host copies)."""
    return unflatten(vec, spec, host=True)


# ----------------------------------------------------------------------------- gamma^2
def gamma2_enumeration(spec, params, T: int, *, max_paths: int = 1_000_000) -> float:
    """gamma^2 by explicit enumeration, ``path-sgd-relu-rnn.md`` Eq. (2): the sum over every
    input/bias -> output path of the product of its squared edge weights."""
    spec = require_elman(spec, what="gamma2_enumeration")
    paths = UnrolledGraph(spec, T, max_paths=max_paths).bulk()
    return float(np.sum(paths.values(params) ** 2))


def gamma2_from_counts(counts: np.ndarray, flat: np.ndarray) -> float:
    """gamma^2 = sum_paths prod_i p_i^(2 c_i) from (P, m) counting vectors and the (m,) flat
    parameters (:func:`rnnlab.params.host_vector`)."""
    return float(np.sum(np.prod(flat[None, :] ** (2 * counts), axis=1)))


def gamma2_recursion(spec, params, T: int) -> float:
    """gamma^2 by the node recursion of ``path-sgd-relu-rnn.md`` Eq. (3) on the unrolled DAG:
    gamma_v^2 = 1 at input and bias nodes, gamma_v^2 = sum_{u->v} gamma_u^2 w_{u->v}^2, and
    gamma^2 = sum of gamma_v^2 over the output nodes."""
    spec = require_elman(spec, what="gamma2_recursion")
    graph = UnrolledGraph(spec, T)
    w2 = host_vector(params, spec)[graph.edge_param] ** 2
    g = np.zeros(graph.n_nodes)
    g[graph.input_nodes] = 1.0
    # Edges are grouped by destination in topological order: accumulate destination by
    # destination (all in-edges of a node precede its out-edges).
    for v in range(graph.n_nodes):
        lo, hi = graph.in_ptr[v], graph.in_ptr[v + 1]
        if hi > lo:
            es = graph.in_edges[lo:hi]
            g[v] = np.dot(g[graph.edge_src[es]], w2[es])
    return float(g[graph.output_nodes].sum())


def gamma2_squared_network(spec, params, T: int) -> float:
    """gamma^2 by Theorem 3 of ``path-sgd-relu-rnn.md``: g(1), the summed outputs of the network
    with squared parameters on the all-ones input (h_0 = 0), using :meth:`ElmanRNN.forward`.

    With p~ >= 0 and inputs >= 0 every pre-activation is >= 0, so relu and identity agree and
    g(1) = sum_paths prod_e w_e^2 = gamma^2.
    """
    spec = require_elman(spec, activations=_PH, what=f"gamma2_squared_network ({_SQUARED})")
    model, dev = _model(spec, squared_params(spec, params))
    y, _ = model.forward(dev, _ones_input(spec, _check_T(T)))
    return float(backend.to_host(y).sum())


# ----------------------------------------------------------------------------- the squared pass
def squared_network_pass(spec, params, T: int):
    """Forward and backward of g on the squared network, written out (independent of
    :class:`ElmanRNN`), for the matrix forms of kappa^(2).

    Returns
    -------
    h : list of d arrays (T + 1, H_i)
        h~^i_t, with h~^i_0 = 0.
    delta : list of d arrays (T + 2, H_i)
        delta^i_t = dg / dh~^i_t for t = 1..T (rows 0 and T + 1 are zero).
    """
    spec = require_elman(spec, activations=_PH, what=f"squared_network_pass ({_SQUARED})")
    _check_T(T)
    sq = squared_params(spec, params)
    d, widths = spec.layers, spec.hidden
    out_steps = set(range(1, T + 1)) if spec.outputs != "last" else {T}
    h, below = [], np.ones((T + 1, spec.n_in))
    for i in range(1, d + 1):
        hi = np.zeros((T + 1, widths[i - 1]))
        for t in range(1, T + 1):
            hi[t] = sq[f"layer{i}.W_in"] @ below[t] + sq[f"layer{i}.W_rec"] @ hi[t - 1]
            if spec.bias:
                hi[t] += sq[f"layer{i}.b"]
        h.append(hi)
        below = hi
    delta = [np.zeros((T + 2, w)) for w in widths]
    top_in = sq["out.W"].T @ np.ones(spec.n_out)
    for i in range(d, 0, -1):
        w_rec = sq[f"layer{i}.W_rec"]
        for t in range(T, 0, -1):
            g = w_rec.T @ delta[i - 1][t + 1]
            if i == d:
                if t in out_steps:
                    g += top_in
            else:
                g += sq[f"layer{i + 1}.W_in"].T @ delta[i][t]
            delta[i - 1][t] = g
    return h, delta


# ----------------------------------------------------------------------------- kappa
def kappa1_fast(spec, params, T: int) -> dict:
    """kappa^(1) = grad_{p~} g(1) (``path-sgd-relu-rnn.md`` Theorem 3 and Lemma 1 Eq. (9)):
    one forward and one backward pass of the squared network on the all-ones input through
    :meth:`ElmanRNN.forward` / :meth:`ElmanRNN.backward` (dg/dy = 1 at every emitted output).

    Returns a dict keyed by parameter name (float64 host arrays of each parameter's shape)."""
    spec = require_elman(spec, activations=_PH, what=f"kappa1_fast ({_SQUARED})")
    model, dev = _model(spec, squared_params(spec, params))
    y, cache = model.forward(dev, _ones_input(spec, _check_T(T)))
    xp = backend.get_xp()
    grads, _ = model.backward(dev, xp.ones_like(y), cache)
    return {k: np.asarray(backend.to_host(grads[k]), dtype=np.float64)
            for k in spec.param_shapes()}


def _rec_term(spec, params, T, form: str) -> dict:
    h, delta = squared_network_pass(spec, params, T)
    sq = squared_params(spec, params)
    out = {k: np.zeros_like(v) for k, v in sq.items()}
    for i in range(1, spec.layers + 1):
        w = sq[f"layer{i}.W_rec"]
        hi, di = h[i - 1], delta[i - 1]
        total = np.zeros_like(w)
        power = np.eye(w.shape[0])
        for n in range(0, T - 2):                                  # n = t1 = 0..T-3
            if form == "corrected":   # first use s -> s+1, second s+n+1 -> s+n+2
                inner = sum((np.outer(di[s + n + 2], hi[s]) for s in range(1, T - 1 - n)),
                            np.zeros_like(w))
            else:                     # as printed: t2 = 2..T-t1-1, dg/dh_{t1+t2+1} h_{t2}^T
                lag = 1 if form == "paper_shifted" else 0   # h_{t2-1} in place of h_{t2}
                inner = sum((np.outer(di[n + t2 + 1], hi[t2 - lag]) for t2 in range(2, T - n)),
                            np.zeros_like(w))
            total += power.T * inner
            power = power @ w
        out[f"layer{i}.W_rec"] = (4.0 if form == "corrected" else 1.0) * w * total
    return out


def kappa2_fast(spec, params, T: int) -> dict:
    """kappa^(2), corrected matrix form (zero except for W_rec):

    kappa2(W_rec^i) = 4 W~ . sum_{n=0}^{T-3} [ (W~^n)^T . sum_{s=1}^{T-2-n} delta_{s+n+2} h~_s^T ]

    with W~ = W_rec^i squared elementwise, h~, delta from :func:`squared_network_pass`. A path
    that uses the edge k -> j at s -> s+1 and again at s+n+1 -> s+n+2 is counted once per
    position-ordered pair; each path with c uses has c (c-1) / 2 such pairs while
    1/2 d^2/dp^2 needs 2 c (c-1): hence the 4 (see the module docstring, items 2-4).
    Cost O(d T^2 H^2 + d T H^3). Returns a dict keyed by parameter name.
    """
    spec = require_elman(spec, activations=_PH, what=f"kappa2_fast ({_SQUARED})")
    return _rec_term(spec, params, T, "corrected")


def kappa2_paper_matrix_form(spec, params, T: int, *, shift_h: bool = False) -> dict:
    """kappa^(2) exactly as printed in ``path-sgd-relu-rnn.md`` Section 4.4 (for comparison only):

    W~ . sum_{t1=0}^{T-3} [ (W~^t1)^T . sum_{t2=2}^{T-t1-1} dg/dh_{t1+t2+1} (h_{t2})^T ]

    It is NOT 1/2 d^2 gamma^2 / dp^2 - kappa^(1): it lacks a factor 4 and pairs each h_{t2} with
    the gradient one step too early (module docstring, item 4). With h_{t2} read as h_{t2-1} it
    is exactly kappa2_fast / 4; ``shift_h=True`` computes that reading. Returns a dict keyed by
    parameter name.
    """
    spec = require_elman(spec, activations=_PH,
                         what=f"kappa2_paper_matrix_form ({_SQUARED})")
    return _rec_term(spec, params, T, "paper_shifted" if shift_h else "paper")


def kappa(spec, params, T: int, *, second_term: bool = True) -> dict:
    """kappa_i = 1/2 d^2 gamma^2 / d p_i^2 (``path-sgd-relu-rnn.md`` Eq. (8)) for every shared
    parameter, by the fast formulas: kappa^(1) (Theorem 3 (path-sgd), one squared-network
    backward pass) plus, with ``second_term``, the corrected kappa^(2) (:func:`kappa2_fast`).
    ``second_term=False`` gives the kappa^(1)-only variant the paper trains with (Section 5.1).

    Returns a dict keyed by parameter name: the keys of ``spec.param_shapes()``, float64 host
    arrays of each parameter's shape.
    """
    spec = require_elman(spec, activations=_PH, what=f"kappa ({_SQUARED})")
    k1 = kappa1_fast(spec, params, T)
    if not second_term:
        return k1
    k2 = kappa2_fast(spec, params, T)
    return {k: k1[k] + k2[k] for k in k1}


@dataclasses.dataclass(frozen=True)
class KappaParts:
    """kappa and its parts from the counting vectors of all paths (:func:`kappa_enumeration`).

    Each field is a dict keyed by parameter name (the keys and shapes of
    ``spec.param_shapes()``) of float64 host arrays. With c = c_i(path) and
    R = prod_{j != i} p_j^(2 c_j):

    kappa : sum_paths c (2c - 1) p_i^(2c-2) R        (= 1/2 d^2 gamma^2 / dp_i^2, Eq. 8)
    kappa1 : sum_paths c p_i^(2c-2) R                 (Lemma 1, Eq. 9)
    kappa2 : sum_paths 2 c (c-1) p_i^(2c-2) R         (the true second term)
    kappa2_eq10 : sum_paths c (c-1) p_i^(2c-2) R      (Lemma 1 Eq. 10 as printed: ordered pairs)
    kappa2_eq11 : sum_paths c (c-1)/2 p_i^(2c-2) R    (Theorem 3 (path-sgd) Eq. 11 as printed)
    """

    kappa: dict
    kappa1: dict
    kappa2: dict
    kappa2_eq10: dict
    kappa2_eq11: dict


def kappa_enumeration(spec, params, T: int, *, max_paths: int = 1_000_000,
                      chunk: int = 1 << 21) -> KappaParts:
    """kappa and its parts from the counting vectors of all paths (exact definitions, no
    division: R is a leave-one-out product), as a :class:`KappaParts` of dicts keyed by
    parameter name."""
    spec = require_elman(spec, what="kappa_enumeration")
    flat = host_vector(params, spec)
    paths = UnrolledGraph(spec, T, max_paths=max_paths).bulk()
    m = flat.shape[0]
    acc = {f.name: np.zeros(m) for f in dataclasses.fields(KappaParts)}
    rows = max(1, chunk // max(m, 1))
    for lo in range(0, len(paths), rows):
        c = paths.counts[lo:lo + rows]
        powers = flat[None, :] ** (2 * c)                      # p_j^(2 c_j), 1 where c = 0
        left = np.cumprod(np.concatenate([np.ones((c.shape[0], 1)), powers[:, :-1]], axis=1),
                          axis=1)
        right = np.cumprod(np.concatenate([np.ones((c.shape[0], 1)), powers[:, :0:-1]],
                                          axis=1), axis=1)[:, ::-1]
        base = left * right * flat[None, :] ** np.maximum(2 * c - 2, 0)   # p_i^(2c-2) R
        cf = c.astype(np.float64)
        acc["kappa1"] += (cf * base).sum(axis=0)
        acc["kappa"] += (cf * (2 * cf - 1) * base).sum(axis=0)
        pairs = cf * (cf - 1) * base
        acc["kappa2"] += 2 * pairs.sum(axis=0)
        acc["kappa2_eq10"] += pairs.sum(axis=0)
        acc["kappa2_eq11"] += 0.5 * pairs.sum(axis=0)
    return KappaParts(**{k: _by_name(spec, v) for k, v in acc.items()})


def kappa2_lemma1_literal(spec, params, T: int, *, max_paths: int = 200_000) -> dict:
    """Lemma 1 Eq. (10) of ``path-sgd-relu-rnn.md`` evaluated literally by lazy path
    enumeration: p_i^2 sum over ordered pairs e1 != e2 of edges of E_i on each path of the
    product of the squared weights of the path's other edges. Equals HALF the true kappa^(2)
    (module docstring, item 2). Slow; for checks on small graphs. Returns a dict keyed by
    parameter name."""
    spec = require_elman(spec, what="kappa2_lemma1_literal")
    graph = UnrolledGraph(spec, T, max_paths=max_paths)
    flat = host_vector(params, spec)
    w2 = flat[graph.edge_param] ** 2
    out = np.zeros(flat.shape[0])
    for path in graph.iter_paths():
        by_param = {}
        for pos, e in enumerate(path):
            by_param.setdefault(int(graph.edge_param[e]), []).append(pos)
        for i, positions in by_param.items():
            if len(positions) < 2:
                continue
            for a in positions:
                for b in positions:
                    if a != b:
                        rest = [w2[e] for pos, e in enumerate(path) if pos not in (a, b)]
                        out[i] += flat[i] ** 2 * float(np.prod(rest))
    return _by_name(spec, out)


def kappa2_theorem3_literal(spec, params, T: int) -> dict:
    """Theorem 3 (path-sgd) Eq. (11) evaluated literally on the unrolled DAG:
    sum over ordered pairs of distinct edges (u->v), (u'->v') of E_i of
    p~_i dg(1)/dh_{v'} dh_{u'}/dh_v h_u, with the squared network (linear on the all-ones
    input) and dh_a/dh_b the sum of squared-path products from b to a ((I - A)^{-1}, identity on
    the diagonal). Equals a QUARTER of the true kappa^(2) (module docstring, item 3). Returns a
    dict keyed by parameter name."""
    spec = require_elman(spec, activations=_PH, what=f"kappa2_theorem3_literal ({_SQUARED})")
    graph = UnrolledGraph(spec, T)
    flat = host_vector(params, spec)
    w2 = flat[graph.edge_param] ** 2
    n = graph.n_nodes
    A = np.zeros((n, n))
    A[graph.edge_dst, graph.edge_src] = w2
    D = np.linalg.inv(np.eye(n) - A)          # D[a, b] = dh_a / dh_b (A is nilpotent)
    h = D[:, graph.input_nodes].sum(axis=1)   # all inputs and the bias node are 1
    dg = D[graph.output_nodes, :].sum(axis=0)  # dg / dh_v
    out = np.zeros(flat.shape[0])
    for i in np.unique(graph.edge_param):
        es = graph.edges_of_param(i)
        if es.shape[0] < 2:
            continue
        u, v = graph.edge_src[es], graph.edge_dst[es]
        # M[a, b] = dg/dh_{v_b} * dh_{u_b}/dh_{v_a} * h_{u_a} for the pair (e_a, e_b)
        M = h[u][:, None] * D[u[None, :], v[:, None]] * dg[v][None, :]
        np.fill_diagonal(M, 0.0)
        out[i] = flat[i] ** 2 * M.sum()
    return _by_name(spec, out)


def kappa_finite_difference(spec, params, T: int, *, step: float = 1e-3,
                            richardson: bool = True) -> dict:
    """kappa_i = 1/2 d^2 gamma^2 / d p_i^2 by central second differences of gamma^2
    (:func:`gamma2_squared_network`), with one Richardson step (error O(step^4)). Returns a dict
    keyed by parameter name.

    gamma^2 is a polynomial of degree 2 max c_i in p_i (2 for every parameter but W_rec), so the
    differences are exact up to round-off except for W_rec entries.
    """
    spec = require_elman(spec, activations=_PH,
                         what="kappa_finite_difference (differences of gamma^2 by the "
                              "squared-network formula, Theorem 3 (path-sgd))")
    flat = host_vector(params, spec)
    g0 = gamma2_squared_network(spec, _by_name(spec, flat), T)

    def second(i, h):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        gp = gamma2_squared_network(spec, _by_name(spec, up), T)
        gm = gamma2_squared_network(spec, _by_name(spec, down), T)
        return (gp - 2 * g0 + gm) / (2 * h * h)                  # 1/2 f''

    out = np.zeros(flat.shape[0])
    for i in range(flat.shape[0]):
        d1 = second(i, step)
        out[i] = (4 * d1 - second(i, 2 * step)) / 3 if richardson else d1
    return _by_name(spec, out)


def kappa_ratio(spec, params, T: int) -> float:
    """||kappa^(2)||_2 / ||kappa^(1)||_2 (the quantity tabulated in Fig. 2 of the paper, with the
    corrected kappa^(2))."""
    spec = require_elman(spec, activations=_PH, what=f"kappa_ratio ({_SQUARED})")
    k1 = host_vector(kappa1_fast(spec, params, T), spec)
    k2 = host_vector(kappa2_fast(spec, params, T), spec)
    denom = float(np.linalg.norm(k1))
    if denom == 0.0:
        raise ConfigError("kappa^(1) is zero (all paths have zero value); the ratio is undefined")
    return float(np.linalg.norm(k2)) / denom


__all__ = ["KappaParts", "gamma2_enumeration", "gamma2_from_counts", "gamma2_recursion",
           "gamma2_squared_network", "kappa", "kappa1_fast", "kappa2_fast",
           "kappa2_lemma1_literal", "kappa2_paper_matrix_form", "kappa2_theorem3_literal",
           "kappa_enumeration", "kappa_finite_difference", "kappa_ratio",
           "squared_network_pass", "squared_params"]
