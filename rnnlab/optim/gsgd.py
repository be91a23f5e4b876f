"""G-SGD: SGD in the path space of a ReLU RNN (``path-space-rnn-gsgd.md`` Section 4, Algorithms
1-2, App. B; ``optimizers.md`` 2.2-2.7).

Shapes: n_in inputs, d hidden layers of equal width H, K = n_out outputs; weight matrices are
stored (out, in), ``W[j, k]`` is the edge k -> j.

**Skeleton and basis paths.** The Skeleton Method (Algorithm 1 with the index fix,
:func:`rnnlab.paths.basis.algorithm1_masks` via :meth:`~rnnlab.paths.basis.Skeleton.cyclic`)
gives one skeleton chain per unit j,

    input (j mod n_in) -a_j-> h1[j] -c2_j-> h2[j] -> ... -cd_j-> hd[j] -b_j-> output (j mod K),

with ``a_j = layer1.W_in[j, j mod n_in]`` (the only skeleton weight G-SGD changes), the fixed
inter-layer weights ``cl_j = layer{l}.W_in[j, j]`` (l = 2..d) and the fixed out-weights
``b_j = out.W[j mod K, j]``. The basis paths (:class:`rnnlab.paths.basis.BasisPaths`) are one
all-skeleton path per chain, ``v_s(j) = a_j c2_j ... cd_j b_j``, and one path per other edge
e = u -> w (non-skeleton W_in / out.W entries, every W_rec entry, every bias): ``v_e = A_u w_e B_w``
with ``A_u`` the product of skeleton weights from an input to u (1 for an input or the bias node)
and ``B_w`` that from w to an output (1 for an output).

**The update** (``update="derived"``, the default) is one SGD step on the basis-path values with
every fixed skeleton weight held constant, ``v <- v - lr dL/dv``, written back into the weights in
closed form (``optimizers.md`` 2.3 and 2.5; every quantity from the old weights, then assigned):

    S_j  = sum of w_e G_e over the non-skeleton edges e leaving any node of chain j
           (layer{l}.W_rec[:, j], off-diagonal layer{l+1}.W_in[:, j], non-skeleton out.W[:, j])
    R_j  = 1 - lr (G_{a_j} - S_j / a_j) / (a_j C_j^2),    C_j = c2_j ... cd_j b_j
    a_j  <- a_j R_j                                        (other skeleton weights unchanged)
    w_e  <- (w_e - lr G_e / (A_u^2 B_w^2)) / R_{chain(u)}  (every non-skeleton edge u -> w;
                                                            R = 1 when u is an input or the bias)

``dL/dv_e = G_e / (A_u B_w)`` (inverse chain rule, App. B eq. 15) and
``dL/dv_s(j) = (G_{a_j} - S_j / a_j) / C_j`` (App. B eq. 16), so ``R_j`` is the ratio
``v_s(j)_new / v_s(j)_old`` (eq. 17) and the new weights reproduce ``v - lr dL/dv`` **exactly**
(not to first order in lr): the map v -> weights with the skeleton weights fixed is a
reparametrisation, and the formulas are its exact inverse. ``tests/test_gsgd.py`` checks this
against finite differences of the loss reparametrised by basis-path values through
:meth:`~rnnlab.paths.basis.BasisPaths.weights_from_values`, for 1-3 layers, biases on and off.

**Biases** (``optimizers.md`` 2.6): a bias is the edge from the bias node, an input node that is
never on a skeleton, so ``layer{l}.b[j] <- b - lr G / B_{h_l[j]}^2`` (no division by R) and
``out.b`` takes a plain SGD step (B = 1 at an output).

**Stacked layers** need equal widths H_1 = ... = H_d: then the cyclic skeleton is d-long chains
and the rule above holds (``optimizers.md`` 2.5). With unequal widths the cyclic in-mask and
out-mask of an inter-layer matrix differ (unit k of layer i-1 sends its skeleton out-edge to
unit k mod H_i, whose skeleton in-edge comes from unit (k mod H_i) mod H_{i-1}), so the skeleton
is not a set of disjoint chains, a skeleton path is no longer one per chain and a fixed
inter-layer weight can be some unit's in-edge without being on its chain; the closed form above
does not apply and :class:`GSGD` raises a ConfigError naming the widths. (The basis itself
still exists, ``rnnlab.paths.basis``; a general rule would solve the inverse chain rule on that
skeleton, not implemented.)

**The ratio guard.** R_j <= 0 would flip the sign of the skeleton path (and of every weight that
is divided by R_j), and R_j near 0 blows the divided weights up; neither paper nor official code
guards it (``optimizers.md`` 2.7). ``ratio_policy``:

* ``"clip"`` (default): R_j <- r_min for the chains with R_j <= r_min: v_s(j) shrinks by the
  factor r_min (the most one step may shrink it) and every other basis path takes its SGD step;
* ``"reject"``: R_j <- 1 for those chains: v_s(j) keeps its value this step, every other basis
  path (including those through chain j) still takes its exact SGD step. Per chain rather than
  the whole step, because one chain with a large gradient would otherwise stall all training;
  the decision depends on R_j only, a path-space quantity, so it keeps the rescaling invariance
  (so does "clip");
* ``"none"``: no guard (the paper and the official code).

Either guarded update is still exact SGD in every basis-path coordinate but the guarded skeleton
paths (checked in the tests).

The step metrics report ``ratio_hits``, the number of chains with R_j <= r_min (or R_j not
finite) whatever the policy, and ``ratio_min``, the smallest R_j before the guard (the trainer
averages both over its logging window).

**Algorithm 2 as printed** (``update="printed"``), kept for comparison. It is written for one
layer without biases and assumes every fixed skeleton out-weight b_j is +1 (item 1 of
``optimizers.md`` 2.4: it has no b factor anywhere; App. B eq. 11 divides by p_s0 where the
product of the other weights on the path is meant); it can be exact only when |b_j| = 1 (the
official code arranges b = +1 by overwriting every skeleton entry with 1 at initialisation, see
:func:`skeleton_init`), and as printed it is not exact even then. Its reading here, line by
line:

* line 6, ``G_{W^i}`` and ``(W^i . M^i).sum(0)`` (item 3): the skeleton entries of G_in and W_in
  reduced per *hidden unit*, ``(G^i * M^i).sum(1)``, ``(W^i * M^i).sum(1)`` (the printed sum(0)
  gives one entry per input and does not combine with the (H,) sums next to it);
* line 6, ``(W^o . G^o).sum(0)`` (item 2): kept as printed, *unmasked*: it includes the skeleton
  out-edge's own term b_j G_out[j mod K, j], which is not a path leaving the chain;
* line 6, ``G_{p_ns} = G_W / W`` (item 4): kept as printed; the path gradient is G_W divided by
  the product of the *other* weights on the path (a_j b_j for out.W, a_{j'} b_j for W_rec);
* line 7: ``R = 1 - lr G_ps / a``;
* line 9 (item 5): ``W^i . diag(R)`` cannot multiply (H, n_in) by (H, H); read as the skeleton
  entries scaled by R_j (rows), the others ``W^i - lr G^i``;
* line 10 (item 6): ``/W^i`` read as the skeleton in-weight a of the *source* hidden unit (column
  of out.W and W_rec) and ``/diag(R)`` as dividing those columns by R; skeleton out.W entries
  kept;
* biases (not in Algorithm 2): plain SGD steps.

``update="printed-fixed"`` is the same with items 2-6 fixed (masked W_out sum, path gradients
G/a) and only item 1 left: the official code's one-layer rule. It equals ``"derived"`` exactly
when every |b_j| = 1 (in this reading the sign drops out: only b_j^2 enters the exact rule) and
differs otherwise; ``"printed"`` differs from basis-path SGD even at b = +1 (items 2 and 4, each
alone). Neither is invariant under node-wise rescalings, which move |b_j| away from 1. Both
refuse stacked models. (All of this is checked in ``tests/test_gsgd.py``.)

**Skeleton weights = +1.** The official code overwrites every skeleton entry with 1 at
initialisation. That changes the function (no rescaling can change the *signs* of the fixed
skeleton weights), so rnnlab never does it silently: :func:`skeleton_init` does it to a parameter
dict, for code that builds its own model; the option ``skeleton_init=True`` does it inside a run
(a config cannot call a function): the optimizer's first step overwrites the skeleton entries and
makes no update, because that step's gradient belongs to the function before the overwrite and
applying it would not be a G-SGD step of the function being trained. The flag that it was done is
checkpointed, so a resumed run does not redo it. The derived update is exact without it (and its
trajectory does not depend on the magnitudes of the fixed weights, only on their signs), but the
starting point matters: a weight step is lr G / (A_u^2 B_w^2), so a skeleton weight near 0 makes
the step through its chain explode. From rnnlab's random initialisations (input and output
weights U(-0.01, 0.01) for "identity", Glorot otherwise) some |b_j| is ~1e-4 or smaller and the
first step already overflows (seen: the adding problem, H = 100, lr = 1e-6 and 1e-3: W_rec
entries of 1e7 after one step, NaN loss at the second; the ratio guard cannot help, it only
bounds R). With ``skeleton_init`` every A and B is +-1 at the start and the same runs stay finite.

**Cost.** Skeleton index arrays are built once per (spec, backend) and cached (not checkpointed:
they follow from the spec); a step is O(#weights) elementwise work on the active backend, plus
one host transfer of the two metric scalars. Skeleton weights must be nonzero (a zero one makes
the basis degenerate); the first step of an optimizer on a model checks this once on the host.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import backend
from ..errors import ConfigError
from ..options import Option
from .base import Optimizer

UPDATES = ("derived", "printed", "printed-fixed")
RATIO_POLICIES = ("clip", "reject", "none")

#: Planted errors for the tests (not options): each reproduces one printed error inside the
#: otherwise correct derived update; ``tests/test_gsgd.py`` shows what each breaks.
PLANTS = {
    "unmasked_out_sum": "S_j includes the skeleton out-edge's term b_j G_out (2.4 item 2)",
    "grad_over_weight": "the path gradient of a non-skeleton edge is G / w instead of "
                        "G / (A_u B_w) (2.4 item 4)",
}


# ----------------------------------------------------------------------------- skeleton plan
@dataclasses.dataclass(frozen=True)
class SkeletonPlan:
    """Where the skeleton weights sit, as index arrays on one backend (built once per spec).

    layers : d
    width : H
    units : (H,) int, 0..H-1 (row of a_j in layer1.W_in; column of b_j in out.W; both indices of
        c_j on the diagonal of layer{l}.W_in)
    in_cols : (H,) int, j mod n_in (column of a_j in layer1.W_in)
    out_rows : (H,) int, j mod K (row of b_j in out.W)
    """

    layers: int
    width: int
    units: object
    in_cols: object
    out_rows: object


_PLANS: dict = {}


def _require_spec(model_or_spec, what: str):
    from ..paths.support import POSITIVELY_HOMOGENEOUS, require_elman
    return require_elman(model_or_spec, what=what, activations=POSITIVELY_HOMOGENEOUS)


def skeleton_plan(spec) -> SkeletonPlan:
    """The cached :class:`SkeletonPlan` of ``spec`` on the active backend.

    Built from :meth:`rnnlab.paths.basis.Skeleton.cyclic` (Algorithm 1 with the index fix on
    every layer) and checked to be disjoint chains; refuses unequal widths.
    """
    spec = _require_spec(spec, "G-SGD")
    key = (spec, backend.backend_name())
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    widths = tuple(spec.hidden)
    if len(set(widths)) != 1:
        raise ConfigError(f"G-SGD's closed-form update needs equal hidden widths (one skeleton "
                          f"chain input -> h1[j] -> ... -> hd[j] -> output per unit, "
                          f"optimizers.md 2.5); got hidden widths {widths}")
    from ..paths.basis import Skeleton
    skeleton = Skeleton.cyclic(spec)
    if not skeleton.is_chain:  # cannot happen for equal widths; a guard for future skeletons
        raise ConfigError(f"G-SGD needs a skeleton of disjoint chains; got {skeleton}")
    masks = skeleton.matrix_masks()
    H = widths[0]
    units = np.arange(H)
    in_cols = np.argmax(masks["layer1.W_in"], axis=1)
    out_rows = np.argmax(masks["out.W"], axis=0)
    for i in range(2, spec.layers + 1):
        if not np.array_equal(masks[f"layer{i}.W_in"], np.eye(H, dtype=np.int64)):
            raise ConfigError(f"G-SGD needs identity skeleton masks between layers; layer{i} "
                              f"differs")
    xp = backend.get_xp()
    plan = SkeletonPlan(spec.layers, H, xp.asarray(units), xp.asarray(in_cols),
                        xp.asarray(out_rows))
    _PLANS[key] = plan
    return plan


def skeleton_init(params: dict, spec, value: float = 1.0) -> dict:
    """Overwrite every skeleton entry of ``params`` with ``value``, in place, as the official
    G-SGD code does at initialisation (``optimizers.md`` 2.4 item 1).

    The entries are those of Algorithm 1's masks (with the index fix) on every layer:
    ``layer1.W_in[j, j mod n_in]``, the skeleton entries of ``layer{i}.W_in`` for i >= 2 (the
    diagonal for equal widths) and ``out.W[j mod K, j]``. This **changes the function** (the
    signs of the fixed skeleton weights cannot be changed by a rescaling), so call it when the
    model is initialised, before training. Any widths are accepted (the official code does it for
    any widths); G-SGD itself needs equal widths.

    Parameters
    ----------
    params : dict name -> array (the active backend), updated in place
    spec : ElmanSpec (or a model)
    value : nonzero float

    Returns
    -------
    params
    """
    spec = _require_spec(spec, "skeleton_init")
    if not (isinstance(value, (int, float)) and np.isfinite(value) and value != 0):
        raise ConfigError(f"skeleton_init value must be a finite nonzero number; got {value!r}")
    from ..paths.basis import Skeleton
    xp = backend.get_xp()
    for name, mask in Skeleton.cyclic(spec).matrix_masks().items():
        if name not in params:
            raise ConfigError(f"params has no {name!r}; expected the keys of "
                              f"{list(spec.param_shapes())}")
        rows, cols = np.nonzero(mask)
        params[name][xp.asarray(rows), xp.asarray(cols)] = value
    return params


# ----------------------------------------------------------------------------- the updates
def _guard(xp, R, policy: str, r_min: float):
    """(R used for the update, metric vector [hits, min R]) for the raw ratios R (H,)."""
    ok = (R > r_min) & (R < xp.inf)
    metrics = xp.empty(2, dtype=R.dtype)
    metrics[0] = (~ok).sum()
    metrics[1] = R.min()
    if policy == "clip":
        R = xp.where(ok, R, R.dtype.type(r_min))
    elif policy == "reject":
        R = xp.where(ok, R, R.dtype.type(1))
    return R, metrics


def _colsum(xp, W, G):
    """sum_i W[i, j] G[i, j], (cols,)."""
    return xp.einsum("ij,ij->j", W, G)


def _scaled_step(xp, W, G, row, col, inv_R, buf):
    """``W <- (W - G * row[:, None] * col[None, :]) * inv_R[None, :]`` in place, through the
    scratch array ``buf`` (shape of W); ``row`` / ``col`` / ``inv_R`` may be None (1)."""
    if row is None:
        xp.multiply(G, col[None, :], out=buf)
    else:
        xp.multiply(G, row[:, None], out=buf)
        if col is not None:
            buf *= col[None, :]
    W -= buf
    if inv_R is not None:
        W *= inv_R[None, :]


def derived_update(params: dict, grads: dict, spec, lr: float, *, ratio_policy: str = "clip",
                   r_min: float = 0.1, plant=None, work: dict | None = None):
    """One G-SGD step on ``params`` in place (the closed form of the module docstring).

    Parameters
    ----------
    params, grads : dicts with the keys of ``spec.param_shapes()`` (active backend)
    spec : ElmanSpec with equal hidden widths
    lr : float
    ratio_policy : {"clip", "reject", "none"}
    r_min : float in (0, 1)
    plant : None or a key of :data:`PLANTS` (tests only)
    work : dict, optional
        Scratch arrays by parameter name, reused across calls (filled on first use); they hold
        no state between steps.

    Returns
    -------
    (2,) device array: [number of chains with R <= r_min or R not finite, min R].
    """
    xp = backend.get_xp()
    plan = skeleton_plan(spec)
    d, units = plan.layers, plan.units
    work = {} if work is None else work

    def scratch(name):
        buf = work.get(name)
        W = params[name]
        if buf is None or buf.shape != W.shape or buf.dtype != W.dtype or type(buf) is not \
                type(W):
            buf = work[name] = xp.empty_like(W)
        return buf

    W1, G1 = params["layer1.W_in"], grads["layer1.W_in"]
    Wo, Go = params["out.W"], grads["out.W"]
    # --- every quantity from the old weights ---
    a = W1[units, plan.in_cols]                 # (H,) copies (integer indexing)
    g_a = G1[units, plan.in_cols]
    b = Wo[plan.out_rows, units]
    c = {l: params[f"layer{l}.W_in"][units, units] for l in range(2, d + 1)}
    A = {1: a}                                  # A[l]: skeleton product input -> h_l[j]
    for l in range(2, d + 1):
        A[l] = A[l - 1] * c[l]
    B = {d: b}                                  # B[l]: skeleton product h_l[j] -> output
    for l in range(d - 1, 0, -1):
        B[l] = c[l + 1] * B[l + 1]
    S = _colsum(xp, Wo, Go)
    if plant != "unmasked_out_sum":
        S -= b * Go[plan.out_rows, units]
    for l in range(1, d + 1):
        S += _colsum(xp, params[f"layer{l}.W_rec"], grads[f"layer{l}.W_rec"])
        if l >= 2:
            Wl, Gl = params[f"layer{l}.W_in"], grads[f"layer{l}.W_in"]
            S += _colsum(xp, Wl, Gl)
            S -= c[l] * Gl[units, units]
    # lr / B^2 per target row and 1 / A^2 per source column: the step term lr G / (A_u^2 B_w^2)
    row = {l: lr / (B[l] * B[l]) for l in range(1, d + 1)}
    col = {l: 1 / (A[l] * A[l]) for l in range(1, d + 1)}
    # R = 1 - lr (G_a - S / a) / (a C^2) = 1 - (a G_a - S) (lr / C^2) (1 / a^2), C = B[1]
    R = g_a * a
    R -= S
    R *= row[1]
    R *= col[1]
    R = 1 - R
    R, metrics = _guard(xp, R, ratio_policy, r_min)
    inv_R = 1 / R
    bias_row = row
    if plant == "grad_over_weight":             # lr G / (w A_u B_w): G / w times ...
        row = {l: lr / B[l] for l in range(1, d + 1)}
        col = {l: 1 / A[l] for l in range(1, d + 1)}
        grads = {k: (g / params[k] if k.endswith((".W_in", ".W_rec", ".W")) else g)
                 for k, g in grads.items()}
        G1, Go = grads["layer1.W_in"], grads["out.W"]

    # --- assign: layer-1 input (source: inputs, R = 1; skeleton entries a R) ---
    _scaled_step(xp, W1, G1, row[1], None, None, scratch("layer1.W_in"))
    W1[units, plan.in_cols] = a * R
    for l in range(1, d + 1):
        name = f"layer{l}.W_rec"
        _scaled_step(xp, params[name], grads[name], row[l], col[l], inv_R, scratch(name))
        if l >= 2:
            name = f"layer{l}.W_in"
            _scaled_step(xp, params[name], grads[name], row[l], col[l - 1], inv_R,
                         scratch(name))
            params[name][units, units] = c[l]
        if spec.bias:
            bl = params[f"layer{l}.b"]
            bl -= grads[f"layer{l}.b"] * bias_row[l]             # lr / B^2, no R
    _scaled_step(xp, Wo, Go, None, lr * col[d], inv_R, scratch("out.W"))   # outputs: B = 1
    Wo[plan.out_rows, units] = b
    if spec.bias:
        params["out.b"] -= lr * grads["out.b"]
    return metrics


def printed_update(params: dict, grads: dict, spec, lr: float, *, ratio_policy: str = "clip",
                   r_min: float = 0.1, mask_out_sum: bool = False,
                   path_gradient: str = "weight"):
    """Algorithm 2 of ``path-space-rnn-gsgd.md`` for one layer, in place (see the module
    docstring for the reading of each line).

    ``mask_out_sum=False, path_gradient="weight"`` is the printed algorithm (items 2 and 4 as
    printed); ``True, "path"`` fixes them (``update="printed-fixed"``); the mixed settings isolate
    one item each (used by the tests).

    Returns the metric vector of :func:`derived_update`.
    """
    if spec.layers != 1:
        raise ConfigError(f"Algorithm 2 as printed is for one hidden layer; got "
                          f"{spec.layers} layers (use update='derived')")
    if path_gradient not in ("weight", "path"):
        raise ConfigError(f"path_gradient must be weight or path; got {path_gradient!r}")
    xp = backend.get_xp()
    plan = skeleton_plan(spec)
    units = plan.units
    Wi, Gi = params["layer1.W_in"], grads["layer1.W_in"]
    Wr, Gr = params["layer1.W_rec"], grads["layer1.W_rec"]
    Wo, Go = params["out.W"], grads["out.W"]
    a = Wi[units, plan.in_cols]                 # (W^i * M^i).sum(1)  (item 3)
    g = Gi[units, plan.in_cols]                 # (G^i * M^i).sum(1)  (item 3)
    b = Wo[plan.out_rows, units]
    num = _colsum(xp, Wr, Gr) + _colsum(xp, Wo, Go)
    if mask_out_sum:                            # item 2 fixed
        num = num - b * Go[plan.out_rows, units]
    G_ps = g - num / a                          # line 6
    if path_gradient == "weight":               # line 6, item 4 as printed: G_W / W
        G_po, G_pr = Go / Wo, Gr / Wr
    else:                                       # dv/dw with b = 1: a of the source unit
        G_po, G_pr = Go / a[None, :], Gr / a[None, :]
    R = 1 - lr * G_ps / a                       # line 7
    R, metrics = _guard(xp, R, ratio_policy, r_min)
    inv_R = 1 / R
    # line 9 (item 5): non-skeleton W^i - lr G^i, skeleton entries a R
    Wi -= lr * Gi
    Wi[units, plan.in_cols] = a * R
    # line 10 (item 6): columns divided by the source's a and by R; skeleton out.W kept
    Wo -= (lr * G_po) * (1 / a)[None, :]
    Wo *= inv_R[None, :]
    Wo[plan.out_rows, units] = b
    Wr -= (lr * G_pr) * (1 / a)[None, :]
    Wr *= inv_R[None, :]
    if spec.bias:                               # not in Algorithm 2: plain SGD
        params["layer1.b"] -= lr * grads["layer1.b"]
        params["out.b"] -= lr * grads["out.b"]
    return metrics


# ----------------------------------------------------------------------------- the optimizer
class GSGD(Optimizer):
    """G-SGD (``path-space-rnn-gsgd.md`` Algorithm 2, derived form of ``optimizers.md`` 2.3/2.5;
    see the module docstring :mod:`rnnlab.optim.gsgd` for the update, biases, stacked layers,
    the ratio guard, the printed variant and skeleton initialisation).

    Options: ``lr`` (> 0, default 0.01); ``update`` ("derived" | "printed" | "printed-fixed",
    default "derived"); ``ratio_policy`` ("clip" | "reject" | "none", default "clip");
    ``r_min`` (in (0, 1), default 0.1); ``skeleton_init`` (default True: the first step sets
    every skeleton entry to +1 and makes no update, as the official code does at
    initialisation; with False, G-SGD starts from the weights as drawn, and from rnnlab's
    U(-0.01, 0.01) input and output weights its first steps explode, since a weight's step
    scales like 1 / (product of the skeleton weights on its basis path)^2).

    Needs ``model`` (its spec: a stacked Elman RNN with ReLU or identity activation and equal
    hidden widths). Step metrics: ``ratio_hits``, ``ratio_min`` (``skeleton_init`` on the step
    that overwrites the skeleton).
    """

    name = "gsgd"
    options = (
        Option.number("lr", 0.01, "learning rate", minimum=0),
        Option.choice("update", "derived", "derived: exact SGD on basis-path values; printed: "
                      "Algorithm 2 as printed; printed-fixed: Algorithm 2 with items 2-6 of "
                      "optimizers.md 2.4 fixed (exact only with skeleton out-weights +-1)",
                      UPDATES),
        Option.choice("ratio_policy", "clip", "chains whose skeleton-path ratio R <= r_min: "
                      "clip R to r_min, reject (R = 1: that path keeps its value this step), "
                      "or none", RATIO_POLICIES),
        Option.number("r_min", 0.1, "smallest ratio R of a skeleton path per step, in (0, 1)",
                      minimum=0, below=1),
        Option.flag("skeleton_init", True, "first step: set every skeleton weight to +1 (as "
                    "the official code does at init; changes the function once) and make no "
                    "update; off, rnnlab's small input and output weights make G-SGD's first "
                    "steps explode (steps scale like 1 / skeleton weight^2)"),
    )
    needs = frozenset({"model"})

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._checked = set()  # specs whose skeleton weights were checked nonzero (host, once)
        self._work = {}        # scratch arrays of the update (no state: never checkpointed)

    def _check_model(self, model, params):
        """The model's spec, refused unless G-SGD applies to it; on the first step with a spec,
        a host check (once) that its skeleton weights are nonzero."""
        spec = getattr(model, "spec", model)
        try:
            if spec in self._checked:
                return spec
        except TypeError:  # not hashable: not an ElmanSpec, refused below
            pass
        spec = _require_spec(spec, "G-SGD")
        plan = skeleton_plan(spec)  # refuses unequal widths
        if self.hyperparameters["update"] != "derived" and spec.layers != 1:
            raise ConfigError(f"update={self.hyperparameters['update']!r} (Algorithm 2) is for "
                              f"one hidden layer; got {spec.layers} layers (use "
                              f"update='derived')")
        units = backend.to_host(plan.units)
        entries = [("layer1.W_in", units, backend.to_host(plan.in_cols))]
        entries += [(f"layer{l}.W_in", units, units) for l in range(2, spec.layers + 1)]
        entries += [("out.W", backend.to_host(plan.out_rows), units)]
        for name, rows, cols in entries:
            w = backend.to_host(params[name])[rows, cols]
            zero = np.flatnonzero(w == 0)
            if zero.size:
                where = ", ".join(f"[{rows[k]}, {cols[k]}]" for k in zero[:5])
                raise ConfigError(f"G-SGD needs nonzero skeleton weights (a zero one makes the "
                                  f"basis paths degenerate); {name}{where} = 0")
        self._checked.add(spec)
        return spec

    def _update(self, params, grads, *, model, **needs):
        hp = self.hyperparameters
        if hp["skeleton_init"] and not self.state.get("skeleton_initialised", False):
            spec = _require_spec(model, "G-SGD")
            skeleton_plan(spec)  # refuses unequal widths before anything is written
            skeleton_init(params, spec, 1.0)
            self.state["skeleton_initialised"] = True
            return {"skeleton_init": 1.0}
        spec = self._check_model(model, params)
        if hp["update"] == "derived":
            metrics = derived_update(params, grads, spec, hp["lr"],
                                     ratio_policy=hp["ratio_policy"], r_min=hp["r_min"],
                                     work=self._work)
        else:
            fixed = hp["update"] == "printed-fixed"
            metrics = printed_update(params, grads, spec, hp["lr"],
                                     ratio_policy=hp["ratio_policy"], r_min=hp["r_min"],
                                     mask_out_sum=fixed, path_gradient="path" if fixed
                                     else "weight")
        hits, r_low = (float(v) for v in backend.to_host(metrics))
        return {"ratio_hits": hits, "ratio_min": r_low}


__all__ = ["GSGD", "PLANTS", "RATIO_POLICIES", "SkeletonPlan", "UPDATES", "derived_update",
           "printed_update", "skeleton_init", "skeleton_plan"]
