"""Path-SGD and Path-Adam for stacked ReLU RNNs (``path-sgd-relu-rnn.md`` Sections 4-5).

Shapes: T steps (of the update's batch or truncated-BPTT chunk), B batch, H_i hidden units in
layer i. kappa is a dict keyed by parameter name, like the gradient, of float64 arrays of the
active backend.

Path-SGD (Eq. 8)::

    p_i <- p_i - lr * g_i / (kappa_i + kappa_eps)

with kappa_i = 1/2 d^2 gamma^2 / d p_i^2 of the path regulariser gamma^2 (Eq. 2) of the network
unrolled over the batch's T steps, summed over the output steps the loss scores in this batch.
By default kappa = kappa^(1) (Lemma 1, Eq. 9; Theorem 3: one pass of the squared network), the
variant the paper trains with (Section 5.1); ``second_term=True`` adds the corrected kappa^(2)
of W_rec (see :mod:`rnnlab.paths.norms` for the papers' errors in it), at O(T H^3) per layer.

Path-Adam (Section 5.3, "the path-SGD gradient as input to the Adam optimizer"): the direction
g / (kappa + kappa_eps) is handed to :class:`rnnlab.optim.adam.Adam`'s update unchanged.

Which steps score (``model.spec.outputs`` and ``batch.mask``)
--------------------------------------------------------------
* "last": only step T of the batch (under truncated BPTT only the last chunk is scored, and T is
  that chunk's length);
* "every" or "masked": every step, or, when the batch has a (T, B) mask, the steps where the mask
  scores anything (mask != 0 for some sequence). The per-step indicator is computed on the device
  and enters the squared network as the weight of each step's output (dg/dy_t), so nothing goes
  to the host. (The loss reads the mask the same way for "every" and "masked", so kappa follows
  the steps that are scored, not the outputs the model emits.)

A carried state (truncated BPTT: the previous chunk's final state; stream tasks) does not enter
kappa: the squared network of a chunk starts from h~_0 = 0, the paper's network of T steps, so
kappa depends on the weights, T and the scored steps only, never on the data. The chunk's
gradient also flows from the carried state, along paths kappa does not count; that keeps the
step covariant (g' = g / s, kappa' = kappa / s^2 still hold), except where kappa_i = 0 while
g_i != 0: W_rec entries whose every path in the chunk starts at the carried state (all of W_rec
in a 1-step chunk). There Path-SGD takes no step (the direction is multiplied by kappa > 0,
branch-free, on W_rec when a state is carried): g / eps would be a step of 1e30 g. (Counting the
state as an input with squared weight mean_b h_0^2, the recipe for a learned h_0 in
``shared/notes/optimizers.md`` 1.5, is covariant too but makes kappa data-dependent, and its steps
grow like 1 / h_0 on nearly-dead units: in a trial a W_rec entry went from 0.7 to 3600 in one
step.)

The guard ``kappa_eps``
-----------------------
kappa_i is a sum of products of squared weights, >= 0. It is 0 exactly when every path through
p_i carries a zero weight, or p_i is on no path (W_rec when T = 1); then g_i = 0 too (every term
of the gradient carries one of those weights; for the carried state see above) and the step must
be 0, not 0 / 0. kappa_eps > 0 turns that 0 / 0 into 0; any positive value does. It also
multiplies every other step by kappa / (kappa + eps), which breaks the rescaling invariance by a
relative eps / kappa, so it must sit far below every kappa that occurs. kappa is float64 (it
scales like powers of W~_rec and would under- or overflow float32 for long T), which leaves room
for the default 1e-30: the smallest entries measured at rnnlab's initialisations are 3e-15 (a
100-unit IRNN on the adding problem, T = 100, U(-0.01, 0.01) input and output weights: W_rec
entries) and 8e-17 (3 such layers), so eps / kappa <= 1e-14. (1e-12, the first choice, is 300
times the IRNN's smallest kappa and would have shrunk those steps 300-fold.) It is not a step-size
cap: steps on nearly-dead units are large by design (the geometry says so); clip gradients or
lower lr for that.

Invariance (Definition 1, Theorem 2). For a feasible rescaling T_a (``rnnlab.paths.rescale``),
p' = s p with s > 0 per parameter, the gradient is g' = g / s and kappa' = kappa / s^2, so
g' / kappa' = s g / kappa and the Path-SGD step of p' is s times the step of p: the updated
networks compute the same function, step after step (also with kappa^(1) alone). SGD is not
invariant (its step of p' is g / s). **Path-Adam is not invariant either**: Adam's step
m^ / (sqrt(v^) + eps) is unchanged when its input is multiplied by a constant per coordinate, so
the s that Path-SGD's direction carries cancels; at the first step Path-Adam's update equals
Adam's (lr * sign(g), up to Adam's eps), and later ones differ from Adam's only through the change
of kappa over time. (An invariant Adam-like rule would feed g / sqrt(kappa), which is unchanged
by T_a, to Adam and scale the resulting step by 1 / sqrt(kappa).)

Models: the stacked Elman RNN with a positively homogeneous activation (ReLU; the identity is
allowed, the claims hold for it too); any other model or activation is refused with the
ConfigError of :func:`rnnlab.paths.support.require_elman` at the first step.
"""
from __future__ import annotations

from .. import backend
from .. import params as P
from ..options import Option
from .adam import Adam
from .base import Optimizer

_KAPPA_OPTIONS = (
    Option.flag("second_term", False,
                "add the corrected kappa^(2) of W_rec (O(T H^3) per step; default kappa^(1), "
                "as the paper trains)"),
    Option.number("kappa_eps", 1e-30, "added to kappa before dividing: turns 0/0 into 0 "
                  "(> 0; breaks invariance by eps/kappa)", minimum=0),
)


def scored_step_weights(mask, T: int):
    """(T,) float64 on the active backend: 1 at the steps where the (T, B) ``mask`` scores
    anything, 0 elsewhere (a device reduction, no host round trip)."""
    xp = backend.get_xp()
    return xp.any(mask.reshape(T, -1) != 0, axis=1).astype(xp.float64)


def batch_kappa(spec, params, batch, *, second_term: bool) -> dict:
    """kappa for one update at ``params``: the spec's structure, the batch's T and its scored
    steps (module docstring). A dict keyed by parameter name of new float64 arrays of the active
    backend (the caller may overwrite them)."""
    from ..paths import norms  # here, not at import: `import rnnlab` loads no path machinery
    weights = None
    if spec.outputs != "last" and batch.mask is not None:
        weights = scored_step_weights(batch.mask, batch.T)
    return norms.kappa_device(spec, params, batch.T, second_term=second_term,
                              step_weights=weights)


def kappa_range(kappa: dict) -> dict:
    """``kappa_min`` and ``kappa_max`` over all parameters: device reductions, one transfer of
    two numbers to the host."""
    xp = backend.get_xp()
    lows = xp.stack([k.min() for k in kappa.values()])
    highs = xp.stack([k.max() for k in kappa.values()])
    lo, hi = backend.to_host(xp.stack([lows.min(), highs.max()])).tolist()
    return {"kappa_min": lo, "kappa_max": hi}


def chunk_paths(name: str, kappa, batch):
    """None, or (for W_rec under a carried state) the float mask kappa > 0 of the entries that
    lie on a path of the chunk: the others' gradient comes only from the carried state, and they
    take no step (module docstring)."""
    if batch.state is None or not name.endswith(".W_rec"):
        return None
    xp = backend.get_xp()
    return xp.greater(kappa, 0).astype(kappa.dtype)


class _PathNormalised:
    """What Path-SGD and Path-Adam share: the model check and the direction g / (kappa + eps)."""

    needs = frozenset({"model", "batch"})

    def _directions(self, params, grads, model, batch):
        """(directions, metrics): g / (kappa + kappa_eps) per parameter, float64 arrays of the
        active backend (kappa's own arrays, overwritten), and the step metrics."""
        from ..paths.support import POSITIVELY_HOMOGENEOUS, require_elman
        spec = require_elman(model, activations=POSITIVELY_HOMOGENEOUS,
                             what=f"optimizer {self.name!r} (Path-SGD's kappa, the squared "
                                  f"network of Theorem 3 (path-sgd))")
        hp = self.hyperparameters
        kappa = batch_kappa(spec, params, batch, second_term=hp["second_term"])
        metrics = kappa_range(kappa)
        xp, eps = backend.get_xp(), hp["kappa_eps"]
        for name, k in kappa.items():
            on_path = chunk_paths(name, k, batch)
            k += eps
            xp.divide(grads[name], k, out=k)
            if on_path is not None:
                k *= on_path
        return kappa, metrics


def _norm_ratio(grads: dict, directions: dict) -> float:
    """||g|| / ||g / kappa|| over all parameters (1.0 when the direction is 0)."""
    d = P.global_norm(directions)
    return P.global_norm(grads) / d if d > 0 else 1.0


class PathSGD(_PathNormalised, Optimizer):
    """Path-SGD (``path-sgd-relu-rnn.md`` Eq. 8): p <- p - lr * g / (kappa + kappa_eps).

    Options: ``lr`` (> 0, default 1e-8), ``lr_units`` (default "path"), ``second_term`` (default False: kappa^(1) only),
    ``kappa_eps`` (> 0, default 1e-30; see the module docstring). Needs ``model`` and
    ``batch``. Step metrics: ``kappa_min``, ``kappa_max``.

    With ``lr_units = "path"`` (the default) the rate is in path units, not SGD's, and its
    scale depends on the initialisation and T: at
    rnnlab's default IRNN initialisation (identity W_rec, U(-0.01, 0.01) input and output
    weights) kappa is tiny on some entries and g / kappa reaches 8e8 on W_rec (adding problem,
    T = 100, H = 100): there lr = 1e-3, the middle of the paper's grid {1e-2, 1e-3, 1e-4},
    diverges at once, 1e-7 blew up, and 1e-8 (the default, so that the default run trains) and
    1e-9 trained. The paper's grid was presumably used with a global rescaling such as the
    one-time ratio (sum ||g|| / sum ||g / kappa||^2)^(1/2) of the public feed-forward code
    (bneyshabur/path-sgd); not implemented here, as it is not invariant.

    ``lr_units = "sgd"`` is a convention that lets Path-SGD share SGD's learning-rate grid (the
    paper's {1e-2, 1e-3, 1e-4}, in sweeps and ``rnnlab compare``): the step is
    ``lr * c * g / kappa`` with ``c = ||g|| / ||g / kappa||`` (global norms, the clipped
    gradient) fixed at the first update and kept in the optimizer state (checkpointed), so the
    first step has SGD's norm at the same lr and later steps follow Path-SGD's geometry. The
    constant is computed from the initial weights, so a rescaled network gets another c: runs
    with this convention are invariant to node rescaling only up to that one scalar (the
    direction of every step is still Path-SGD's). Step metric ``lr_scale`` reports c.
    """

    name = "path-sgd"
    options = (Option.number("lr", 1e-8, "learning rate, in the units lr_units names",
                             minimum=0),
               Option.choice("lr_units", "path", "path: lr multiplies g / kappa; sgd: also "
                             "by the constant that gives the first step SGD's norm (shares "
                             "SGD's lr grid; not invariant)", ("path", "sgd")),
               ) + _KAPPA_OPTIONS

    def _update(self, params, grads, *, model, batch, **_):
        directions, metrics = self._directions(params, grads, model, batch)
        lr = self.hyperparameters["lr"]
        if self.hyperparameters["lr_units"] == "sgd":
            if "lr_scale" not in self.state:  # fixed once, at the first update
                self.state["lr_scale"] = _norm_ratio(grads, directions)
            lr *= self.state["lr_scale"]
            metrics["lr_scale"] = self.state["lr_scale"]
        for name, p in params.items():
            d = directions[name]
            d *= lr
            p -= d.astype(p.dtype, copy=False)
        return metrics


class PathAdam(_PathNormalised, Adam):
    """Adam on the path-normalised direction g / (kappa + kappa_eps) (``path-sgd-relu-rnn.md``
    Section 5.3): :class:`Adam`'s update, unchanged, with that direction in place of g.

    Options: Adam's (``lr``, ``beta1``, ``beta2``, ``eps``) and ``second_term``, ``kappa_eps``
    as in :class:`PathSGD`. Slots ``m`` and ``v`` as Adam's (of the direction). Not invariant
    to node rescaling (module docstring).
    """

    name = "path-adam"
    options = Adam.options + _KAPPA_OPTIONS

    def _update(self, params, grads, *, model, batch, **_):
        directions, metrics = self._directions(params, grads, model, batch)
        directions = {name: directions[name].astype(g.dtype, copy=False)
                      for name, g in grads.items()}
        super()._update(params, directions)
        return metrics


__all__ = ["PathAdam", "PathSGD", "batch_kappa", "chunk_paths", "kappa_range",
           "scored_step_weights"]
