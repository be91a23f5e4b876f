"""Node-wise rescalings of stacked ReLU RNNs (``path-sgd-relu-rnn.md`` Section 3, Theorem 1).

Sources: ``path-sgd`` is ``path-sgd-relu-rnn.md``, ``gsgd`` is ``path-space-rnn-gsgd.md`` (both
have a Theorem 1; here it is always path-sgd's).

Shapes: d hidden layers of widths H_i, T steps. ``alpha`` is a list of d positive vectors
``alpha[i-1] : (H_i,)``, one factor per hidden unit, shared across time.

The feasible rescaling T_alpha multiplies all weights into hidden unit j of layer i by
alpha^i_j and all weights out of it by 1 / alpha^i_j (alpha^0 = 1 for the inputs, the outputs are
not rescaled)::

    W_in^i[j, k]  <- alpha^i_j / alpha^{i-1}_k  W_in^i[j, k]
    W_rec^i[j, k] <- alpha^i_j / alpha^i_k      W_rec^i[j, k]
    b^i[j]        <- alpha^i_j b^i[j]              (an edge from the bias node, which is not rescaled)
    W_out[k, j]   <- W_out[k, j] / alpha^d_j
    b_out[k]      unchanged

Notes on the paper's statement
------------------------------
* Theorem 1 (path-sgd) writes the cases "i = 1" and "1 < i < d" for W_in and 1/alpha^{d-1} for
  W_out because the paper's Table 1 numbers its hidden layers 1..d-1 and calls the output layer
  d; in rnnlab's numbering (hidden layers 1..d, output separate) the middle case is 1 < i <= d
  and the output uses alpha^d. Theorem 1 (path-sgd) leaves biases out; with the bias node of
  footnote 2, b^i scales by alpha^i and b_out does not change.
* The caption of Figure 1 says the two networks are equivalent "for any nonzero alpha". For ReLU
  this needs alpha > 0: relu(-z) != -relu(z), so alpha = -1 on one unit changes the function
  (it does hold for the identity activation). :func:`rescale` therefore requires alpha > 0.
* A factor that changes with time is not feasible: the T copies of a shared parameter would need
  different values (:func:`per_time_rescaling`), which is the converse half of Theorem 1
  (path-sgd) ("any feasible node-wise rescaling can be presented in the above form");
  :func:`feasible_rescaling_dimension` computes the dimension of the feasible family exactly from
  the unrolled graph.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..params import host_vector, unflatten
from .support import POSITIVELY_HOMOGENEOUS, require_elman
from .unrolled import UnrolledGraph

_RESCALING = "a node-wise rescaling that keeps the function, Theorem 1 (path-sgd)"


def _check_alpha(spec, alpha, *, positive: bool = True) -> list:
    if len(alpha) != spec.layers:
        raise ConfigError(f"alpha must hold one vector per hidden layer ({spec.layers}); "
                          f"got {len(alpha)}")
    out = []
    for i, (a, width) in enumerate(zip(alpha, spec.hidden), start=1):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (width,):
            raise ConfigError(f"alpha[{i - 1}] (layer {i}) must have shape ({width},); "
                              f"got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"alpha[{i - 1}] must be finite")
        if positive and not np.all(a > 0):
            raise ConfigError(f"alpha[{i - 1}] must be > 0: a ReLU commutes only with positive "
                              f"scaling; got {a.tolist()}")
        out.append(a)
    return out


def rescaling_factors(spec, alpha, *, check: bool = True) -> dict:
    """The factor s_p by which T_alpha multiplies each parameter: T_alpha(p) = s * p.

    Returns a dict with the keys of ``spec.param_shapes()``.
    """
    spec = require_elman(spec, activations=POSITIVELY_HOMOGENEOUS,
                         what=f"rescaling_factors ({_RESCALING})")
    alpha = _check_alpha(spec, alpha, positive=check)
    factors, below = {}, np.ones(spec.n_in)
    for i, a in enumerate(alpha, start=1):
        factors[f"layer{i}.W_in"] = a[:, None] / below[None, :]
        factors[f"layer{i}.W_rec"] = a[:, None] / a[None, :]
        if spec.bias:
            factors[f"layer{i}.b"] = a.copy()
        below = a
    factors["out.W"] = np.broadcast_to(1.0 / below[None, :], (spec.n_out, below.shape[0])).copy()
    if spec.bias:
        factors["out.b"] = np.ones(spec.n_out)
    return {k: factors[k] for k in spec.param_shapes()}


def rescale(spec, params, alpha, *, check: bool = True) -> dict:
    """T_alpha(params): the feasible node-wise rescaling of Theorem 1 (path-sgd), with biases.

    Parameters
    ----------
    spec : ElmanSpec (or a model) with activation "relu" or "identity"
    params : dict or (m,) flat vector
    alpha : list of d arrays (H_i,), all entries > 0
    check : bool
        ``False`` skips the alpha > 0 check (to show that negative factors break ReLU networks).

    Returns
    -------
    dict of float64 host arrays with the keys of ``spec.param_shapes()``.
    """
    spec = require_elman(spec, activations=POSITIVELY_HOMOGENEOUS,
                         what=f"rescale ({_RESCALING})")
    p = unflatten(host_vector(params, spec), spec, host=True)
    factors = rescaling_factors(spec, alpha, check=check)
    return {k: factors[k] * p[k] for k in p}


def random_alpha(spec, rng, low: float = 0.25, high: float = 4.0) -> list:
    """Factors drawn log-uniformly from [low, high] (one vector per hidden layer)."""
    spec = require_elman(spec, what="random_alpha")
    return [np.exp(rng.uniform(np.log(low), np.log(high), size=w)) for w in spec.hidden]


def node_factors(graph: UnrolledGraph, alpha_t) -> np.ndarray:
    """(n_nodes,) the factor of every node for per-time factors ``alpha_t`` (a list of d arrays
    (T, H_i); hidden unit j of layer i at time t gets alpha_t[i-1][t-1, j]; input, bias and
    output nodes get 1)."""
    spec = graph.spec
    if len(alpha_t) != spec.layers:
        raise ConfigError(f"alpha_t must hold one (T, H_i) array per hidden layer "
                          f"({spec.layers}); got {len(alpha_t)}")
    f = np.ones(graph.n_nodes)
    for v in graph.hidden_nodes:
        node = graph.nodes[v]
        f[v] = np.asarray(alpha_t[node.layer - 1])[node.time - 1, node.unit]
    return f


def per_time_rescaling(spec, params, T: int, alpha_t) -> dict:
    """Try to realise a rescaling whose factors change with time, with shared weights.

    Node-wise rescaling of the unrolled graph by per-node factors f requires each edge u -> v to
    take the weight w_e f_v / f_u. With shared weights, all edges of E_i must take one value; the
    least-squares choice is their mean, and the residual measures how far the rescaling is from
    feasible (zero iff every E_i agrees).

    Parameters
    ----------
    alpha_t : list of d arrays (T, H_i), > 0

    Returns
    -------
    dict with
      ``required`` : dict name -> list of (E_i,) arrays per flat index, the edge weights needed;
      ``shared`` : (m,) least-squares shared weights;
      ``residual`` : float, sqrt(sum_e (required_e - shared_{pi(e)})^2);
      ``spread`` : (m,) max - min of the required values per parameter.
    """
    spec = require_elman(spec, what="per_time_rescaling")
    graph = UnrolledGraph(spec, T)
    flat = host_vector(params, spec)
    w = flat[graph.edge_param]
    f = node_factors(graph, alpha_t)
    required = w * f[graph.edge_dst] / f[graph.edge_src]
    m = graph.n_params
    counts = np.bincount(graph.edge_param, minlength=m)
    sums = np.bincount(graph.edge_param, weights=required, minlength=m)
    shared = np.where(counts > 0, sums / np.maximum(counts, 1), flat)
    resid = required - shared[graph.edge_param]
    hi = np.full(m, -np.inf)
    lo = np.full(m, np.inf)
    np.maximum.at(hi, graph.edge_param, required)
    np.minimum.at(lo, graph.edge_param, required)
    spread = np.where(counts > 0, hi - lo, 0.0)
    per_param = [required[graph.edge_param == i] for i in range(m)]
    return {"required": per_param, "shared": shared,
            "residual": float(np.sqrt(np.sum(resid ** 2))), "spread": spread}


def feasible_rescaling_dimension(spec, T: int) -> int:
    """The dimension of the family of feasible node-wise rescalings of the unrolled graph.

    Unknowns: log f_v for every hidden node (T * sum(H_i)) and log s_i for every parameter; one
    linear equation per edge, log s_{pi(e)} = log f_dst - log f_src (inputs, bias and outputs
    fixed at log 1 = 0). The feasible rescalings are the solutions; their dimension, counted in
    the node factors, is dim null(C) minus the parameters that label no edge (W_rec when T = 1,
    free because they do not affect the function). Theorem 1 (path-sgd) says it equals sum(H_i):
    one factor per unit, constant in time. Computed exactly (integer matrix, rank by SVD of a
    0/+-1 matrix whose nonzero singular values are far from 0 at these sizes; cross-checked in the
    tests).
    """
    spec = require_elman(spec, what="feasible_rescaling_dimension")
    graph = UnrolledGraph(spec, T)
    hidden = graph.hidden_nodes
    col = {v: c for c, v in enumerate(hidden)}
    nh, m = len(hidden), graph.n_params
    C = np.zeros((graph.n_edges, nh + m))
    for e, (u, v, p) in enumerate(zip(graph.edge_src, graph.edge_dst, graph.edge_param)):
        C[e, nh + p] = 1.0
        if v in col:
            C[e, col[v]] -= 1.0
        if u in col:
            C[e, col[u]] += 1.0
    rank = int(np.linalg.matrix_rank(C))
    null_dim = nh + m - rank
    unused = int(np.sum(np.bincount(graph.edge_param, minlength=m) == 0))
    return null_dim - unused


__all__ = ["feasible_rescaling_dimension", "node_factors", "per_time_rescaling", "random_alpha",
           "rescale", "rescaling_factors"]
