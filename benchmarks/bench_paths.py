"""Path-machinery benchmarks: enumeration rate, gamma^2 by enumeration vs the squared network,
and the largest network ``rnnlab verify`` checks within a time budget.

Usage::

    python benchmarks/bench_paths.py            # full tables (a few minutes)
    python benchmarks/bench_paths.py --quick    # small sizes, a few seconds
    python benchmarks/bench_paths.py --verify-budget 60 --skip-enumeration --skip-gamma

Prints three tables:

1. ``bulk()`` (vectorised) and ``iter_paths()`` (lazy) paths per second as the count grows;
2. gamma^2 by explicit enumeration (Eq. 2), node recursion (Eq. 3) and the squared network
   (Theorem 3 (path-sgd)) as the count grows, with the speed-up of the squared network;
3. ``rnnlab.paths.checks.run_checks`` wall time for growing networks (2 layers of width 3, all
   4 bias/output variants, 1 parameter draw, T growing), up to the budget: the largest that fits.

Timings are the best of ``--repeat`` runs with ``time.perf_counter``; record the machine and the
BLAS thread count with the figures (see ``benchmarks/PATHS.md``).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from rnnlab.models import ElmanSpec  # noqa: E402
from rnnlab.params import unflatten  # noqa: E402
from rnnlab.paths import UnrolledGraph, checks, n_params, norms  # noqa: E402


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def params_for(spec, seed=0):
    rng = np.random.default_rng(seed)
    return unflatten(0.7 * rng.standard_normal(n_params(spec)), spec, host=True)


def enumeration_table(quick, repeat, limit):
    print("\n1. Path enumeration rate (1 layer, H = 4, n_in = n_out = 2, bias, outputs every)")
    print(f"{'T':>3} {'paths':>10} {'bulk s':>9} {'bulk paths/s':>13} {'lazy s':>9} "
          f"{'lazy paths/s':>13}")
    spec = ElmanSpec(2, (4,), 2, "relu", True, "every")
    T = 2
    while True:
        g = UnrolledGraph(spec, T, max_paths=limit)
        P = g.count_paths()
        if P > limit:
            break
        tb, _ = best_of(g.bulk, repeat)
        if P <= (20_000 if quick else 300_000):
            tl, _ = best_of(lambda: sum(1 for _ in g.iter_paths()), 1)
            lazy = f"{tl:9.3f} {P / tl:13,.0f}"
        else:
            lazy = f"{'-':>9} {'-':>13}"
        print(f"{T:3d} {P:10,d} {tb:9.4f} {P / tb:13,.0f} {lazy}")
        T += 1


def gamma_table(quick, repeat, limit):
    print("\n2. gamma^2: enumeration (Eq. 2) vs node recursion (Eq. 3) vs squared network "
          "(Theorem 3 (path-sgd))\n   (2 layers, H = 3, n_in = n_out = 2, bias, outputs every)")
    print(f"{'T':>3} {'paths':>10} {'enum s':>9} {'recursion s':>12} {'squared s':>10} "
          f"{'enum/squared':>13} {'rel. diff':>10}")
    spec = ElmanSpec(2, (3, 3), 2, "relu", True, "every")
    p = params_for(spec)
    T = 1
    while True:
        g = UnrolledGraph(spec, T, max_paths=limit)
        P = g.count_paths()
        if P > limit:
            break
        te, ge = best_of(lambda: norms.gamma2_enumeration(spec, p, T, max_paths=limit), repeat)
        tr, _ = best_of(lambda: norms.gamma2_recursion(spec, p, T), repeat)
        ts, gs = best_of(lambda: norms.gamma2_squared_network(spec, p, T), max(repeat, 5))
        print(f"{T:3d} {P:10,d} {te:9.4f} {tr:12.4f} {ts:10.5f} {te / ts:13,.0f} "
              f"{abs(ge - gs) / gs:10.1e}")
        T += 1
    for T in ([50, 200] if quick else [50, 200, 1000]):
        P = UnrolledGraph(spec, T).count_paths()
        tr, _ = best_of(lambda: norms.gamma2_recursion(spec, p, T), 1)
        ts, _ = best_of(lambda: norms.gamma2_squared_network(spec, p, T), repeat)
        print(f"{T:3d} {'~1e' + str(len(str(P)) - 1):>10} {'refused':>9} {tr:12.4f} {ts:10.5f}")


def verify_table(budget, quick):
    print(f"\n3. run_checks wall time (layers = (2,), widths = (3,), seeds = (0,), instances = 1,"
          f" 4 bias/output variants, max_paths = 1e6), budget {budget:.0f} s")
    print(f"{'T':>3} {'paths (largest)':>16} {'seconds':>8} {'claims':>7} {'passed':>7} "
          f"{'T lowered':>10}")
    full = lowered = None
    for T in range(2, 5 if quick else 16):
        spec = ElmanSpec(2, (3, 3), 2, "relu", True, "every")
        P = UnrolledGraph(spec, T).count_paths()
        start = time.perf_counter()
        results = checks.run_checks(layers=(2,), widths=(3,), T=T, seeds=(0,), instances=1)
        took = time.perf_counter() - start
        ok = sum(r.passed for r in results)
        n_low = sum("T lowered" in r.note for r in results)
        print(f"{T:3d} {P:16,d} {took:8.1f} {len(results):7d} {ok:7d} {n_low:10d}")
        if took <= budget and ok == len(results):
            lowered = (T, P, took)
            if n_low == 0:
                full = (T, P, took)
        if took > budget or ok < len(results):
            break
    if full:
        print(f"largest with every claim at the full T within {budget:.0f} s: T = {full[0]} "
              f"({full[1]:,} paths), {full[2]:.1f} s")
    if lowered:
        print(f"largest passing within {budget:.0f} s (enumeration claims on a shorter unroll): "
              f"T = {lowered[0]} ({lowered[1]:,} paths), {lowered[2]:.1f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None,
                        help="largest path count to enumerate (default 3e6, quick 1e5)")
    parser.add_argument("--verify-budget", type=float, default=60.0)
    parser.add_argument("--skip-enumeration", action="store_true")
    parser.add_argument("--skip-gamma", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args(argv)
    limit = args.limit or (100_000 if args.quick else 3_000_000)
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "MKL_NUM_THREADS") if os.environ.get(k)}
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, threads env {threads or 'unset'}")
    if not args.skip_enumeration:
        enumeration_table(args.quick, args.repeat, limit)
    if not args.skip_gamma:
        gamma_table(args.quick, args.repeat, limit)
    if not args.skip_verify:
        verify_table(args.verify_budget, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
