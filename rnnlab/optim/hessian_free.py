"""Hessian-free optimisation (truncated Newton with Gauss-Newton curvature) for recurrent nets.

Martens (2010); Martens & Sutskever (2011, "MS11") for RNNs with structural damping; the
algorithmic details the papers leave to their code are digested in
``../shared/notes/optimizers.md`` section 4, which every default below cites.

One update (one trainer step, on a gradient batch of B_g sequences):

1. **Quadratic model** on the curvature batch (the first B_c sequences, ``curvature_batch``)::

       M(d) = g^T d + 1/2 d^T (G + lambda I) d + lambda mu S(d)

   g the trainer's (unclipped) gradient on all B_g sequences, G the Gauss-Newton matrix on the
   curvature batch (:func:`rnnlab.objective.gauss_newton_product`), lambda the Tikhonov damping,
   and S the structural damping: the Gauss-Newton matrix of a penalty on the change of the
   hidden states (MS11's matching-loss form by default; see
   :meth:`rnnlab.models.ElmanRNN.structural_damping`), its R-op of the hidden states injected into
   the Gauss-Newton backward. rnnlab normalises S by the T * B_c positions, like a loss scored
   at every step (the sources do not say how their S is normalised relative to their loss).
2. **Conjugate gradient** (:mod:`.cg`) from the previous solution times ``cg_decay`` (0.95,
   MS11 code), at most ``cg_max`` iterations (250, the cap of the public HF codes; MS11's demo
   ran 300), Martens' relative-progress rule (``cg_tol`` 5e-4, MS11 code).
3. **CG backtracking**: the iterates kept at geometrically spaced iterations (x1.3) are scored
   by the loss on a second slice of the batch (sequences [B_c, 2 B_c) when B_g >= 2 B_c, else
   the curvature batch), walking back from the last while the loss keeps falling (the public
   codes' rule; MS11's own code scores every 10th iterate).
4. **Levenberg-Marquardt**: rho = (f(theta + d) - f(theta)) / M(d) on the curvature batch, with
   M the damped model (MS11 code; ``rho_model = "undamped"`` uses G alone, as one public code
   does, at the cost of one more product); rho < 1/4 (or not finite): lambda *= 3/2;
   rho > 3/4: lambda *= 2/3 (notes 4.4). S scales with lambda.
5. **Line search** (``line_search``, on by default as in MS11's code): the first alpha in
   1, 0.8, 0.8^2, ..., 0.8^49 that strictly lowers the loss on a third slice ([2 B_c, 3 B_c)
   when B_g >= 3 B_c, else the whole batch); if none does, no step is taken and the warm start
   is reset to 0 (MS11 code).

The warm start is the **last** CG iterate, not the backtracked one (MS11 code). Damping, warm
start and counters are optimizer state: checkpointed and resumed exactly.

Cost (Krause et al., ``hf-vs-sgd-efficiency-mlstm.md`` Section 2): each CG iteration is one
Gauss-Newton product, 4 forward-pass equivalents per curvature sequence, reported as
``cost_D = 4 B_c I_c`` and ``cost_I = 4 I_c`` (I_c the products of this update's CG: its
iterations and the warm start's); the forward passes of backtracking, rho and the line search, which
the paper's P_D and P_I leave out, are reported as ``cost_D_extra`` and ``cost_I_extra``. The
trainer adds its own gradient (3 B_g, 3) and accumulates P_D and P_I.

HF needs the unclipped gradient (its model and rho would otherwise disagree with the loss):
runs with ``train.clip > 0`` are refused.

Defaults not pinned by the sources, and chosen here: ``damping`` 1.0 (drasmuss/hessianfree's
initial lambda; MS11's demo 0.01 n_out, boulanni 0.1 — LM adapts it within a few updates);
``structural_damping`` mu = 0.03 (MS11's lambda-to-lambda mu ratio); ``curvature_batch`` 0
(the whole batch; MS11 used 1000 of 10 000 sequences, Krause et al. 32 of 320).
"""
from __future__ import annotations

import math

from .. import backend
from ..errors import ConfigError
from ..options import Option
from .base import Optimizer
from .cg import conjugate_gradient, dot

LM_LOW, LM_HIGH = 0.25, 0.75       # notes 4.4
LM_BOOST, LM_DROP = 1.5, 2.0 / 3.0
LINE_SEARCH_RATE, LINE_SEARCH_TRIES = 0.8, 50   # notes 4.5 (MS11 code)


class HessianFree(Optimizer):
    """Hessian-free with Tikhonov and structural damping (see the module docstring).

    Needs ``model``, ``batch``, ``loss`` (forward-only loss on the batch or a slice of it) and
    ``gvp``. Step metrics: ``cg_iterations``, ``cg_products`` (the iterations and the warm
    start's product), ``damping`` (after the update), ``rho``,
    ``alpha`` (the line-search step, 0 when rejected), ``cg_chosen`` (the backtracked
    iterate), ``model_value`` (M at it), and the cost keys. ``rho`` is -1 where it is not
    finite (M(d) >= 0), which the LM rule treats as a failure.
    """

    name = "hf"
    needs = frozenset({"model", "batch", "loss", "gvp"})
    needs_raw_gradient = True
    options = (
        Option.number("damping", 1.0, "initial Tikhonov damping lambda (adapted by the LM rule)",
                      minimum=0),
        Option.number("structural_damping", 0.03, "structural damping mu, a ratio to lambda "
                      "(0: none)", minimum=0, inclusive=True),
        Option.choice("structural_form", "auto", "matching: MS11's matching-loss penalty; "
                      "hidden: 1/2 ||R h_t||^2; auto: the model's own default (matching for "
                      "the Elman RNN, hidden for gated cells)", ("auto", "matching", "hidden")),
        Option.integer("cg_max", 250, "most CG iterations per update", minimum=1),
        Option.number("cg_tol", 5e-4, "Martens' relative-progress tolerance (0: run to "
                      "cg_max)", minimum=0, inclusive=True),
        Option.number("cg_decay", 0.95, "warm start: previous solution times this, in [0, 1] "
                      "(0: cold starts)", 0, 1, inclusive=True),
        Option.integer("curvature_batch", 0, "B_c, sequences of the curvature batch (0: the "
                       "whole batch)", minimum=0),
        Option.flag("backtracking", True, "CG backtracking over the stored iterates"),
        Option.flag("line_search", True, "line search on the chosen direction"),
        Option.choice("rho_model", "damped", "the model in the reduction ratio",
                      ("damped", "undamped")),
    )

    def _update(self, params, grads, *, model, batch, loss, gvp, **_):
        hp, xp = self.hyperparameters, backend.get_xp()
        B, T = batch.B, batch.T
        Bc = hp["curvature_batch"] or B
        if Bc > B:
            raise ConfigError(f"optimizer 'hf': curvature_batch = {Bc} is larger than the "
                              f"batch ({B} sequences); give curvature_batch <= train.batch")
        c_rows = None if Bc == B else (0, Bc)
        bt_rows = (Bc, 2 * Bc) if B >= 2 * Bc else c_rows
        ls_rows = (2 * Bc, 3 * Bc) if B >= 3 * Bc else None
        lam = float(self.state.get("damping", hp["damping"]))
        mu = hp["structural_damping"]
        form = hp["structural_form"]
        if form == "auto":
            form = getattr(model, "structural_form", "hidden")
        structural = lam * mu / (T * Bc) if mu else 0.0
        products = {"n": 0}

        def damped(v):
            products["n"] += 1
            gv = gvp(params, v, rows=c_rows, structural=structural, structural_form=form)
            return {k: gv[k] + lam * v[k] for k in gv}

        warm = self.state.get("warm")
        x0 = ({k: hp["cg_decay"] * v for k, v in warm.items()} if warm is not None
              else {k: xp.zeros_like(p) for k, p in params.items()})
        result = conjugate_gradient(damped, grads, x0, hp["cg_max"], hp["cg_tol"])
        self.state["warm"] = result.x
        extra = {"D": 0.0, "I": 0.0}

        def loss_at(step, alpha, rows):
            size = B if rows is None else rows[1] - rows[0]
            extra["D"] += size
            extra["I"] += 1
            moved = {k: p + alpha * step[k] for k, p in params.items()} if alpha else params
            return loss(moved, rows=rows)

        # CG backtracking: from the last stored iterate back, while the loss keeps falling
        chosen = len(result.iterates) - 1
        if hp["backtracking"] and chosen > 0:
            best = loss_at(result.iterates[chosen][1], 1.0, bt_rows)
            while chosen > 0:
                previous = loss_at(result.iterates[chosen - 1][1], 1.0, bt_rows)
                if not previous < best:
                    break
                chosen, best = chosen - 1, previous
        iteration, step, model_value = result.iterates[chosen]

        # reduction ratio on the curvature batch, then Levenberg-Marquardt
        if hp["rho_model"] == "undamped":
            products["n"] += 1
            gs = gvp(params, step, rows=c_rows)
            model_value = dot(grads, step) + 0.5 * dot(step, gs)
        f0 = loss_at(step, 0.0, c_rows)
        f1 = loss_at(step, 1.0, c_rows)
        rho = (f1 - f0) / model_value if model_value < 0 else -math.inf
        if not math.isfinite(rho) or rho < LM_LOW:
            lam *= LM_BOOST
        elif rho > LM_HIGH:
            lam *= LM_DROP
        self.state["damping"] = lam

        # line search
        alpha = 1.0
        if hp["line_search"]:
            base, alpha = loss_at(step, 0.0, ls_rows), 0.0
            for j in range(LINE_SEARCH_TRIES):
                trial = LINE_SEARCH_RATE ** j
                if loss_at(step, trial, ls_rows) < base:
                    alpha = trial
                    break
            if alpha == 0.0:  # no decrease along the direction: no step, a cold CG next
                self.state["warm"] = {k: xp.zeros_like(v) for k, v in result.x.items()}
        if alpha:
            for k, p in params.items():
                p += (alpha * step[k]).astype(p.dtype, copy=False)
        self.state["cg_total"] = self.state.get("cg_total", 0) + products["n"]
        cg_products = products["n"] - (hp["rho_model"] == "undamped")
        return {"cg_iterations": float(result.iterations), "cg_products": float(cg_products),
                "damping": lam,
                "rho": rho if math.isfinite(rho) else -1.0, "alpha": alpha,
                "cg_chosen": float(iteration), "model_value": model_value,
                "cost_D": 4.0 * Bc * cg_products, "cost_I": 4.0 * cg_products,
                "cost_D_extra": extra["D"] + 4.0 * Bc * (products["n"] - cg_products),
                "cost_I_extra": extra["I"] + 4.0 * (products["n"] - cg_products)}


__all__ = ["HessianFree"]
