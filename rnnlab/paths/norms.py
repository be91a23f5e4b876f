"""The path regularizer gamma^2 and its diagonal curvature kappa, each computed several ways.

Shapes: T steps, d hidden layers of widths H_i, m scalar parameters, P paths. gamma^2 is a
float. **Every kappa function returns one shape**: a dict keyed by parameter name, with the keys,
order and shapes of ``spec.param_shapes()`` (like gradients), of float64 host arrays
(:func:`kappa_device`: of float64 arrays of the active backend);
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
* :func:`kappa1_fast` -- Theorem 3 (path-sgd): kappa^(1) = grad_{p~} g(1), one forward and one
  backward pass of the squared network (:func:`kappa_device`'s pass, returned on the host).
* :func:`kappa2_fast` -- the W_rec term in matrix form, CORRECTED (see below), evaluated by a
  recursion over the gap between the two uses of an edge: O(T) matrix products.
* :func:`kappa_device` -- the core both use: kappa^(1) (and kappa^(2)) as float64 arrays of the
  active backend, with no host transfer, for the steps at which outputs are scored (what
  Path-SGD calls every step, :mod:`rnnlab.optim.path_sgd`).
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
   with h~_0 = 0 and delta_t = dg/dh~_t. Regrouped by t = s + n + 2 (the step the second use
   enters) it is 4 W~ . sum_{t=3}^{T} diag(delta_t) F_{t-2}, with
   F_m = sum_{s=1}^{m} (W~^{m-s})^T diag(h~_s), i.e. F_1 = diag(h~_1) and
   F_m = W~^T F_{m-1} + diag(h~_m): the same nonnegative terms, summed in another order, with
   T - 3 matrix products instead of T^2/2 outer products and T matrix powers.
5. The sentence after that formula, "W_rec[j,k] = (W_rec[j,k])^2", redefines W_rec where the
   squared matrix W~ is meant.
"""
from __future__ import annotations

import dataclasses
import functools

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


# ----------------------------------------------------------------------------- the device core
# kappa^(1) and kappa^(2) from one forward and one backward pass of the squared network, on the
# active backend in float64, never leaving the device (Path-SGD calls this every step). With
# p~ >= 0 and all-ones inputs every value is >= 0, so the ReLUs are the identity and the pass is
# linear: forward h~^i_t = W~^i_in h~^{i-1}_t + W~^i_rec h~^i_{t-1} + b~^i (h~^0_t = 1,
# h~^i_0 = 0), backward delta^i_t = dg/dh~^i_t with g = sum_t w_t 1^T y~_t for per-step output
# weights w (1 at the steps that are scored, 0 elsewhere). Rows are time steps. Each layer's
# forward and backward is one linear recursion x_t = x_{t-1} M + u_t over the T rows, the input
# terms u_t of all steps coming from one product; :func:`_linear_scan` solves it by cyclic
# reduction (log depth, matrix-matrix products, the powers W~^(2^l) shared by the layer's two
# passes), stopping at the depth where the rest is cheaper as the former step-by-step loop of
# vector-matrix products (:func:`_scan_levels`: on CuPy the full depth; on NumPy 2-3 levels at
# H <= 100, none at H = 256, T = 50, where one H^3 product costs as much as ~50 steps).

def _device_squares(spec, params) -> dict:
    """p~ = p * p as new float64 arrays of the active backend, keyed like spec.param_shapes().

    ``params``: a dict of arrays of the active backend (read, not modified; any float dtype), or
    anything :func:`rnnlab.params.host_vector` takes (host dicts, flat vectors), moved once."""
    xp = backend.get_xp()
    shapes = spec.param_shapes()
    on_device = (isinstance(params, dict) and list(params) == list(shapes)
                 and all(type(params[k]) is xp.ndarray and tuple(params[k].shape) == shapes[k]
                         for k in shapes))
    if not on_device:
        params = {k: backend.to_device(v)
                  for k, v in unflatten(host_vector(params, spec), spec, host=True).items()}
    out = {}
    for k in shapes:
        a = params[k].astype(xp.float64)      # a copy, squared in place
        out[k] = xp.multiply(a, a, out=a)
    return out


def _step_weights_mode(spec, T, step_weights):
    """``"last"`` (only step T scores), ``"every"`` (every step) or a (T,) float64 device array
    of per-step weights."""
    if step_weights is None:
        return "last" if spec.outputs == "last" else "every"
    if isinstance(step_weights, str):
        if step_weights not in ("last", "every"):
            raise ConfigError(f"step_weights must be 'last', 'every' or a (T,) array; got "
                              f"{step_weights!r}")
        return step_weights
    xp = backend.get_xp()
    w = xp.asarray(step_weights, dtype=xp.float64)
    if tuple(w.shape) != (T,):
        raise ConfigError(f"step_weights must have shape ({T},) (one weight per step); got "
                          f"{tuple(w.shape)}")
    return w


def _affine_krylov_rows(m, c, n, *, reverse=False):
    """Rows z_0 = 0, z_{k+1} = z_k @ m + c for k < n, as an (n + 1, H) view (z_k in row k; in
    row n - k with ``reverse``). One vector-matrix product per row: [z, 1] @ [[m, 0], [c, 1]]."""
    xp = backend.get_xp()
    H = m.shape[0]
    aug = xp.zeros((H + 1, H + 1))
    aug[:H, :H] = m
    aug[H, :H] = c
    aug[H, H] = 1.0
    z = xp.empty((n + 1, H + 1))
    start = n if reverse else 0
    z[start] = 0.0
    z[start, H] = 1.0
    rows = list(z) if not reverse else list(z)[::-1]
    dot = xp.dot   # on a vector, NumPy's dot has less overhead than matmul (1.9 vs 2.3-2.9 us)
    for prev, nxt in zip(rows[:-1], rows[1:]):
        dot(prev, aug, out=nxt)
    return z[:, :H]


def _accumulate_rows(rows, m, *, reverse=False):
    """rows[k + 1] += rows[k] @ m in order (rows[k - 1] += rows[k] @ m from the end with
    ``reverse``), in place: a linear recursion driven by what the rows already hold."""
    xp = backend.get_xp()
    dot, add = xp.dot, xp.add
    views = list(rows)[::-1] if reverse else list(rows)
    buf = xp.empty(rows.shape[1])
    for prev, nxt in zip(views[:-1], views[1:]):
        dot(prev, m, out=buf)
        add(nxt, buf, out=nxt)


class _Powers:
    """W, W^2, W^4, ... of one (H, H) matrix, squared only when first asked for, shared by the
    recursions with M = W and with M = W^T (these get transposed views): ``get(l)`` is
    W^(2^l). A layer's forward (M = W~_rec^T) and backward (M = W~_rec) share one."""

    def __init__(self, w):
        self._p = [w]

    def get(self, level: int, transpose: bool = False):
        p = self._p
        while len(p) <= level:
            p.append(p[-1] @ p[-1])
        return p[level].T if transpose else p[level]


#: Rough costs in microseconds, by backend: ``step`` (the call overhead of one step of the
#: step-by-step loop), ``level`` (the call overhead of one level of a scan, its four products and
#: adds), ``square`` (the call overhead of a product of two matrices), and per multiply-add in a
#: matrix-matrix (``mac_gemm``) and a vector-matrix (``mac_gemv``) product. Measured on the
#: 2-core Xeon of benchmarks/KAPPA.md with OpenBLAS (H = 100: an H^3 product 25-45 us, a step
#: 2.2 us; H = 256: 0.5-0.6 ms and 10 us). The CuPy row is an assumption, not a measurement
#: (each call about one kernel launch, products nearly free at these sizes): it picks the full
#: depth. They only choose the depth of :func:`_linear_scan`, never its result.
_SCAN_COSTS = {"numpy": {"step": 1.0, "level": 10.0, "square": 2.0, "mac_gemm": 4.0e-5,
                         "mac_gemv": 1.3e-4},
               "cupy": {"step": 10.0, "level": 40.0, "square": 10.0, "mac_gemm": 2.0e-8,
                        "mac_gemv": 2.0e-7}}


def _scan_levels(n: int, H: int, chains: int = 2) -> int:
    """The depth L of :func:`_linear_scan` that costs least by :data:`_SCAN_COSTS` for ``chains``
    recursions of n steps sharing one (H, H) matrix's powers (a layer's forward and backward):
    the squarings W^2, ..., plus, per recursion, the sweeps of L levels (about n H^2
    multiply-adds in matrix-matrix products) and n / 2^L - 1 vector-matrix steps at the bottom.
    0 is the step-by-step loop. (Memoised per backend and shape.)"""
    return _scan_levels_for(int(n), int(H), int(chains), backend.backend_name())


@functools.lru_cache(maxsize=512)
def _scan_levels_for(n, H, chains, name):
    c = _SCAN_COSTS.get(name, _SCAN_COSTS["numpy"])

    def cost(L):
        bottom = (n >> L) - 1                        # steps left at level L
        squarings = (L - 1 + (bottom > 0)) if L else 0
        sweeps = sum(c["level"] + c["mac_gemm"] * H * H * ((n >> l) - 1) for l in range(L))
        steps = bottom * (c["step"] + c["mac_gemv"] * H * H)
        return squarings * (c["square"] + c["mac_gemm"] * H ** 3) + chains * (sweeps + steps)

    return min(range(max(n, 1).bit_length()), key=cost)   # n >> L >= 1; ties: the shallower


def _linear_scan(x, powers: _Powers, *, transpose: bool = False, reverse: bool = False,
                 kind: str = "rows", u=None, levels=None):
    """Every state of the linear recursion x_t = x_{t-1} M + u_t (t = 0..n-1, x_{-1} = 0; with
    ``reverse`` x_t = x_{t+1} M + u_t, x_n = 0), in place in ``x``, by cyclic reduction.

    Shapes: ``x`` (n, H), row t = x_t (a view is fine); M (H, H) is ``powers.get(0)`` (W), or
    its transpose with ``transpose``. The inputs: ``kind="rows"``: u_t is row t of ``x`` on
    entry; ``"constant"``: u_t = ``u`` ((H,)) at every step; ``"first"``: u = ``u`` at the first
    step of the recursion (t = 0, or t = n - 1 with ``reverse``) and 0 elsewhere (x's entries
    are then ignored). Returns ``x``.

    Math (forward; reverse is the same on the reversed order): pairing step 2i + 1 with 2i,
    x_{2i+1} = x_{2i-1} M^2 + (u_{2i} M + u_{2i+1}): a recursion of the same form over the odd
    steps with M^2 and inputs u'_i = u_{2i} M + u_{2i+1} (one product for all i). Solved
    recursively (level l: n >> l steps, M^(2^l)), then x_{2i} = x_{2i-1} M + u_{2i} fills the
    even steps of each level (one product). ``levels`` (default :func:`_scan_levels`) stops the
    halving after L levels and solves the n >> L steps left one vector-matrix product each
    (L = 0: the plain loop). Every x_t is sum_{j <= t} u_{t-j} M^j, the same nonnegative terms
    for every L, summed in another order; the powers used are M^(2^l) with 2^l <= n / 2 (each
    one enters the states), so the scan overflows only where the states do. Cost: L products
    of H x H matrices (shared through ``powers``) and, per level, two products of about
    n / 2^(l+1) rows by H x H: O(n H^2 + L H^3) work in depth O(L + n / 2^L).
    """
    xp = backend.get_xp()
    n = x.shape[0]
    if levels is None:
        levels = _scan_levels(n, x.shape[1], 1)
    L = max(0, min(int(levels), n.bit_length() - 1))   # n >> L >= 1
    vec = None if kind == "rows" else u
    vecs = []                                          # the level inputs of "constant"/"first"

    def view(l):
        """Level l's n >> l steps as an ascending view of x (positive strides either way)."""
        s, n_l = 1 << l, n >> l
        return x[n - n_l * s::s] if reverse else x[s - 1::s]

    def pairs(n_l, down):
        """(targets, sources) slices of a level's view: targets the odd steps (up-sweep) or
        the even steps after the first (down-sweep), each with the step before it."""
        if not down:
            m = n_l // 2
            return ((slice(n_l - 2 * m, n_l - 1, 2), slice(n_l - 2 * m + 1, n_l, 2)) if reverse
                    else (slice(1, 2 * m, 2), slice(0, 2 * m, 2)))
        c = (n_l - 1) // 2
        return ((slice(n_l - 1 - 2 * c, n_l - 2, 2), slice(n_l - 2 * c, n_l - 1, 2)) if reverse
                else (slice(2, 2 * c + 1, 2), slice(1, 2 * c, 2)))

    matmul, add = xp.matmul, xp.add
    for l in range(L):                                 # up-sweep: the odd steps' inputs
        p, v = powers.get(l, transpose), view(l)
        if vec is None:
            tgt, src = pairs(v.shape[0], False)
            add(v[tgt], matmul(v[src], p), out=v[tgt])
        else:
            vecs.append(vec)
            vec = vec @ p + vec if kind == "constant" else vec @ p
    v, first = view(L), (-1 if reverse else 0)
    if v.shape[0] > 1:                                 # the bottom, step by step
        p = powers.get(L, transpose)
        if kind == "rows":
            _accumulate_rows(v, p, reverse=reverse)
        elif kind == "constant":
            z = _affine_krylov_rows(p, vec, v.shape[0], reverse=reverse)
            v[...] = z[:-1] if reverse else z[1:]
        else:
            rows, dot = (list(v)[::-1] if reverse else list(v)), xp.dot
            rows[0][...] = vec
            for prev, nxt in zip(rows[:-1], rows[1:]):
                dot(prev, p, out=nxt)
    elif vec is not None:
        v[first] = vec
    for l in range(L - 1, -1, -1):                     # down-sweep: the even steps
        p, v = powers.get(l, transpose), view(l)
        tgt, src = pairs(v.shape[0], True)
        if vec is None:
            if v[tgt].shape[0]:
                add(v[tgt], matmul(v[src], p), out=v[tgt])
            continue
        a = vecs[l]
        if v[tgt].shape[0]:
            prod = matmul(v[src], p)
            if kind == "constant":
                add(prod, a, out=v[tgt])
            else:
                v[tgt] = prod
        v[first] = a
    return x


def _squared_pass_device(spec, sq, T, mode):
    """Forward and backward of g on the squared network (device arrays, float64), h~_0 = 0.

    Returns ``h``: d arrays (T + 1, H_i), rows h~^i_0 = 0, ..., h~^i_T; ``delta``: d arrays
    (T, H_i), row t - 1 = delta^i_t; ``w_top``: (H_d,) sum_t w_t h~^d_t; ``n_scored``: sum_t w_t
    (a float, or a device scalar for array weights). Each recursion is a :func:`_linear_scan`,
    the forward with M = W~_rec^T, the backward with M = W~_rec, both of one layer at the depth
    :func:`_scan_levels` picks for the two, sharing the powers of W~_rec."""
    xp = backend.get_xp()
    powers = [_Powers(sq[f"layer{i}.W_rec"]) for i in range(1, spec.layers + 1)]
    depth = [_scan_levels(T, width) for width in spec.hidden]
    h, below = [], None
    for i, width in enumerate(spec.hidden, start=1):
        b = sq.get(f"layer{i}.b")
        hi = xp.empty((T + 1, width))
        hi[0] = 0.0
        if i == 1:   # constant input: u = W~_in 1 + b~
            c = sq["layer1.W_in"].sum(axis=1)
            if b is not None:
                c += b
            _linear_scan(hi[1:], powers[0], transpose=True, kind="constant", u=c,
                         levels=depth[0])
        else:
            xp.matmul(below[1:], sq[f"layer{i}.W_in"].T, out=hi[1:])
            if b is not None:
                hi[1:] += b
            _linear_scan(hi[1:], powers[i - 1], transpose=True, levels=depth[i - 1])
        h.append(hi)
        below = hi
    u = sq["out.W"].sum(axis=0)          # W~_out^T 1
    top = spec.layers
    d = xp.empty((T, u.shape[0]))
    if isinstance(mode, str) and mode == "last":
        _linear_scan(d, powers[-1], reverse=True, kind="first", u=u, levels=depth[-1])
        w_top, n_scored = h[-1][T].copy(), 1.0
    elif isinstance(mode, str):         # every
        _linear_scan(d, powers[-1], reverse=True, kind="constant", u=u, levels=depth[-1])
        w_top, n_scored = h[-1][1:].sum(axis=0), float(T)
    else:
        xp.multiply(mode[:, None], u[None, :], out=d)
        _linear_scan(d, powers[-1], reverse=True, levels=depth[-1])
        w_top, n_scored = mode @ h[-1][1:], mode.sum()
    delta = [None] * top
    delta[top - 1] = d
    for i in range(top - 1, 0, -1):
        d = delta[i] @ sq[f"layer{i + 1}.W_in"]
        _linear_scan(d, powers[i - 1], reverse=True, levels=depth[i - 1])
        delta[i - 1] = d
    return h, delta, w_top, n_scored


def _kappa1_from_pass(spec, sq, h, delta, w_top, n_scored) -> dict:
    """kappa^(1) = grad_{p~} g from the pass (Theorem 3 (path-sgd)), device arrays by name."""
    xp = backend.get_xp()
    k = {}
    for i in range(1, spec.layers + 1):
        d, hi = delta[i - 1], h[i - 1]
        d_sum = d.sum(axis=0)
        if i == 1:   # the input is all ones: every column of W_in^1 gets sum_t delta_t
            k["layer1.W_in"] = d_sum[:, None] * xp.ones((1, spec.n_in))
        else:
            k[f"layer{i}.W_in"] = d.T @ h[i - 2][1:]
        k[f"layer{i}.W_rec"] = d.T @ hi[:-1]
        if spec.bias:
            k[f"layer{i}.b"] = d_sum
    k["out.W"] = xp.ones((spec.n_out, 1)) * w_top[None, :]
    if spec.bias:
        k["out.b"] = xp.ones(spec.n_out) * n_scored
    return {name: k[name] for name in spec.param_shapes()}


def _kappa2_rec_device(w, h, d, *, lag: int = 2, first: int = 1, factor: float = 4.0):
    """kappa^(2)(W_rec) of one layer in matrix form, device float64 (module docstring, item 4):

    factor W~ . sum_t diag(delta_t) F_{t-lag},   F_m = sum_{s=first}^{m} (W~^{m-s})^T diag(h~_s),

    accumulated as F_first = diag(h~_first), F_m = W~^T F_{m-1} + diag(h~_m): T - lag - first
    products of H x H matrices. (F_m[j, k] = sum_s W~^{m-s}[k, j] h~_s[k]: from unit k at step s
    through the edge k -> j, back to k after m - s more steps.) lag 2, first 1, factor 4 is the
    corrected kappa^(2); the Section 4.4 form as printed is lag 1, first 2, factor 1, and its
    h_{t2-1} reading lag 2, first 1, factor 1. ``w`` : (H, H) W~; ``h`` : (T + 1, H);
    ``d`` : (T, H) with row t - 1 = delta_t."""
    xp = backend.get_xp()
    T, H = d.shape
    out = xp.zeros((H, H))
    if T < first + lag:
        return out
    w_t = xp.ascontiguousarray(w.T)
    f, f_next, tmp = xp.zeros((H, H)), xp.empty((H, H)), xp.empty((H, H))
    f.reshape(-1)[::H + 1] = h[first]
    matmul, multiply, add = xp.matmul, xp.multiply, xp.add
    for m in range(first, T - lag + 1):          # F_m meets delta_{m+lag} (row m + lag - 1)
        if m > first:
            matmul(w_t, f, out=f_next)
            f, f_next = f_next, f
            f.reshape(-1)[::H + 1] += h[m]
        multiply(d[m + lag - 1][:, None], f, out=tmp)
        add(out, tmp, out=out)
    out *= w
    if factor != 1.0:
        out *= factor
    return out


def kappa_device(spec, params, T: int, *, second_term: bool = True, step_weights=None) -> dict:
    """kappa (``path-sgd-relu-rnn.md`` Eq. (8), by the fast formulas) as float64 arrays of the
    active backend: the core of :func:`kappa1_fast`, :func:`kappa2_fast` and Path-SGD. Nothing is
    moved to the host (on CuPy the whole computation is queued on the device).

    Parameters
    ----------
    spec : ElmanSpec or a model, activation relu or identity
    params : dict of arrays of the active backend (any float dtype; not modified), or a host
        dict / flat vector (moved to the device once)
    T : int >= 1
        The unroll length (under truncated BPTT, the chunk's).
    second_term : bool
        Add the corrected kappa^(2) of W_rec (cost O(T H^3) per layer, against O(T H^2) for
        kappa^(1)); ``False`` gives the kappa^(1)-only variant the paper trains with (Sec. 5.1).
    step_weights : None, "last", "every", or (T,) array
        The steps whose outputs are summed into g (the steps the loss scores): None follows
        ``spec.outputs`` ("last": step T only; "every" and "masked": every step, as
        :func:`kappa1_fast`); an array gives each step's weight (e.g. 1 where a mask scores
        anything at that step, 0 elsewhere), on the device, so no host round trip is needed.

    Returns
    -------
    dict keyed by parameter name (the keys and order of ``spec.param_shapes()``) of new float64
    arrays of the active backend (the caller may overwrite them).
    """
    spec = require_elman(spec, activations=_PH, what=f"kappa_device ({_SQUARED})")
    T = _check_T(T)
    mode = _step_weights_mode(spec, T, step_weights)
    sq = _device_squares(spec, params)
    h, delta, w_top, n_scored = _squared_pass_device(spec, sq, T, mode)
    k = _kappa1_from_pass(spec, sq, h, delta, w_top, n_scored)
    if second_term:
        for i in range(1, spec.layers + 1):
            name = f"layer{i}.W_rec"
            k[name] += _kappa2_rec_device(sq[name], h[i - 1], delta[i - 1])
    return k


def _to_host_dict(spec, k) -> dict:
    return {name: np.asarray(backend.to_host(k[name]), dtype=np.float64)
            for name in spec.param_shapes()}


# ----------------------------------------------------------------------------- the squared pass
def squared_network_pass(spec, params, T: int):
    """Forward and backward of g on the squared network (the pass of :func:`kappa_device`, the
    steps of ``spec.outputs`` scored: "last" only step T, "every" and "masked" every step), as
    host arrays, for the matrix forms of kappa^(2).

    Returns
    -------
    h : list of d arrays (T + 1, H_i)
        h~^i_t, with h~^i_0 = 0.
    delta : list of d arrays (T + 2, H_i)
        delta^i_t = dg / dh~^i_t for t = 1..T (rows 0 and T + 1 are zero).
    """
    spec = require_elman(spec, activations=_PH, what=f"squared_network_pass ({_SQUARED})")
    T = _check_T(T)
    sq = _device_squares(spec, params)
    h, delta, _, _ = _squared_pass_device(spec, sq, T, _step_weights_mode(spec, T, None))
    h = [np.array(backend.to_host(a), dtype=np.float64) for a in h]
    padded = []
    for d in delta:
        p = np.zeros((T + 2, d.shape[1]))
        p[1:T + 1] = backend.to_host(d)
        padded.append(p)
    return h, padded


# ----------------------------------------------------------------------------- kappa
def kappa1_fast(spec, params, T: int) -> dict:
    """kappa^(1) = grad_{p~} g(1) (``path-sgd-relu-rnn.md`` Theorem 3 and Lemma 1 Eq. (9)):
    one forward and one backward pass of the squared network on the all-ones input
    (dg/dy = 1 at every emitted output), computed on the active backend by
    :func:`kappa_device` and copied to the host.

    Returns a dict keyed by parameter name (float64 host arrays of each parameter's shape)."""
    spec = require_elman(spec, activations=_PH, what=f"kappa1_fast ({_SQUARED})")
    return _to_host_dict(spec, kappa_device(spec, params, T, second_term=False))


def _rec_term(spec, params, T, *, lag, first, factor) -> dict:
    """A matrix form of kappa^(2) (:func:`_kappa2_rec_device`) for every layer's W_rec, zero for
    the other parameters, as a dict of float64 host arrays."""
    T = _check_T(T)
    sq = _device_squares(spec, params)
    h, delta, _, _ = _squared_pass_device(spec, sq, T, _step_weights_mode(spec, T, None))
    xp = backend.get_xp()
    k = {name: xp.zeros(shape) for name, shape in spec.param_shapes().items()}
    for i in range(1, spec.layers + 1):
        name = f"layer{i}.W_rec"
        k[name] = _kappa2_rec_device(sq[name], h[i - 1], delta[i - 1], lag=lag, first=first,
                                     factor=factor)
    return _to_host_dict(spec, k)


def kappa2_fast(spec, params, T: int) -> dict:
    """kappa^(2), corrected matrix form (zero except for W_rec):

    kappa2(W_rec^i) = 4 W~ . sum_{n=0}^{T-3} [ (W~^n)^T . sum_{s=1}^{T-2-n} delta_{s+n+2} h~_s^T ]

    with W~ = W_rec^i squared elementwise, h~, delta from :func:`squared_network_pass`. A path
    that uses the edge k -> j at s -> s+1 and again at s+n+1 -> s+n+2 is counted once per
    position-ordered pair; each path with c uses has c (c-1) / 2 such pairs while
    1/2 d^2/dp^2 needs 2 c (c-1): hence the 4 (see the module docstring, items 2-4).

    Evaluated as 4 W~ . sum_{t=3}^{T} diag(delta_t) F_{t-2} with F_1 = diag(h~_1),
    F_m = W~^T F_{m-1} + diag(h~_m) (module docstring, item 4): T - 3 products of H x H matrices
    per layer, O(d T H^3), on the active backend; the same nonnegative terms as the double sum,
    so equal to it up to float64 round-off. Returns a dict keyed by parameter name (float64 host
    arrays).
    """
    spec = require_elman(spec, activations=_PH, what=f"kappa2_fast ({_SQUARED})")
    return _rec_term(spec, params, T, lag=2, first=1, factor=4.0)


def kappa2_paper_matrix_form(spec, params, T: int, *, shift_h: bool = False) -> dict:
    """kappa^(2) exactly as printed in ``path-sgd-relu-rnn.md`` Section 4.4 (for comparison only):

    W~ . sum_{t1=0}^{T-3} [ (W~^t1)^T . sum_{t2=2}^{T-t1-1} dg/dh_{t1+t2+1} (h_{t2})^T ]

    It is NOT 1/2 d^2 gamma^2 / dp^2 - kappa^(1): it lacks a factor 4 and pairs each h_{t2} with
    the gradient one step too early (module docstring, item 4). With h_{t2} read as h_{t2-1} it
    is exactly kappa2_fast / 4; ``shift_h=True`` computes that reading. The printed terms are
    summed in another order (pairs (t1, t2) grouped by the gradient's step t1 + t2 + 1, as in
    :func:`kappa2_fast`: lag 1 from h_{t2}, t2 >= 2), O(T H^3) instead of O(T^2 H^2) outer
    products. Returns a dict keyed by parameter name.
    """
    spec = require_elman(spec, activations=_PH,
                         what=f"kappa2_paper_matrix_form ({_SQUARED})")
    if shift_h:                  # s = t2 - 1 >= 1 meets delta_{s+t1+2}: lag 2
        return _rec_term(spec, params, T, lag=2, first=1, factor=1.0)
    return _rec_term(spec, params, T, lag=1, first=2, factor=1.0)   # s = t2 >= 2, lag 1


def kappa(spec, params, T: int, *, second_term: bool = True) -> dict:
    """kappa_i = 1/2 d^2 gamma^2 / d p_i^2 (``path-sgd-relu-rnn.md`` Eq. (8)) for every shared
    parameter, by the fast formulas: kappa^(1) (Theorem 3 (path-sgd), one squared-network
    backward pass) plus, with ``second_term``, the corrected kappa^(2) (:func:`kappa2_fast`).
    ``second_term=False`` gives the kappa^(1)-only variant the paper trains with (Section 5.1).
    Computed on the active backend by :func:`kappa_device` (one squared pass for both terms).

    Returns a dict keyed by parameter name: the keys of ``spec.param_shapes()``, float64 host
    arrays of each parameter's shape.
    """
    spec = require_elman(spec, activations=_PH, what=f"kappa ({_SQUARED})")
    return _to_host_dict(spec, kappa_device(spec, params, T, second_term=second_term))


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
           "kappa_device", "kappa_enumeration", "kappa_finite_difference", "kappa_ratio",
           "squared_network_pass", "squared_params"]
