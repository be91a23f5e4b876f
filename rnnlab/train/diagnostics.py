"""Gradient-flow diagnostics: how much gradient reaches each time step, and how a memory cell
uses its memory.

Shapes: T steps, B batch, H_l hidden units of layer l, m_l memory size.

:func:`gradient_flow` measures, on one batch and at the current parameters,

* ``grad_h`` (per layer, T numbers): ||dLoss/dh_t||, the Frobenius norm over the (B, H_l)
  slice of the total gradient reaching the hidden outputs of step t (the model's
  ``hidden_gradients``). Vanishing gradients show as a norm that falls, step after step,
  towards the start of the sequence; this is the per-step view of the gradient norms the NRU
  paper compares (``nru.md``, "Gradient Flow" and Fig. 7, which plot the total norm over
  training; the trainer's ``grad_norm`` records are that total);
* ``memory_change`` (per layer, T numbers, memory cells only: models with ``memory``):
  ||m_t - m_{t-1}||, the Frobenius norm over (B, m_l) of what step t wrote to and erased from
  the memory (the NRU paper's Fig. 6 shows the same per memory unit for one sequence: writes
  while the data arrives, nothing during the lag, reads after the marker).

The trainer records them every ``train.flow_every`` steps (a ``{"kind": "flow"}`` record in
``metrics.jsonl``, measured on that step's training batch before its update, with full BPTT
even when training truncates); :func:`gradient_flow_figure` draws them.
"""
from __future__ import annotations

import math

from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .. import backend, objective
from ..errors import ConfigError

FLOW_FILE = "gradient_flow.png"


def supports_flow(model) -> bool:
    """Whether ``model`` can report per-step hidden gradients."""
    return callable(getattr(model, "hidden_gradients", None))


def _step_norms(a) -> list:
    """Per-step Frobenius norms of ``a : (T, B, n)``, as host floats."""
    xp = backend.get_xp()
    return [float(v) for v in backend.to_host(xp.sqrt((a * a).sum(axis=(1, 2))))]


def gradient_flow(model, params: dict, batch: objective.Batch, loss) -> dict:
    """The per-step gradient norms (and memory changes) of one batch; see the module docstring.

    Parameters
    ----------
    model : a model with ``hidden_gradients`` (every model of the registry has one)
    batch : rnnlab.objective.Batch
        ``x : (T, B, n_in)``, targets, mask, initial state.
    loss : callable ``loss(outputs, targets, mask) -> (value, d_outputs)``

    Returns
    -------
    dict with ``grad_h`` (one list of T floats per layer) and, for memory cells,
    ``memory_change`` (one list of T floats per layer).
    """
    if not supports_flow(model):
        raise ConfigError(f"model {type(model).__name__} has no hidden_gradients(); gradient-"
                          "flow diagnostics (train.flow_every) need it")
    objective._check_mask(model, batch.mask)
    y, cache = model.forward(params, batch.x, batch.state)
    _, dy = loss(y, batch.targets, batch.mask)
    flow = {"grad_h": [_step_norms(d) for d in model.hidden_gradients(params, dy, cache)]}
    memory = getattr(model, "memory", None)
    if callable(memory):
        flow["memory_change"] = [_step_norms(m[1:] - m[:-1]) for m in memory(cache)]
    return flow


def gradient_flow_figure(records: list, title: str = "", layer: int = -1) -> Figure:
    """The flow records of a run (``{"kind": "flow", "step", "grad_h", ...}``) as heatmaps:
    training step (rows) against time step t (columns), colour log ||dLoss/dh_t|| of one
    ``layer`` (default the top one), with the first, middle and last record as curves beside
    it; a second row shows ||m_t - m_{t-1}|| where the records carry memory changes."""
    flows = [r for r in records if r.get("kind") == "flow"]
    if not flows:
        raise ConfigError("no gradient-flow records to plot: train with train.flow_every > 0")
    rows = [("grad_h", "||dLoss/dh_t||")]
    if "memory_change" in flows[0]:
        rows.append(("memory_change", "||m_t - m_(t-1)||"))
    fig = Figure(figsize=(12, 3.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    steps = [r["step"] for r in flows]
    picks = sorted({0, len(flows) // 2, len(flows) - 1})
    for (key, label), (heat, curves) in zip(rows, axes):
        grid = [r[key][layer] for r in flows]
        T = len(grid[0])
        positive = [v for row in grid for v in row if v > 0 and math.isfinite(v)]
        norm = LogNorm(min(positive), max(positive)) if positive else None
        image = heat.imshow(grid, aspect="auto", origin="lower", norm=norm,
                            extent=(0.5, T + 0.5, -0.5, len(flows) - 0.5), cmap="viridis",
                            interpolation="nearest")
        ticks = sorted({0, len(flows) // 2, len(flows) - 1})
        heat.set_yticks(ticks, [str(steps[i]) for i in ticks])
        heat.set_xlabel("time step t")
        heat.set_ylabel("training step")
        heat.set_title(label)
        fig.colorbar(image, ax=heat)
        for i in picks:
            curves.plot(range(1, T + 1), grid[i], label=f"step {steps[i]}")
        if positive:
            curves.set_yscale("log")
        curves.set_xlabel("time step t")
        curves.set_ylabel(label)
        curves.grid(True, which="both", alpha=0.3)
        curves.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
