"""Conjugate gradient on the damped quadratic model of Hessian-free optimisation.

Minimises ``M(x) = g^T x + 1/2 x^T A x`` (A symmetric positive definite, given only as a
product ``A(v)``), i.e. solves ``A x = -g``, for parameter-shaped directions: dicts of arrays
with the keys of the parameters (inner products over all of them).

What Hessian-free needs beyond textbook CG (``../shared/notes/optimizers.md`` section 4.3):

- a **warm start** ``x0`` (the previous solution, decayed by the caller), dropped for a cold
  start when ``M(x0) >= 0`` (it would start CG uphill of 0);
- **Martens' relative-progress stopping rule** (Martens 2010, section 4.4): with
  ``k = max(10, ceil(0.1 i))``, stop at iteration i when ``i > k``, ``M(x_i) < 0`` and
  ``(M(x_i) - M(x_{i-k})) / M(x_i) < k * tol`` (tol = 5e-4, as in Martens' and Martens &
  Sutskever's code); also at ``max_iter``, or when the residual is 0;
- **stored iterates** for CG backtracking, at geometrically spaced iterations (every iteration
  whose index is the ceiling of a power of ``1.3``, the schedule of the public HF codes, plus the
  last), each with its model value ``M(x_i)``.

The model value comes free from CG's residual ``r = -g - A x``: ``M(x) = -1/2 x^T (r - g)``.
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend


def dot(a: dict, b: dict) -> float:
    """sum over keys of <a[k], b[k]> (a host float)."""
    xp = backend.get_xp()
    return float(sum(xp.vdot(a[k], b[k]) for k in a))


def axpy(alpha: float, x: dict, y: dict) -> dict:
    """y + alpha x, as new arrays."""
    return {k: y[k] + alpha * x[k] for k in y}


@dataclasses.dataclass
class CGResult:
    """What one CG solve produced.

    Attributes
    ----------
    x : dict
        The last iterate (Hessian-free's next warm start).
    iterates : list of (int, dict, float)
        (iteration, x_i, M(x_i)) at the stored iterations, in order; the last is ``x``.
    iterations : int
        Products with A used (excluding the one for the warm start's residual).
    reason : str
        Why it stopped: "progress" (Martens' rule), "max_iter", "converged" (r = 0) or
        "curvature" (p^T A p <= 0: A is not positive definite along p; a bug or no damping).
    values : list of float
        M(x_i) at every iteration (for plots and tests).
    """

    x: dict
    iterates: list
    iterations: int
    reason: str
    values: list


def storage_schedule(max_iter: int, factor: float = 1.3) -> set:
    """The iterations whose iterates are kept: ceil(factor^j) for j = 0, 1, ..., <= max_iter."""
    kept, j = set(), 0
    while True:
        i = math.ceil(factor ** j)
        if i > max_iter:
            return kept
        kept.add(i)
        j += 1


def conjugate_gradient(A, g: dict, x0: dict, max_iter: int = 250, tol: float = 5e-4,
                       min_iter: int = 1) -> CGResult:
    """Minimise g^T x + 1/2 x^T A x from ``x0`` (see the module docstring).

    Parameters
    ----------
    A : callable dict -> dict
        The symmetric positive-definite product (damped Gauss-Newton, in Hessian-free).
    g : dict
        The gradient (the linear term).
    x0 : dict
        The starting point (zeros for a cold start).
    max_iter : int
        At most this many iterations.
    tol : float
        Martens' relative-progress tolerance (0: run to ``max_iter`` or convergence).
    min_iter : int
        Never stop on progress before this many iterations.
    """
    def model_value(x, r):
        return -0.5 * dot(x, {k: r[k] - g[k] for k in r})

    x = {k: v.copy() for k, v in x0.items()}
    r = {k: -v for k, v in g.items()}
    if dot(x, x) > 0:
        Ax = A(x)
        r_warm = {k: r[k] - Ax[k] for k in r}
        if model_value(x, r_warm) < 0:  # a warm start that does not lower M is dropped
            r = r_warm
        else:
            x = {k: 0 * v for k, v in x.items()}
    p = {k: v.copy() for k, v in r.items()}
    rr = dot(r, r)
    schedule = storage_schedule(max_iter)
    values, iterates, reason, i = [], [], "max_iter", 0

    for i in range(1, max_iter + 1):
        if rr == 0.0:
            i -= 1
            reason = "converged"
            break
        Ap = A(p)
        pAp = dot(p, Ap)
        if not pAp > 0:  # includes nan
            i -= 1
            reason = "curvature"
            break
        alpha = rr / pAp
        x = axpy(alpha, p, x)
        r = axpy(-alpha, Ap, r)
        rr_new = dot(r, r)
        p = axpy(rr_new / rr, p, r)
        rr = rr_new
        values.append(model_value(x, r))
        if i in schedule:
            iterates.append((i, x, values[-1]))
        k = max(10, math.ceil(0.1 * i))
        if (tol > 0 and i > k and i >= min_iter and values[-1] < 0
                and (values[-1] - values[i - 1 - k]) / values[-1] < k * tol):
            reason = "progress"
            break
    if not iterates or iterates[-1][0] != i:
        iterates.append((i, x, values[-1] if values else model_value(x, r)))
    return CGResult(x, iterates, i, reason, values)


__all__ = ["CGResult", "axpy", "conjugate_gradient", "dot", "storage_schedule"]
