"""Learning-curve figures (matplotlib, Agg backend: files only, no display needed)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_learning_curves(runs: dict, path: str, metric: str, baseline: float | None = None,
                         title: str = "") -> str:
    """Plot train loss and evaluation ``metric`` against step for one or more runs.

    Parameters
    ----------
    runs : dict label -> list of history records
        Records as written to ``metrics.jsonl``: ``{"step", "kind": "train"|"eval", ...}``.
    path : str
        Where to write the PNG.
    metric : str
        The evaluation metric to plot (e.g. ``"mse"``).
    baseline : float, optional
        A horizontal reference line (the trivial predictor's score).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for label, records in runs.items():
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval"]
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
