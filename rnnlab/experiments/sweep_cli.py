"""``rnnlab sweep``, ``rnnlab report`` and ``rnnlab compare``: arguments and entry points.

Exit codes: 0 when every cell of the sweep has finished (done, diverged or failed: those are
results, in the report); 1 when some cells lost their worker (rerun to redo them); 130 / 143
when the driver was stopped by Ctrl-C / SIGTERM (rerun the same command to continue); 2 for bad
input (one line, nothing run).
"""
from __future__ import annotations

import argparse
import os
import sys

from ..argtypes import int_at_least
from ..errors import ConfigError

COMPARE_PRESET = "compare"


def _add_run_arguments(p, out_help: str) -> None:
    from .executors import EXECUTORS
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: a process pool on this machine (default); dask: a Dask "
                        "cluster (--scheduler ADDRESS, or a new LocalCluster); serial: this "
                        "process")
    p.add_argument("--workers", type=int_at_least(1), default=None,
                   help="worker processes of the local pool or LocalCluster (default: one "
                        "per core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.1:8786 (with "
                        "--executor dask)")
    p.add_argument("--blas-threads", type=int_at_least(1), default=1,
                   help="BLAS threads per cell (default 1: one worker per core)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the sweep file's data, e.g. --set base.train.steps=500 or "
                        "--set 'seeds=[0, 1]' (repeatable; values as TOML)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run the failed cells again (done and diverged cells never rerun)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells (and which are finished) and exit")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only on a terminal)")


def add_sweep_arguments(p) -> None:
    p.add_argument("spec", metavar="SPEC",
                   help="a sweep file (TOML: [base], [axes] or [[grid]], seeds) or a preset's "
                        "name")
    _add_run_arguments(p, "the sweep folder: sweep.sqlite, report.md, report.csv, curves "
                          "(default: runs/sweep-<spec name>)")


def add_compare_arguments(p) -> None:
    p.add_argument("--T", type=int_at_least(2), default=None,
                   help="adding-problem length (default: the preset's)")
    p.add_argument("--steps", type=int_at_least(1), default=None,
                   help="training steps per cell (default: the preset's)")
    p.add_argument("--seeds", type=int_at_least(1), default=None, metavar="N",
                   help="seeds 0..N-1 (default: the preset's 3)")
    _add_run_arguments(p, "the sweep folder (default: runs/compare)")


def add_report_arguments(p) -> None:
    p.add_argument("folder", metavar="SWEEP_DIR", help="a sweep folder")
    p.add_argument("--quiet", action="store_true", help="write the files, print nothing")


def _overrides(entries) -> dict:
    from .sweep import parse_value
    overrides = {}
    for entry in entries:
        key, sep, text = entry.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs KEY=VALUE (e.g. base.train.steps=500); got "
                              f"{entry!r}")
        overrides[key.strip()] = parse_value(text.strip())
    return overrides


def _run(args, spec_name: str, overrides: dict, out: str) -> int:
    from .sweep import read_spec
    return _execute(args, read_spec(spec_name, {**overrides, **_overrides(args.set)}), out)


def _execute(args, spec, out: str, after=None) -> int:
    """Run (or, with --dry-run, list) ``spec`` into ``out``; ``after(out)`` prints more."""
    from .driver import run_sweep
    from .store import FINAL, STORE_FILE, Store
    if args.dry_run:
        held = {}
        if os.path.isfile(os.path.join(out, STORE_FILE)):
            with Store(out, readonly=True) as store:
                held = store.statuses()
        cells = spec.cells()
        for cell in cells:
            print(f"{cell.cell_id}  {held.get(cell.cell_id, 'new'):<8}  seed {cell.seed:<3} "
                  f"{cell.label}")
        finished = sum(held.get(c.cell_id) in FINAL for c in cells)
        print(f"{len(cells)} cells; {finished} finished in {out}")
        return 0
    result = run_sweep(spec, out, executor=args.executor, workers=args.workers,
                       scheduler=args.scheduler, blas_threads=args.blas_threads,
                       retry_failed=args.retry_failed, progress=args.progress)
    if result.report:
        with open(result.report, encoding="utf-8") as f:
            print(f.read())
    if after is not None:
        after(out)
    print(result.summary())
    if result.stopped:
        print(f"rnnlab: sweep stopped ({result.stopped}); every finished cell is kept in "
              f"{out}: rerun the same command to continue", file=sys.stderr)
        return 143 if result.stopped == "SIGTERM" else 130
    return 1 if result.lost else 0


def main_sweep(args) -> int:
    from .sweep import spec_path
    stem = os.path.splitext(os.path.basename(spec_path(args.spec)))[0]
    return _run(args, args.spec, {}, args.out or os.path.join("runs", f"sweep-{stem}"))


def main_compare(args) -> int:
    overrides = {}
    if args.T is not None:
        overrides["base.task.T"] = args.T
    if args.steps is not None:
        overrides["base.train.steps"] = args.steps
    if args.seeds is not None:
        overrides["seeds"] = list(range(args.seeds))
    return _run(args, COMPARE_PRESET, overrides, args.out or os.path.join("runs", "compare"))


def add_pathological_arguments(p) -> None:
    from .pathological import OPTIMIZERS, PROBLEMS
    p.add_argument("--problems", nargs="+", choices=PROBLEMS, default=list(PROBLEMS),
                   metavar="PROBLEM", help=f"problems (default: all: {', '.join(PROBLEMS)})")
    p.add_argument("--lengths", nargs="+", type=int_at_least(2), default=[30, 50],
                   metavar="T", help="nominal lengths (default: 30 50; the paper: 30 50 100 200)")
    p.add_argument("--seeds", type=int_at_least(1), default=5, metavar="N",
                   help="runs per cell, seeds 0..N-1 (default 5, as the paper)")
    p.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS),
                   default=["hf-structural", "psgd"], metavar="OPT",
                   help=f"optimizers (default: hf-structural psgd; all: {', '.join(OPTIMIZERS)})")
    p.add_argument("--steps", nargs="+", default=[], metavar="OPT=N",
                   help="iteration budget per optimizer, e.g. psgd=20000 (defaults: "
                        "rnnlab/experiments/pathological.py TRAINING)")
    p.add_argument("--hidden", type=int_at_least(1), default=100,
                   help="hidden units (default 100, as the sources)")
    _add_run_arguments(p, "the sweep folder (default: runs/pathological)")


def main_pathological(args) -> int:
    from .pathological import format_tables, suite_spec
    from .store import Store
    steps = {}
    for entry in args.steps:
        label, sep, text = entry.partition("=")
        if not sep or not text.strip().isdigit() or int(text) < 1:
            raise ConfigError(f"--steps needs OPT=N with N >= 1 (e.g. psgd=20000); got {entry!r}")
        steps[label.strip()] = int(text)
    spec = suite_spec(args.problems, args.lengths, range(args.seeds), args.optimizers,
                      args.hidden, steps)

    def tables(out):
        with Store(out, readonly=True) as store:
            text = format_tables(store.cells())
        with open(os.path.join(out, "pathological.md"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(text)
    return _execute(args, spec, args.out or os.path.join("runs", "pathological"), tables)


def main_report(args) -> int:
    from .report import write_report
    write_report(args.folder, echo=None if args.quiet else print)
    return 0


__all__ = ["add_compare_arguments", "add_pathological_arguments", "add_report_arguments",
           "add_sweep_arguments", "main_compare", "main_pathological", "main_report",
           "main_sweep"]
