"""Learning-curve figures, drawn on a :class:`matplotlib.figure.Figure` object.

Nothing here imports ``pyplot`` or switches matplotlib's backend: a Figure made directly renders
to a file by itself, so importing rnnlab never changes how a user's notebook or script draws, and
a notebook can display the returned Figure inline.
"""
from __future__ import annotations

from matplotlib.figure import Figure


def learning_curves_figure(runs: dict, metric: str, baseline: float | None = None,
                           title: str = "") -> Figure:
    """Train loss and evaluation ``metric`` against step for one or more runs.

    Parameters
    ----------
    runs : dict label -> list of history records
        Records as written to ``metrics.jsonl``: ``{"step", "kind": "train"|"eval", ...}``.
    metric : str
        The evaluation metric to plot (e.g. ``"mse"``).
    baseline : float, optional
        A horizontal reference line (the trivial predictor's score).
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for label, records in runs.items():
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval" and metric in r]
        line, = axes[0].plot([r["step"] for r in train], [r["loss"] for r in train],
                             label=label, alpha=0.8)
        axes[1].plot([r["step"] for r in evals], [r[metric] for r in evals], label=label,
                     color=line.get_color(), marker="o", markersize=3)
    for ax, ylabel in zip(axes, ("train loss (mean since last log)", f"held-out {metric}")):
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
                       label="trivial baseline")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_learning_curves(runs: dict, path: str, metric: str, baseline: float | None = None,
                         title: str = "") -> str:
    """:func:`learning_curves_figure` written to the PNG ``path``; returns ``path``."""
    learning_curves_figure(runs, metric, baseline, title).savefig(path, dpi=110)
    return path
