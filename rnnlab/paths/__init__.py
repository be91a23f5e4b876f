"""Path geometry of ReLU RNNs: the unrolled graph, its paths, the path regularizer and its
curvature, node-wise rescalings, and the table of checked claims (``rnnlab verify``).

Modules: :mod:`.unrolled` (DAG, parameter map pi, path counting and enumeration), :mod:`.norms`
(gamma^2 three ways, kappa by enumeration / fast formulas / finite differences), :mod:`.rescale`
(feasible node-wise rescalings), :mod:`.reduction` (the reduction graph and Theorem 1's integer
combinations), :mod:`.basis` (skeleton masks and basis paths), :mod:`.exact` (exact rational
linear algebra), :mod:`.verify` (the claims table; the claims themselves are in :mod:`.claims`
and :mod:`.reduction_checks`).
"""
from . import exact
from .basis import BasisPaths, ExactForward, Skeleton, algorithm1_masks, forward_exact
from .reduction import Chains, ReductionGraph, REdge, RNode, sample_unrolled_paths
from .unrolled import (Node, PathSet, UnrolledGraph, fit_T, flat_params, n_params, param_index,
                       param_names_flat, unflatten_params)

__all__ = ["BasisPaths", "Chains", "ExactForward", "Node", "PathSet", "REdge", "RNode",
           "ReductionGraph", "Skeleton", "UnrolledGraph", "algorithm1_masks", "exact", "fit_T",
           "flat_params", "forward_exact", "n_params", "param_index", "param_names_flat",
           "sample_unrolled_paths", "unflatten_params"]
