"""Sweep throughput and overhead: 1 vs 2 workers, local pool vs Dask LocalCluster.

Measured in one run, side by side:

* **throughput**: a CPU-bound sweep (``--cells`` cells of ``--steps`` adding-problem steps,
  T = 50, 100 ReLU units, SGD) on the local pool with 1 worker and with 2 workers (and on a Dask
  LocalCluster of 2 worker processes); the speed-up is cells per second relative to 1 worker
  (goal >= 1.8x with 2 workers on 2 cores).
* **per-cell overhead** of scheduling and storage: sweeps of tiny cells (1 training step) with
  ``n`` and ``4 n`` cells; the slope of ``workers x wall - sum of the cells' own run time`` over
  the number of cells is what each cell costs beyond its run (pickling, the executor's queue,
  the SQLite transaction), with the pool's start-up cancelled out. Goal: < 1 % of a 10-second
  cell, i.e. < 100 ms.

Usage::

    python benchmarks/bench_sweep.py                 # ~4 minutes on 2 cores
    python benchmarks/bench_sweep.py --quick         # smoke test, ~1 minute
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnnlab.experiments.driver import run_sweep  # noqa: E402
from rnnlab.experiments.store import Store  # noqa: E402
from rnnlab.experiments.sweep import SweepSpec  # noqa: E402
from rnnlab.train.sinks import environment  # noqa: E402


def spec(cells: int, steps: int) -> SweepSpec:
    return SweepSpec.from_dict({
        "base": {"task": {"name": "adding", "T": 50},
                 "model": {"name": "elman", "hidden": 100},
                 "optimizer": {"name": "sgd", "lr": 1e-3},
                 "train": {"steps": steps, "batch": 50, "eval_every": max(1, steps // 4),
                           "eval_size": 200, "test_size": 200}},
        "seeds": list(range(cells))})


def timed(executor: str, workers: int, sweep: SweepSpec) -> tuple:
    """(wall seconds, sum of the cells' own run seconds) of one sweep in a new folder."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        result = run_sweep(sweep, folder, executor=executor, workers=workers, progress=False,
                           report=False, echo=lambda *_: None)
        wall = time.perf_counter() - started
        assert result.complete and result.counts.get("done") == sweep_size(sweep), result
        with Store(folder, readonly=True) as store:
            own = sum(row["seconds"] for row in store.cells())
    return wall, own


def sweep_size(sweep) -> int:
    return len(sweep.cells())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=12, help="cells of the CPU-bound sweep")
    p.add_argument("--steps", type=int, default=1500, help="steps per CPU-bound cell")
    p.add_argument("--tiny", type=int, default=20, help="n of the overhead sweeps (n and 4n)")
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--quick", action="store_true", help="6 cells of 300 steps, n = 10")
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.steps, args.tiny = 6, 300, 10
    try:
        import dask.distributed  # noqa: F401
        dask = not args.no_dask
    except ImportError:
        dask = False
    print(f"machine: {environment()['cpu']}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")

    heavy = spec(args.cells, args.steps)
    rows = []
    for executor, workers in [("local", 1), ("local", 2)] + ([("dask", 2)] if dask else []):
        wall, own = timed(executor, workers, heavy)
        rows.append((executor, workers, wall, own))
    base = rows[0][2]
    print(f"\nthroughput: {args.cells} cells x {args.steps} steps (adding T=50, H=100, SGD)")
    print(f"{'executor':<10} {'workers':>7} {'wall s':>8} {'cells/s':>8} {'speed-up':>9} "
          f"{'mean cell s':>12}")
    for executor, workers, wall, own in rows:
        print(f"{executor:<10} {workers:>7} {wall:>8.2f} {args.cells / wall:>8.3f} "
              f"{base / wall:>8.2f}x {own / args.cells:>12.2f}")

    print(f"\nper-cell overhead (scheduling + storage), from sweeps of {args.tiny} and "
          f"{4 * args.tiny} one-step cells")
    print(f"{'executor':<10} {'workers':>7} {'ms per cell':>12} {'of a 10 s cell':>15}")
    for executor, workers in [("local", 1), ("local", 2)] + ([("dask", 2)] if dask else []):
        small = [timed(executor, workers, spec(n, 1)) for n in (args.tiny, 4 * args.tiny)]
        extra = [workers * wall - own for wall, own in small]
        per_cell = (extra[1] - extra[0]) / (3 * args.tiny)
        print(f"{executor:<10} {workers:>7} {1e3 * per_cell:>12.1f} "
              f"{100 * per_cell / 10:>14.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
