"""Path geometry of ReLU RNNs: the unrolled graph, its paths, the path regularizer and its
curvature, node-wise rescalings, and the table of checked claims (``rnnlab verify``).

Modules: :mod:`.unrolled` (DAG, parameter map pi, path counting and enumeration), :mod:`.norms`
(gamma^2 three ways, kappa by enumeration / fast formulas / finite differences), :mod:`.rescale`
(feasible node-wise rescalings), :mod:`.reduction` (the reduction graph and the integer
combinations of Theorem 1 (gsgd)), :mod:`.basis` (skeleton masks and basis paths), :mod:`.exact`
(exact rational linear algebra), :mod:`.support` (which models are supported:
:func:`require_elman`); the claims table: :mod:`.checks` (registry, runner, table), the claims in
:mod:`.claims` and :mod:`.reduction_checks`, the planted bugs in :mod:`.plants`, the command line
in :mod:`.verify_cli`.

Sources: ``path-sgd`` is ``path-sgd-relu-rnn.md``, ``gsgd`` is ``path-space-rnn-gsgd.md``; both
have a Theorem 1, so theorems are always cited with their paper ("Theorem 1 (path-sgd)").

Every entry point takes a stacked Elman spec (or a model, for its ``.spec``) and refuses other
model kinds with a :class:`~rnnlab.errors.ConfigError`. Parameters are flattened by
:mod:`rnnlab.params` (``host_vector(params, spec)``, ``unflatten(vec, spec, host=True)``).

Submodules and names are imported on first use, so ``import rnnlab.paths`` (and building the
``verify`` command line) stays cheap; ``rnnlab.paths.norms``, ``rnnlab.paths.UnrolledGraph`` and
``from rnnlab.paths import ...`` all work as usual.
"""
from __future__ import annotations

import importlib

_SUBMODULES = ("basis", "checks", "claims", "exact", "norms", "plants", "reduction",
               "reduction_checks", "rescale", "support", "unrolled", "verify_cli")

_NAMES = {
    "basis": ("BasisPaths", "ExactForward", "Skeleton", "algorithm1_masks", "forward_exact"),
    "checks": ("CheckContext", "CheckResult", "Tally", "format_table", "register_check",
               "run_checks"),
    "norms": ("KappaParts",),
    "plants": ("PLANTS",),
    "reduction": ("Chains", "REdge", "RNode", "ReductionGraph", "sample_unrolled_paths"),
    "support": ("require_elman",),
    "unrolled": ("Node", "PathSet", "UnrolledGraph", "fit_T", "n_params", "param_index",
                 "param_names_flat"),
    "verify_cli": ("add_verify_arguments", "main_verify"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_SUBMODULES + tuple(_HOME))


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
