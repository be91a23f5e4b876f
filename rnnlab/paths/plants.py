"""Planted bugs for ``rnnlab verify``: known-wrong variants of the computations the checks test.

A verification table that cannot fail proves nothing. Each planted bug (a key of :data:`PLANTS`)
replaces one computation inside the checks with a wrong one, and the rows that test it must then
report FAIL (``rnnlab verify --plant NAME``; ``tests/test_paths_verify.py`` and
``tests/test_paths_basis.py`` check that they do). The checks ask this module for the computation
under test (``kappa_under_test``, ``basis_under_test``, ...), passing the context's plant; with no
plant each returns the library's own result.

Importing this module is cheap (the CLI reads :data:`PLANTS` to list ``--plant`` choices): the
path modules are imported only when a variant is computed.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

PLANTS = {
    "kappa_factor": "the fast kappa is multiplied by 2 in the kappa checks",
    "kappa2_paper": "the printed Section 4.4 matrix form replaces the corrected kappa^(2)",
    "activation_mask": "the ReLU on/off mask is dropped from the path reconstruction",
    "rescale_transpose": "W_rec is rescaled by alpha_k/alpha_j instead of alpha_j/alpha_k",
    "skeleton_rec_swap": "recurrent basis paths read W_rec[j, k] as the edge j -> k (head of the "
                         "target, tail of the source)",
    "skeleton_mask_printed": "the skeleton out-mask is Algorithm 1 as printed, M^o[j][j % n_out]",
    "reduction_no_rec": "the reduction graph keeps only paths without a recurrent edge",
}


def check_plant(plant):
    """``plant`` if it is None or a key of :data:`PLANTS`, else a ConfigError listing them."""
    if plant is not None and plant not in PLANTS:
        raise ConfigError(f"plant must be one of {', '.join(PLANTS)}; got {plant!r}")
    return plant


# ----------------------------------------------------------------------------- path norms
def kappa_under_test(plant, spec, params, T: int, second_term: bool = True) -> dict:
    """The fast kappa (:func:`rnnlab.paths.norms.kappa`), a dict keyed by parameter name, with
    the planted bugs that target it: ``kappa2_paper`` (the printed Section 4.4 matrix form as
    kappa^(2)) and ``kappa_factor`` (twice the result)."""
    from . import norms
    k = norms.kappa1_fast(spec, params, T)
    if second_term:
        k2 = (norms.kappa2_paper_matrix_form(spec, params, T) if plant == "kappa2_paper"
              else norms.kappa2_fast(spec, params, T))
        k = {name: k[name] + k2[name] for name in k}
    if plant == "kappa_factor":
        k = {name: 2 * v for name, v in k.items()}
    return k


def activation_under_test(plant, paths, x, params) -> np.ndarray:
    """(P, B) activation status of every path (:meth:`PathSet.activation`); ``activation_mask``
    drops the ReLU on/off mask (all ones)."""
    act = paths.activation(x, params)
    return np.ones_like(act) if plant == "activation_mask" else act


# ----------------------------------------------------------------------------- rescaling
def rescaled_under_test(plant, spec, params, alpha) -> dict:
    """T_alpha(params) (:func:`rnnlab.paths.rescale.rescale`); ``rescale_transpose`` rescales
    W_rec[j, k] by alpha_k / alpha_j instead of alpha_j / alpha_k."""
    from ..params import host_vector, unflatten
    from . import rescale
    q = rescale.rescale(spec, params, alpha)
    if plant == "rescale_transpose":
        p = unflatten(host_vector(params, spec), spec, host=True)
        for i, a in enumerate(alpha, start=1):
            q[f"layer{i}.W_rec"] = (a[None, :] / a[:, None]) * p[f"layer{i}.W_rec"]
    return q


# ----------------------------------------------------------------------------- reduction graph
def reduction_graph_under_test(spec, plant=None):
    """The :class:`ReductionGraph` of ``spec``; ``reduction_no_rec`` keeps only its paths without
    a recurrent edge."""
    from .reduction import ReductionGraph
    g = ReductionGraph(spec)
    if plant == "reduction_no_rec":
        g.__dict__["paths"] = [p for p in g.paths if not any(g.edges[q].recurrent for q in p)]
        g.__dict__.pop("path_index", None)
    return g


def basis_under_test(spec, plant=None, skeleton=None):
    """The :class:`BasisPaths` of ``spec`` (and ``skeleton``), with the planted bugs that target
    it: ``skeleton_mask_printed`` (the skeleton out-mask of Algorithm 1 as printed, which raises
    IndexError when H > n_out) and ``skeleton_rec_swap`` (the basis path of W_rec[j, k], the edge
    k -> j, built as if the edge went j -> k)."""
    from .basis import BasisPaths, Skeleton, algorithm1_masks
    if plant == "skeleton_mask_printed":
        d = spec.layers
        widths = (spec.n_in,) + tuple(spec.hidden) + (spec.n_out,)
        in_masks, out_masks = {}, {}
        for i in range(1, d + 1):
            in_masks[i], out_masks[i] = algorithm1_masks(
                (widths[i], widths[i - 1]), (widths[i + 1], widths[i]), reading="printed")
        skeleton = Skeleton(spec, in_masks, out_masks)
    bp = BasisPaths(spec, skeleton)
    if plant == "skeleton_rec_swap":   # head of the target + e + tail of the source
        for r, p in enumerate(bp.edges):
            e = bp.graph.edges[p]
            if e.recurrent:
                bp.paths[r] = bp.chains.head(e.dst) + (p,) + bp.chains.tail(e.src)
    return bp


__all__ = ["PLANTS", "activation_under_test", "basis_under_test", "check_plant",
           "kappa_under_test", "reduction_graph_under_test", "rescaled_under_test"]
