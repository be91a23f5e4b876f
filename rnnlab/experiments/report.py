"""A sweep's report: tables per group of seeds, the best setting per optimizer, learning curves.

``write_report(folder)`` reads the sweep's SQLite store (also while a sweep runs: pending cells
are counted, not guessed) and writes into the folder:

``report.md``
    Two tables. *Selected*: for each setting of the axes other than the selected ones (by
    default ``optimizer.lr``: one row per optimizer, per task length, ...), the value of the
    selected axes whose group has the best median **validation** metric at the end of training
    (cells that diverged or failed count as the worst value); its **test** metric is reported.
    (The Path-SGD paper grid-searches the learning rate without naming the split it chose on;
    rnnlab chooses on validation and reports test, so the choice never sees the test set.) *All groups*: every group of cells that
    differ only in seed.
``report.csv``
    The all-groups table, one row per group, with a ``selected`` column.
``flow-<group>.png``
    Where cells recorded gradient flow (``train.flow_every``), the first seed's per-step
    ||dLoss/dh_t|| (and memory use) over training, one figure per group
    (:func:`rnnlab.train.diagnostics.gradient_flow_figure`).
``curves-<setting>.png``
    Per setting of the remaining axes (``task.T=100``, ...), the validation metric against
    step of each selected group: the median across seeds and a band from the 25th to the 75th
    percentile, with the trivial baseline and the solved threshold.
``cost-<setting>.png``
    The same groups' training loss and validation metric against the forward-pass
    equivalents P_D and P_I (:func:`rnnlab.train.plots.cost_curves_figure`), one seed each.

Columns: ``n`` seeds; ``test median`` and ``test IQR`` (25th-75th percentile) over the cells
that finished; ``test best`` (the best seed: the paper's IRNN protocol kept the best of ten
restarts); ``valid median`` (what selection reads); ``solved`` k/n (test metric, else the last
validation metric, beats the task's threshold); ``diverged`` and ``failed`` k/n; ``steps to
threshold`` (median over the cells that reached it, validation split); ``seconds`` (median wall
time of a cell).
"""
from __future__ import annotations

import csv
import math
import os
import re
import warnings

import numpy as np

from ..train.diagnostics import gradient_flow_figure
from ..train.plots import cost_curves_figure
from .store import Store
from .sweep import _text, axes_label

REPORT_FILE = "report.md"
CSV_FILE = "report.csv"
COLUMNS = ("group", "n", "test median", "test IQR", "test best", "valid median", "solved",
           "diverged", "failed", "pending", "steps to threshold", "seconds")


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def group_rows(cells: list) -> list:
    """Cells grouped by ``group_id`` (seeds of one setting), in sweep order; each group a dict
    with ``axes``, ``label``, ``cells`` and its statistics (module docstring)."""
    groups = {}
    for row in cells:
        groups.setdefault(row["group_id"], []).append(row)
    return [_stats(rows) for rows in groups.values()]


def _stats(rows: list) -> dict:
    first = rows[0]
    lower = _better(first) == "lower"
    done = [r for r in rows if r["status"] == "done"]
    tests = [r["test_metric"] for r in done if r["test_metric"] is not None]
    valid_worst = math.inf if lower else -math.inf
    valid = [r["final_metric"] if r["status"] == "done" and r["final_metric"] is not None
             else valid_worst for r in rows if r["status"] != "pending"]
    threshold = first["threshold"]

    def solved(r):
        value = r["test_metric"] if r["test_metric"] is not None else r["final_metric"]
        if r["status"] != "done" or value is None or threshold is None:
            return False
        return value < threshold if lower else value > threshold
    reached = [r["steps_to_threshold"] for r in done if r["steps_to_threshold"] is not None]
    seconds = [r["seconds"] for r in rows if r["seconds"] is not None]
    count = {s: sum(r["status"] == s for r in rows) for s in ("diverged", "failed", "pending")}
    n = len(rows)
    return {
        "group_id": first["group_id"], "axes": first["axes"], "label": axes_label(first["axes"]),
        "cells": rows, "metric": next((r["metric"] for r in rows if r["metric"]), None),
        "better": "lower" if lower else "higher", "threshold": threshold,
        "baseline": next((r["baseline"] for r in rows if r["baseline"] is not None), None),
        "n": n, "test_median": float(np.median(tests)) if tests else None,
        "test_q25": float(np.percentile(tests, 25)) if tests else None,
        "test_q75": float(np.percentile(tests, 75)) if tests else None,
        "test_best": (min(tests) if lower else max(tests)) if tests else None,
        "valid_median": float(np.median(valid)) if valid else None,
        "solved": sum(map(solved, rows)), **count,
        "steps_to_threshold": float(np.median(reached)) if reached else None,
        "seconds": float(np.median(seconds)) if seconds else None,
    }


def _better(row) -> str:
    from ..tasks import TASKS
    try:
        return TASKS.get(row["task"]).better
    except Exception:  # a task this rnnlab does not know: the common case
        return "lower"


def select_best(groups: list, select: tuple) -> dict:
    """setting label -> the group with the best median validation metric among the groups that
    differ only in the ``select`` axes (groups with no finished cell yet are not candidates)."""
    best = {}
    for g in groups:
        if g["valid_median"] is None:
            continue
        key = axes_label(g["axes"], select)
        lower = g["better"] == "lower"
        current = best.get(key)
        if current is None or (g["valid_median"] < current["valid_median"] if lower
                               else g["valid_median"] > current["valid_median"]):
            best[key] = g
    return best


def _row(g: dict, label: str) -> list:
    iqr = ("-" if g["test_q25"] is None else
           f"{_fmt(g['test_q25'], 3)}-{_fmt(g['test_q75'], 3)}")
    return [label, str(g["n"]), _fmt(g["test_median"]), iqr, _fmt(g["test_best"]),
            _fmt(g["valid_median"]), f"{g['solved']}/{g['n']}", f"{g['diverged']}/{g['n']}",
            f"{g['failed']}/{g['n']}", str(g["pending"]), _fmt(g["steps_to_threshold"], 6),
            _fmt(g["seconds"], 3)]


def _markdown(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_report(folder: str) -> tuple:
    """(markdown text, groups, selected groups by setting, select axes) of the sweep in
    ``folder``."""
    with Store(folder, readonly=True) as store:
        cells = store.cells()
        spec = store.meta("spec", {})
    groups = group_rows(cells)
    select = _select(spec, groups)
    best = select_best(groups, select)
    selected_ids = {g["group_id"] for g in best.values()}
    status = {s: sum(c["status"] == s for c in cells)
              for s in ("done", "diverged", "failed", "pending")}
    metric = next((g["metric"] for g in groups if g["metric"]), "metric")
    # the header's threshold and baseline: from a group whose cells recorded them (a failed
    # cell records neither)
    first = next((g for g in groups if g.get("baseline") is not None
                  or g.get("threshold") is not None), groups[0] if groups else {})
    lines = [f"# Sweep report: {folder}", "",
             f"{len(cells)} cells in {len(groups)} groups: "
             + ", ".join(f"{v} {k}" for k, v in status.items())
             + ("" if not status["pending"] else " (a sweep in progress, or stopped: rerun "
                "it to finish)"),
             f"metric: {metric} ({first.get('better', 'lower')} is better); solved: "
             f"{metric} {'<' if first.get('better') != 'higher' else '>'} "
             f"{_fmt(first.get('threshold'))}; trivial baseline {_fmt(first.get('baseline'))}.",
             ""]
    if select:
        lines += [f"## Selected: best {', '.join(select)} per setting, on the validation "
                  "median; test metric reported", ""]
        rows = [_row(g, f"{key} -> {axes_label({k: g['axes'][k] for k in select if k in g['axes']})}")
                for key, g in best.items()]
        lines += [_markdown(("setting -> selected",) + COLUMNS[1:], rows), ""]
    lines += ["## All groups (cells differing only in seed)", "",
              _markdown(COLUMNS, [_row(g, g["label"] + (" *" if g["group_id"] in selected_ids
                                                         else "")) for g in groups]), ""]
    if select:
        lines += ["`*`: selected.", ""]
    return "\n".join(lines), groups, best, select


def _select(spec: dict, groups: list) -> tuple:
    """The spec's select axes, limited to axes that some group has."""
    chosen = (spec.get("report") or {}).get("select")
    if chosen is None:
        chosen = ["optimizer.lr"]
    present = {k for g in groups for k in g["axes"]}
    return tuple(k for k in chosen if k in present)


def write_report(folder: str, echo=None) -> str:
    """Write ``report.md``, ``report.csv`` and the curve PNGs into ``folder``; return the
    markdown's path (``echo``, if given, receives the markdown text)."""
    text, groups, best, select = format_report(folder)
    path = os.path.join(folder, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    selected_ids = {g["group_id"] for g in best.values()}
    with open(os.path.join(folder, CSV_FILE), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        axes = list(dict.fromkeys(k for g in groups for k in g["axes"]))
        keys = ("n", "test_median", "test_q25", "test_q75", "test_best", "valid_median",
                "solved", "diverged", "failed", "pending", "steps_to_threshold", "seconds")
        writer.writerow(["group_id", *axes, *keys, "selected"])
        for g in groups:
            writer.writerow([g["group_id"], *(_csv_value(g["axes"].get(k)) for k in axes),
                             *(g[k] for k in keys), int(g["group_id"] in selected_ids)])
    _write_curves(folder, groups, best, select)
    if echo is not None:
        echo(text)
    return path


def _csv_value(value):
    return "" if value is None else _text(value)


def _write_curves(folder: str, groups: list, best: dict, select: tuple) -> list:
    """One PNG per setting of the axes other than the optimizer and the selected ones, with a
    curve per selected group (every group when nothing is selected)."""
    from matplotlib.figure import Figure
    overlaid = ("optimizer",) + tuple(select)
    with Store(folder, readonly=True) as store:
        panels = {}
        for g in (list(best.values()) or groups):
            key = axes_label(g["axes"], overlaid)
            panels.setdefault(key, []).append(g)
        paths = []
        for key, members in panels.items():
            fig = Figure(figsize=(7, 4.2), layout="constrained")
            ax = fig.subplots()
            metric = members[0]["metric"]
            for g in members:
                curve = _median_curve([store.history(c["cell_id"]) for c in g["cells"]
                                       if c["status"] != "pending"], metric)
                if curve is None:
                    continue
                steps, median, low, high = curve
                line, = ax.plot(steps, median, label=axes_label(g["axes"], tuple(
                    k for k in g["axes"] if k not in overlaid)))
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
            if members[0]["baseline"] is not None:
                ax.axhline(members[0]["baseline"], color="gray", linestyle="--", linewidth=1,
                           label="trivial baseline")
            if members[0]["threshold"] is not None:
                ax.axhline(members[0]["threshold"], color="green", linestyle=":", linewidth=1,
                           label="solved")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel(f"validation {metric} (median, 25-75 % band)")
            ax.set_title(key, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            slug = re.sub(r"[^A-Za-z0-9.=-]+", "_", key).strip("_") or "base"
            path = os.path.join(folder, f"curves-{slug}.png")
            fig.savefig(path, dpi=110)
            paths.append(path)
            # against forward-pass equivalents (Krause et al.): each group's first seed
            runs = {}
            for g in members:
                done = [c for c in g["cells"] if c["status"] != "pending"]
                if done:
                    runs[axes_label(g["axes"], tuple(k for k in g["axes"]
                                                     if k not in overlaid))] = \
                        store.history(done[0]["cell_id"])
            if any(r.get("P_D") for h in runs.values() for r in h):
                path = os.path.join(folder, f"cost-{slug}.png")
                cost_curves_figure(runs, metric, members[0]["baseline"],
                                   f"{key} (the first seed of each)").savefig(
                    path, dpi=110)
                paths.append(path)
            # gradient flow (train.flow_every): one figure per group, its first seed
            for label, history in runs.items():
                if any(r.get("kind") == "flow" for r in history):
                    both = key if label == "base" else f"{key} {label}"
                    name = re.sub(r"[^A-Za-z0-9.=-]+", "_", both).strip("_")
                    path = os.path.join(folder, f"flow-{name}.png")
                    gradient_flow_figure(history, f"{key} {label} (the first seed)").savefig(
                        path, dpi=110)
                    paths.append(path)
    return paths


def _median_curve(histories: list, metric: str):
    """(steps, median, 25th, 75th percentile) of the eval metric across histories (a run that
    stopped early contributes up to its last evaluation); None without evaluations."""
    series = [{r["step"]: r[metric] for r in h if r.get("kind") == "eval"
               and r.get(metric) is not None} for h in histories]
    steps = sorted(set().union(*series)) if series else []
    if not steps:
        return None
    table = np.array([[s.get(step, np.nan) for step in steps] for s in series], dtype=float)
    table[~np.isfinite(table)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a gap in the curve
        return (np.array(steps), np.nanmedian(table, axis=0),
                np.nanpercentile(table, 25, axis=0), np.nanpercentile(table, 75, axis=0))


__all__ = ["COLUMNS", "format_report", "group_rows", "select_best", "write_report"]
