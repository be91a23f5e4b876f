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


def cost_curves_figure(runs: dict, metric: str, baseline: float | None = None,
                       title: str = "", with_extra: bool = False) -> Figure:
    """Training loss and held-out ``metric`` against the forward-pass equivalents spent, P_D
    (batch-dependent: sequential cost) and P_I (batch-independent: parallel cost), as in Krause
    et al.'s Figure 1 (``hf-vs-sgd-efficiency-mlstm.md``).

    ``runs``: label -> history records (the ``P_D``, ``P_I`` of each train record, see
    :func:`rnnlab.train.run.update_cost`); an eval record is placed at the cost of the train
    record of its step. ``with_extra`` plots ``P_D_all`` / ``P_I_all`` (with Hessian-free's
    backtracking, reduction-ratio and line-search passes) instead.
    """
    suffix = "_all" if with_extra else ""
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for label, records in runs.items():
        train = [r for r in records if r["kind"] == "train" and "P_D" in r]
        spent = {r["step"]: r for r in train}
        evals = [r for r in records if r["kind"] == "eval" and r["step"] in spent
                 and metric in r]
        for column, key in enumerate(("P_D", "P_I")):
            line, = axes[0, column].plot([r[key + suffix] for r in train],
                                         [r["loss"] for r in train], label=label)
            axes[1, column].plot([spent[r["step"]][key + suffix] for r in evals],
                                 [r[metric] for r in evals], label=label, marker="o",
                                 markersize=3, color=line.get_color())
    for row, ylabel in enumerate(("train loss (mean since last log)", f"held-out {metric}")):
        for column, key in enumerate(("P_D", "P_I")):
            ax = axes[row, column]
            if baseline is not None and row == 1:
                ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
                           label="trivial baseline")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"{key}{suffix}: forward passes of one sequence"
                          + (" (all sequences)" if key == "P_D" else " (one per batch)"))
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
