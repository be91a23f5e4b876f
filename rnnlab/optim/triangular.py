"""Triangular solves on the active backend, for PSGD's triangular factors.

One helper, :func:`solve_triangular`, that calls ``scipy.linalg.solve_triangular`` when NumPy is
active and ``cupyx.scipy.linalg.solve_triangular`` under CuPy (the array module comes from
:func:`rnnlab.backend.get_xp`; the solver is picked by :func:`rnnlab.backend.backend_name`, and
cupyx is imported only when CuPy is active).
"""
from __future__ import annotations

from .. import backend


def _solver():
    if backend.backend_name() == "cupy":
        from cupyx.scipy.linalg import solve_triangular as solve
    else:
        from scipy.linalg import solve_triangular as solve
    return solve


def solve_triangular(a, b, *, trans: bool = False, lower: bool = False):
    """x with ``a x = b`` (or ``a^T x = b`` with ``trans``) for a triangular ``a``.

    Parameters
    ----------
    a : (n, n)
        Upper triangular (lower with ``lower=True``); entries on the other side are not read.
    b : (n,) or (n, k)
        Of the backend of ``a``.
    trans : bool
        Solve with the transpose of ``a``.

    Returns
    -------
    x : shaped like ``b``, a new array of the active backend.
    """
    return _solver()(a, b, trans=1 if trans else 0, lower=lower, check_finite=False)


__all__ = ["solve_triangular"]
