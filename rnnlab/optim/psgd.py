"""PSGD: Xi-Lin Li's preconditioned SGD (``psgd-rnn.md``), dense and Kronecker-factored.

Shapes: N parameters in all; a Kronecker block is an (m, n) matrix (m rows = output units, n
columns = inputs, the bias folded in as the last column). Curvature pairs are computed in float64
(finite differences) or in the training dtype (Gauss-Newton); the factors, their updates and P g
are arrays of the active backend in the parameters' dtype (in a float32 run that saves a quarter
of the factor algebra's time; the fit needs no more precision than the pairs carry).

The update (``psgd-rnn.md`` Eq. 3-4; ``shared/notes/optimizers.md`` 3.1-3.3)::

    theta <- theta - lr * c * P g,      P = Q^T Q,   c = min(1, step_clip / ||P g||)  (or 1)

P is fitted, one (delta-theta, delta-g) pair per update ("minibatch size 1"), so that
P E[dg dg^T] P = E[dtheta dtheta^T], the minimiser of E[dg^T P dg + dtheta^T P^-1 dtheta]
(Eq. 3): without gradient noise P = |H|^-1, the inverse of the Hessian with its eigenvalues
taken in absolute value, so indefinite curvature is fine. Q is upper triangular with a positive
diagonal, starts at ``q_scale * I`` and takes relative (natural) gradient steps on the group
of such matrices, normalised by the largest entry of the gradient (the step of each update is
``precond_lr`` in that sense)::

    dense (one Q for all N parameters, Section II-B-1)
        a = Q dg,  b = Q^-T dtheta,  grad = triu(a a^T - b b^T)
        Q <- Q - precond_lr / (max|grad| + tiny) * grad Q
    Kronecker (one pair per matrix, Section II-B-2, Eq. 5): P = (Q_r^T Q_r) (x) (Q_l^T Q_l),
    i.e. P G = Q_l^T Q_l G Q_r^T Q_r for an (m, n) matrix G (vec in column-major order)
        rho = sqrt(max diag Q_l / max diag Q_r);  Q_l <- Q_l / rho;  Q_r <- rho Q_r
        A = Q_l dG Q_r^T,  B = Q_l^-T dX Q_r^-1
        grad_l = triu(A A^T - B B^T),  grad_r = triu(A^T A - B^T B)
        Q_l <- Q_l - precond_lr / (max|grad_l| + tiny) * grad_l Q_l   (Q_r alike)

as ``lixilinx/psgd_np`` (``update_precond_dense``, ``update_precond_kron``) writes them, with
tiny = the smallest normal float32 as there. The dense ``grad Q`` is formed in O(N^2) (a rank-2
update under a triangular mask, :func:`update_dense`), not as an O(N^3) product.

Blocks (``preconditioner``)
---------------------------
* ``"kron"``: for the Elman RNN (``model.spec.kind == "elman"``) one (Q_l, Q_r) pair per layer on
  the columns ``[W_in | W_rec | b]`` stacked into one (H_i, n_in_i + H_i + 1) matrix, and one on
  ``[W | b]`` of the output layer: P = (P_2 (x) P_1) (+) (P_4 (x) P_3), the paper's Eq. (5) and
  ``shared/notes/optimizers.md`` 3.3. Another model's parameters get one pair per tensor of two
  or more dimensions (rows = the first axis) and a dense factor per 1-D tensor.
* ``"dense"``: all parameters as one vector (in the order of the params dict), O(N^2) memory and
  work per update; refused beyond ``max_dense`` parameters ("practical only for small scale
  problems with up to thousands of parameters", Section II-B-1).

The curvature pair (``curvature``)
----------------------------------
* ``"finite-difference"`` (the paper, Section III): dtheta ~ N(0, eps) elementwise, eps = 2^-52
  (a standard deviation of 2^-26 ~ 1.5e-8), and dg = g(theta + dtheta) - g(theta) on the same
  batch through the trainer's ``closure``, in float64: the perturbed point is formed in float64
  and dtheta is taken as the difference that actually results. In float32 such a perturbation is
  lost to rounding, so float32 parameters are refused with a ConfigError unless the closure can
  evaluate at float64 parameters (the trainer's cannot at present: it keeps the batch in the
  training dtype). g(theta) is a second closure call by default, because the gradient the trainer
  hands over is clipped (``train.clip``, default 1) and a clipped g would swamp dg (of size
  1e-8 |H|) with (1 - c) g; ``reuse_gradient = true`` takes the trainer's gradient instead (the
  paper's cost of one extra gradient), which is exact only in float64 runs with ``train.clip = 0``.
* ``"gauss-newton"``: dtheta ~ N(0, 1), drawn in the parameters' dtype, and dg = G dtheta,
  exactly, through the trainer's ``gvp`` in the training dtype. G is the Gauss-Newton matrix,
  not the Hessian (it drops the terms with the second derivatives of the network), so PSGD then
  fits P to G^-1 (G is positive semi-definite), not to |H|^-1. The paper does not use it; the
  later ``psgd_np`` demos use exact Hessian-vector products with dtheta ~ N(0, 1) instead, which
  rnnlab does not have.

dtheta of step k (1-based) is drawn on the host from ``host_rng(derive_seed(seed, k))``, one
flat vector in the params order (the same draw for either preconditioner), so a resumed run
draws the same perturbations without saving a generator state. The factors live in ``state["Q"]``
(block name -> ``[Q_l, Q_r]`` or ``[Q]``) and are checkpointed; the step follows the demos' order:
the factors are updated first, then the step uses them.

Cost (step metrics ``cost_D``, ``cost_I``)
------------------------------------------
PSGD's own extra work per update beyond the trainer's gradient, in forward passes of one
training sequence (Krause et al.; ``shared/notes/optimizers.md`` 5): a gradient is 3 B and 3 on
a batch of B sequences, a Gauss-Newton product 4 B and 4. So finite-difference costs 6 B and 6
(two gradients), 3 B and 3 with ``reuse_gradient``, gauss-newton 4 B and 4 (its forward pass is
counted in the 4), and a step that does not update Q costs 0. The factor algebra is not counted
(Krause's units count passes through the network only). Measured on one CPU thread for the
adding problem (T = 100, H = 100, B = 50; blocks 100 x 103 and 1 x 101): 1.5 ms per step with Q
updated (11-13 % of a 14 ms SGD step) and 0.3 ms with Q fixed in float64; 1.1 ms and 0.2 ms in
float32 (28 % and 5 % of a 4 ms SGD step), where ``update_every = 3`` brings the average under
15 %. Two triangular solves and eight (m, n) GEMMs per pair dominate.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import backend
from ..errors import ConfigError
from ..options import Option
from .base import Optimizer
from .triangular import solve_triangular

F64 = np.float64
EPS = 2.0 ** -52  # [PSGD] Section III: dtheta ~ N(0, eps), "the accuracy in double precision"
TINY = float(np.finfo(np.float32).tiny)  # psgd_np's guard against dividing by zero
COST_UNITS = {"gradient": 3.0, "gvp": 4.0}  # [Krause] Section 2: forward passes per sequence


# ----------------------------------------------------------------------------- factor algebra
_MASKS: dict = {}  # (backend, n, dtype) -> the (n, n) upper-triangular 0/1 mask


def _triu(a):
    """``triu(a)`` in place, for a square ``a``: a multiply by a cached mask (``numpy.triu``
    builds its mask on every call, 5x the cost of the multiply at n = 100)."""
    key = (backend.backend_name(), a.shape[0], a.dtype.str)
    mask = _MASKS.get(key)
    if mask is None:
        mask = _MASKS[key] = backend.get_xp().triu(backend.get_xp().ones(a.shape, a.dtype))
    a *= mask
    return a


def update_dense(Q, dtheta, dg, step: float):
    """One normalised relative-gradient step of a dense factor (``psgd_np``
    ``update_precond_dense``).

    Parameters
    ----------
    Q : (n, n), upper triangular with a positive diagonal
    dtheta, dg : (n,), of Q's dtype
        The perturbation of the parameters and the resulting perturbation of the gradient.
    step : float
        The normalised step, in [0, 1].

    Returns
    -------
    Q : (n, n)
        The new factor, ``Q - step / (max|grad| + tiny) * grad Q`` with
        ``grad = triu(a a^T - b b^T)``, ``a = Q dg``, ``b = Q^-T dtheta``.
    terms : (2,)
        ``[a^T a, b^T b] = [dg^T P dg, dtheta^T P^-1 dtheta]`` at the old factor: the two terms of
        the criterion (Eq. 3), equal in expectation once P is fitted.

    Notes
    -----
    ``grad Q`` in O(n^2): row i of ``triu(c c^T) Q`` is ``c_i sum_{k >= i} c_k Q[k]``, a
    reversed cumulative sum over the rows of ``c[:, None] * Q``; below the diagonal every term
    carries a zero of Q, so the result stays exactly upper triangular.
    """
    xp = backend.get_xp()
    a = Q @ dg
    b = solve_triangular(Q, dtheta, trans=True)
    grad = xp.outer(a, a)
    grad -= xp.outer(b, b)
    scale = step / (xp.abs(_triu(grad)).max() + TINY)

    def tail_sums(c):  # [sum_{k >= i} c_k Q[k, j]]_{ij}
        return xp.cumsum((c[:, None] * Q)[::-1], axis=0)[::-1]

    grad_q = a[:, None] * tail_sums(a)
    grad_q -= b[:, None] * tail_sums(b)
    return Q - scale * grad_q, xp.stack([a @ a, b @ b])


def update_kron(Ql, Qr, dX, dG, step: float):
    """One normalised relative-gradient step of a Kronecker pair (``psgd_np``
    ``update_precond_kron``): P = (Q_r^T Q_r) (x) (Q_l^T Q_l).

    Parameters
    ----------
    Ql : (m, m), Qr : (n, n), upper triangular with positive diagonals
    dX, dG : (m, n), of the factors' dtype
        Perturbations of the (stacked) matrix parameter and of its gradient.
    step : float
        The normalised step, in [0, 1].

    Returns
    -------
    Ql, Qr : the new factors (rescaled first so their largest diagonal entries are equal)
    terms : (2,)
        ``[||A||^2, ||B||^2] = [dg^T P dg, dtheta^T P^-1 dtheta]`` (see :func:`update_dense`).
    """
    xp = backend.get_xp()
    rho = xp.sqrt(xp.diagonal(Ql).max() / xp.diagonal(Qr).max())
    Ql = Ql / rho
    Qr = Qr * rho
    A = Ql @ dG @ Qr.T
    # B = Ql^-T dX Qr^-1: (Qr^-T dX^T)^T, then Ql^-T from the left
    B = solve_triangular(Ql, solve_triangular(Qr, dX.T, trans=True).T, trans=True)
    grad_l = _triu(xp.subtract(A @ A.T, B @ B.T))
    grad_r = _triu(xp.subtract(A.T @ A, B.T @ B))
    scale_l = step / (xp.abs(grad_l).max() + TINY)
    scale_r = step / (xp.abs(grad_r).max() + TINY)
    terms = xp.stack([xp.vdot(A, A), xp.vdot(B, B)])
    step_l, step_r = grad_l @ Ql, grad_r @ Qr
    step_l *= scale_l
    step_r *= scale_r
    Ql -= step_l
    Qr -= step_r
    return Ql, Qr, terms


def precondition_dense(Q, g):
    """P g = Q^T (Q g) for an (n,) vector."""
    return Q.T @ (Q @ g)


def precondition_kron(Ql, Qr, G):
    """P G = Q_l^T Q_l G Q_r^T Q_r for an (m, n) matrix, in the cheaper order (``psgd_np``
    ``precond_grad_kron``)."""
    if G.shape[0] > G.shape[1]:
        return Ql.T @ (Ql @ (G @ (Qr.T @ Qr)))
    return (((Ql.T @ Ql) @ G) @ Qr.T) @ Qr


# ----------------------------------------------------------------------------- blocks
@dataclasses.dataclass(frozen=True)
class Block:
    """Parameters that share one factor (dense) or one Kronecker pair.

    Attributes
    ----------
    name : str
        Its key in ``state["Q"]``: ``"layer1"``, ``"out"`` (stacked Elman blocks), a parameter
        name (one tensor), or ``"all"`` (the dense preconditioner).
    members : tuple of (name, shape)
        The parameters, in order: their columns side by side (kron; each reshaped to
        ``(rows, -1)``), or their entries one after another (dense).
    kind : {"kron", "dense"}
    rows : int
        Rows of the stacked matrix (kron), 0 for dense.
    """

    name: str
    members: tuple
    kind: str
    rows: int = 0

    @property
    def sizes(self) -> tuple:
        """Columns (kron) or entries (dense) each member contributes."""
        counts = (math.prod(shape) for _, shape in self.members)
        return tuple(c // self.rows for c in counts) if self.kind == "kron" else tuple(counts)

    @property
    def factor_shapes(self) -> tuple:
        """The shapes of its factors: ``((m, m), (n, n))`` or ``((n, n),)``."""
        total = sum(self.sizes)
        if self.kind == "kron":
            return (self.rows, self.rows), (total, total)
        return ((total, total),)

    def gather(self, arrays: dict, dtype=F64):
        """The members of ``arrays`` as one matrix (kron) or vector (dense) of ``dtype`` (a
        view where no copy is needed: do not write to it)."""
        xp = backend.get_xp()
        if self.kind == "kron":
            parts = [xp.asarray(arrays[n], dtype=dtype).reshape(self.rows, -1)
                     for n, _ in self.members]
            return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=1)
        parts = [xp.asarray(arrays[n], dtype=dtype).ravel() for n, _ in self.members]
        return parts[0] if len(parts) == 1 else xp.concatenate(parts)

    def scatter(self, stacked, out: dict) -> None:
        """Cut a gathered matrix or vector back into the members' shapes, into ``out``."""
        start = 0
        for (n, shape), size in zip(self.members, self.sizes):
            part = stacked[:, start:start + size] if self.kind == "kron" else \
                stacked[start:start + size]
            out[n] = part.reshape(shape)
            start += size


def _elman_blocks(shapes: dict, spec):
    """The paper's stacked blocks for an Elman spec, or None if ``shapes`` is not its layout."""
    if getattr(spec, "kind", None) != "elman" or not hasattr(spec, "param_shapes"):
        return None
    if {k: tuple(v) for k, v in spec.param_shapes().items()} != shapes:
        return None
    if getattr(spec, "layer_norm", False):
        raise ConfigError("optimizer 'psgd': the stacked [W_in | W_rec | b] Kronecker blocks of "
                          "Eq. (5) are for the un-normalised Elman RNN; got layer_norm = true "
                          "(use preconditioner 'dense' or layer_norm = false)")
    bias = "out.b" in shapes  # the layout matches the spec's, so this is spec.bias
    blocks = []
    for i, width in enumerate(spec.hidden, start=1):
        names = [f"layer{i}.W_in", f"layer{i}.W_rec"] + ([f"layer{i}.b"] if bias else [])
        blocks.append(Block(f"layer{i}", tuple((n, shapes[n]) for n in names), "kron", width))
    names = ["out.W"] + (["out.b"] if bias else [])
    blocks.append(Block("out", tuple((n, shapes[n]) for n in names), "kron", spec.n_out))
    return blocks


def plan_blocks(shapes: dict, preconditioner: str, spec=None) -> list:
    """The blocks of a parameter layout (``shapes``: name -> shape, in order).

    ``"dense"``: one block of everything. ``"kron"``: the stacked Elman blocks when ``spec`` is
    an Elman spec with exactly this layout; otherwise one Kronecker block per tensor of two or
    more dimensions and one dense block per 1-D (or 0-D) tensor.
    """
    shapes = {k: tuple(int(n) for n in v) for k, v in shapes.items()}
    if preconditioner == "dense":
        return [Block("all", tuple(shapes.items()), "dense")]
    stacked = _elman_blocks(shapes, spec)
    if stacked is not None:
        return stacked
    return [Block(n, ((n, s),), "kron", s[0]) if len(s) >= 2 else Block(n, ((n, s),), "dense")
            for n, s in shapes.items()]


# ----------------------------------------------------------------------------- curvature pairs
def draw_perturbation(shapes: dict, seed: int, step: int, scale: float, dtype=F64) -> dict:
    """dtheta of update ``step``: ``scale * N(0, 1)`` entries of ``dtype`` drawn on the host
    from ``host_rng(derive_seed(seed, step))`` as one flat vector in the order of ``shapes``,
    cut into arrays of the active backend (one transfer)."""
    rng = backend.host_rng(backend.derive_seed(seed, step))
    total = sum(math.prod(s) for s in shapes.values())
    flat = rng.standard_normal(total, dtype=dtype)
    if scale != 1.0:
        flat *= scale
    flat = backend.to_device(flat)
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    return out


def finite_difference_pair(closure, params: dict, dtheta: dict, grads: dict | None = None):
    """(dtheta, dg) with dg = g(theta + dtheta) - g(theta) in float64, on the closure's batch.

    The perturbed point is formed in float64 and the returned dtheta is the perturbation that
    actually results (``(theta + dtheta) - theta``, exact in float64). g(theta) is
    ``closure(params)`` unless ``grads`` (the unclipped gradient at ``params``) is given.
    """
    xp = backend.get_xp()
    base = {k: xp.asarray(v, dtype=F64) for k, v in params.items()}
    shifted = {k: base[k] + dtheta[k] for k in base}
    actual = {k: shifted[k] - base[k] for k in base}
    _, g_plus = closure(shifted)
    if grads is None:
        _, grads = closure(base)
    dg = {k: xp.asarray(g_plus[k], dtype=F64) - xp.asarray(grads[k], dtype=F64) for k in base}
    return actual, dg


def gauss_newton_pair(gvp, params: dict, dtheta: dict):
    """(dtheta, dg) with dg = G dtheta, the Gauss-Newton product through ``gvp`` at ``params``,
    both in the parameters' dtype (dtheta rounded to it first): exact up to round-off, with no
    cancellation to guard against."""
    xp = backend.get_xp()
    v = {k: xp.asarray(dtheta[k], dtype=p.dtype) for k, p in params.items()}
    return v, dict(gvp(params, v))


# ----------------------------------------------------------------------------- the optimizer
class PSGD(Optimizer):
    """Preconditioned SGD (``psgd-rnn.md``): p <- p - lr * c * Q^T Q g; see the module
    docstring for the fit of Q, the blocks, the curvature pairs and the cost metrics.

    Options (source in brackets; [PSGD] = ``psgd-rnn.md``, notes = ``shared/notes/optimizers.md``):

    ``lr`` (0.01)
        The normalised step mu of Eq. (4); 0.01 "for RNN training" [PSGD] Section III.
    ``preconditioner`` ("kron")
        "kron" (Eq. 5, the one the paper studies) or "dense" (Section II-B-1).
    ``precond_lr`` (0.01)
        The normalised step of the factors, in [0, 1] [PSGD] Section III, psgd_np ``step``;
        0 keeps Q at its initial value (and then no curvature is computed).
    ``update_every`` (1), ``update_schedule`` ("fixed")
        Update Q at steps k = 0, u, 2u, ... (0-based; [PSGD]: every iteration), or "log": at
        the psgd_np demos' gap ``max(floor(log10(k + 1)), 1)`` (``update_every`` must stay 1).
    ``curvature`` ("finite-difference")
        [PSGD] Section III, or "gauss-newton" (G, not H; rnnlab's).
    ``reuse_gradient`` (false)
        finite-difference only: take g(theta) from the trainer (float64, ``train.clip = 0``).
    ``step_clip`` (1.0)
        Scale P g to norm at most this before multiplying by lr (0: off), as every psgd_np and
        psgd_tf demo does (threshold 1; the paper's Matlab code is not available to check). The
        default follows the demos: an RNN's gradient can explode while Q still fits an older
        point, and P g then has no other bound (the trainer's ``train.clip`` bounds g, not P g).
    ``q_scale`` (1.0)
        Q starts at ``q_scale * I`` (P at ``q_scale^2 * I``; identity in [PSGD] Section
        III); for kron each factor of a pair starts at ``sqrt(q_scale) * I``.
    ``max_dense`` (5000)
        "dense" refuses more parameters than this (rnnlab's bound, after Section II-B-1).
    ``noise_seed`` (0)
        Seed of the perturbations dtheta.

    Needs ``batch`` (its size, for the cost metrics), ``closure`` (finite-difference) or ``gvp``
    (gauss-newton), and ``model`` for "kron" (the Elman layout from ``model.spec``).

    Step metrics: ``cost_D``, ``cost_I`` (module docstring), ``q_updated`` (1 on steps that
    update Q, else 0), ``precond_gain`` (||P g|| / ||g||), ``step_scale`` (c, 1 when not clipped)
    and ``fit_ratio`` (dg^T P dg / dtheta^T P^-1 dtheta at the latest update, before it: about 1
    once P fits; absent with ``precond_lr = 0``).
    """

    name = "psgd"
    options = (
        Option.number("lr", 0.01, "normalised step size mu (Eq. 4; 0.01 in the RNN paper)",
                      minimum=0),
        Option.choice("preconditioner", "kron", "kron: a Kronecker pair per weight matrix "
                      "([W_in | W_rec | b] stacked, Eq. 5); dense: one factor for all "
                      "parameters", ("kron", "dense")),
        Option.number("precond_lr", 0.01, "normalised step of the factors Q, in [0, 1] "
                      "(0: keep Q fixed)", minimum=0, inclusive=True, maximum=1),
        Option.integer("update_every", 1, "update Q every this many steps", minimum=1),
        Option.choice("update_schedule", "fixed", "fixed: every update_every steps; log: the "
                      "psgd_np demos' gap max(floor(log10(k + 1)), 1)", ("fixed", "log")),
        Option.choice("curvature", "finite-difference", "finite-difference: dg = g(theta + "
                      "dtheta) - g(theta), dtheta ~ N(0, 2^-52), float64 (the paper); "
                      "gauss-newton: dg = G dtheta, dtheta ~ N(0, 1) (fits G^-1, not H^-1)",
                      ("finite-difference", "gauss-newton")),
        Option.flag("reuse_gradient", False, "finite-difference: use the trainer's gradient as "
                    "g(theta) (one extra gradient instead of two; needs float64 and "
                    "train.clip = 0)"),
        Option.number("step_clip", 1.0, "clip the norm of P g to this before the step "
                      "(0: off; the demos' 1.0)", minimum=0, inclusive=True),
        Option.number("q_scale", 1.0, "Q starts at q_scale * I", minimum=0),
        Option.integer("max_dense", 5000, "the largest parameter count the dense "
                       "preconditioner accepts", minimum=1),
        Option.integer("noise_seed", 0, "seed of the perturbations dtheta", minimum=0),
    )
    # the union of what the options can ask for; each instance lists only what it uses
    needs = frozenset({"model", "batch", "closure", "gvp"})

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        hp = self.hyperparameters
        needs = {"batch"}
        if hp["precond_lr"] > 0:
            needs.add("closure" if hp["curvature"] == "finite-difference" else "gvp")
        if hp["preconditioner"] == "kron":
            needs.add("model")
        self.needs = frozenset(needs)
        self._plan = (None, None)  # (layout key, blocks)

    def _validate(self, hp):
        if hp["reuse_gradient"] and hp["curvature"] != "finite-difference":
            raise ConfigError("optimizer 'psgd': reuse_gradient applies to curvature="
                              f"'finite-difference' only; got curvature={hp['curvature']!r}")
        if hp["update_schedule"] == "log" and hp["update_every"] != 1:
            raise ConfigError("optimizer 'psgd': update_every applies to update_schedule="
                              f"'fixed'; with 'log' leave it at 1 (got {hp['update_every']})")

    # ------------------------------------------------------------------ structure and state
    def _blocks(self, params: dict, model) -> list:
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        spec = getattr(model, "spec", None)
        key = (tuple(shapes.items()), getattr(spec, "kind", None))
        if self._plan[0] != key:
            hp = self.hyperparameters
            total = sum(math.prod(s) for s in shapes.values())
            if hp["preconditioner"] == "dense" and total > hp["max_dense"]:
                raise ConfigError(
                    f"optimizer 'psgd': the dense preconditioner needs an N x N factor and the "
                    f"model has N = {total} parameters, more than max_dense = "
                    f"{hp['max_dense']} ({8 * total * total / 2**20:.0f} MiB in float64, and "
                    f"O(N^2) work per step); use preconditioner='kron' or raise max_dense")
            self._plan = (key, plan_blocks(shapes, hp["preconditioner"], spec))
        return self._plan[1]

    def _factors(self, blocks, dtype) -> dict:
        """``state["Q"]``, created at the first step (``q_scale`` times identities, of the
        parameters' ``dtype``) and checked against the blocks after a resume."""
        xp = backend.get_xp()
        if "Q" not in self.state:
            s = self.hyperparameters["q_scale"]
            self.state["Q"] = {
                b.name: [(s if b.kind == "dense" else math.sqrt(s))
                         * xp.eye(shape[0], dtype=dtype) for shape in b.factor_shapes]
                for b in blocks}
        factors = self.state["Q"]
        want = {b.name: [tuple(s) for s in b.factor_shapes] for b in blocks}
        have = {k: [tuple(q.shape) for q in v] for k, v in factors.items()}
        if have != want:
            raise ConfigError(f"optimizer 'psgd': the preconditioner factors in its state "
                              f"{have} do not fit this model's blocks {want}")
        return factors

    def _due(self) -> bool:
        hp, k = self.hyperparameters, self.steps - 1  # 0-based step, as the demos count
        if hp["precond_lr"] == 0:
            return False
        gap = max(len(str(k + 1)) - 1, 1) if hp["update_schedule"] == "log" \
            else hp["update_every"]
        return k % gap == 0

    # ------------------------------------------------------------------ one update
    def _pair(self, params, grads, closure, gvp):
        """(dtheta, dg, cost units) of this step."""
        hp = self.hyperparameters
        shapes = {k: tuple(v.shape) for k, v in params.items()}
        if hp["curvature"] == "gauss-newton":
            # drawn in the parameters' dtype (a float32 draw costs half); exact G dtheta needs
            # no float64
            dtype = next(iter(params.values())).dtype
            dtheta = draw_perturbation(shapes, hp["noise_seed"], self.steps, 1.0, dtype)
            return (*gauss_newton_pair(gvp, params, dtheta), COST_UNITS["gvp"])
        dtheta = draw_perturbation(shapes, hp["noise_seed"], self.steps, math.sqrt(EPS))
        is64 = all(p.dtype == F64 for p in params.values())
        if hp["reuse_gradient"] and not is64:
            raise ConfigError("optimizer 'psgd': reuse_gradient needs float64 training "
                              "(train.dtype = 'float64'): the float32 gradient cannot serve "
                              "as g(theta) of a float64 finite difference")
        try:
            dtheta, dg = finite_difference_pair(closure, params, dtheta,
                                                grads if hp["reuse_gradient"] else None)
        except ConfigError as exc:
            if is64:
                raise
            raise ConfigError(
                "optimizer 'psgd': curvature='finite-difference' evaluates the gradient at "
                "float64 parameters (dtheta ~ N(0, 2^-52) is lost to rounding in float32), "
                "and this run's closure cannot (its batch is "
                f"{next(iter(params.values())).dtype}); use train.dtype = 'float64', or "
                "curvature = 'gauss-newton'") from exc
        units = COST_UNITS["gradient"] * (1 if hp["reuse_gradient"] else 2)
        return dtheta, dg, units

    def _update(self, params, grads, *, batch, model=None, closure=None, gvp=None, **_):
        xp = backend.get_xp()
        hp = self.hyperparameters
        blocks = self._blocks(params, model)
        factors = self._factors(blocks, next(iter(params.values())).dtype)
        dtype = factors[blocks[0].name][0].dtype
        metrics = {"cost_D": 0.0, "cost_I": 0.0, "q_updated": 0.0}
        terms = None
        if self._due():
            dtheta, dg, units = self._pair(params, grads, closure, gvp)
            terms = []
            for b in blocks:
                q = factors[b.name]
                if b.kind == "kron":
                    *q, t = update_kron(q[0], q[1], b.gather(dtheta, dtype),
                                        b.gather(dg, dtype), hp["precond_lr"])
                else:
                    q0, t = update_dense(q[0], b.gather(dtheta, dtype), b.gather(dg, dtype),
                                         hp["precond_lr"])
                    q = [q0]
                factors[b.name] = list(q)
                terms.append(t)
            terms = xp.stack(terms).sum(axis=0)
            metrics.update(cost_D=units * batch.B, cost_I=units, q_updated=1.0)

        direction = {}
        for b in blocks:
            q, g = factors[b.name], b.gather(grads, dtype)
            b.scatter(precondition_kron(q[0], q[1], g) if b.kind == "kron"
                      else precondition_dense(q[0], g), direction)
        pg2 = sum(xp.vdot(d, d) for d in direction.values())
        g2 = sum(xp.vdot(g, g) for g in grads.values())
        scale = xp.ones((), dtype=dtype)
        if hp["step_clip"] > 0:
            scale = xp.minimum(scale, hp["step_clip"] / (xp.sqrt(pg2) + TINY))
        step = hp["lr"] * scale
        for name, p in params.items():
            d = direction[name]  # a fresh array (P g of its block), so scaled in place
            d *= step
            p -= d.astype(p.dtype, copy=False)

        report = [xp.asarray(a, dtype=F64) for a in (pg2, g2, scale)]
        if terms is not None:
            report += [xp.asarray(terms[0], dtype=F64), xp.asarray(terms[1], dtype=F64)]
        values = backend.to_host(xp.stack(report)).tolist()
        pg2, g2, scale = values[:3]
        metrics["precond_gain"] = math.sqrt(pg2 / g2) if g2 > 0 else 1.0
        metrics["step_scale"] = scale
        if terms is not None:
            self.state["fit_ratio"] = values[3] / values[4] if values[4] > 0 else 1.0
        if "fit_ratio" in self.state:
            metrics["fit_ratio"] = float(self.state["fit_ratio"])
        return metrics


__all__ = ["Block", "EPS", "PSGD", "draw_perturbation", "finite_difference_pair",
           "gauss_newton_pair", "plan_blocks", "precondition_dense", "precondition_kron",
           "update_dense", "update_kron"]
