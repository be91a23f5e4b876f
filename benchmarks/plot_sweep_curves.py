"""All groups of a sweep folder on one figure: the validation metric against step (median over
seeds), with the task's baseline and threshold. What EXPERIMENTS.md's comparison figures are.

    python benchmarks/plot_sweep_curves.py runs/gates-copying benchmarks/figures/gates_copying.png
"""
from __future__ import annotations

import argparse

from matplotlib.figure import Figure

from rnnlab.experiments.report import _median_curve, group_rows
from rnnlab.experiments.store import Store
from rnnlab.experiments.sweep import axes_label


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a sweep folder")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    with Store(args.folder, readonly=True) as store:
        groups = group_rows(store.cells())
        fig = Figure(figsize=(8, 4.8), layout="constrained")
        ax = fig.subplots()
        for g in groups:
            curve = _median_curve([store.history(c["cell_id"]) for c in g["cells"]
                                   if c["status"] != "pending"], g["metric"])
            if curve is not None:
                ax.plot(curve[0], curve[1], label=f"{axes_label(g['axes'], ())} (n={g['n']})")
        first = next(g for g in groups if g["baseline"] is not None)
        ax.axhline(first["baseline"], color="gray", ls="--", lw=1, label="memoryless baseline")
        if first["threshold"] is not None:
            ax.axhline(first["threshold"], color="green", ls=":", lw=1, label="solved")
        ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel(f"validation {first['metric']} (median over seeds)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(args.title or args.folder, fontsize=10)
        fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
