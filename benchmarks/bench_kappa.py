"""Path-SGD's cost per training step against SGD, where the time goes, and the faster kappa^(2).

Usage::

    python benchmarks/bench_kappa.py              # both shapes, 7 paired reps of 20 steps
    python benchmarks/bench_kappa.py --quick      # 3 reps of 5 steps
    python benchmarks/bench_kappa.py --no-former  # skip timing the former kappa^(2) double sum
    python benchmarks/bench_kappa.py --only-depth # only table 4 (kappa^(1) by scan depth)

One training step is ``rnnlab.train.run.train_step`` (forward, BPTT, clipping at 1, the update) in
float32 on the given batch; Path-SGD computes kappa in float64 every step. Within each rep the
three optimizers (SGD, Path-SGD with kappa^(1), Path-SGD with kappa^(1) + kappa^(2)) take their
steps interleaved, one step each in turn, so load changes on the machine hit all three alike; the
ratio of each rep's medians is reported as median [min..max] over reps.

Prints:

1. per shape, ms per training step and the ratios to SGD (the issue's goal: Path-SGD with
   kappa^(1) <= 1.10 x SGD);
2. per shape, where Path-SGD's extra time goes: the squared network's pass (kappa^(1)), the
   kappa^(2) recursion, the division and update, the two step metrics;
3. kappa^(2) alone (``rnnlab.paths.norms.kappa2_fast``) against the former double sum of outer
   products and matrix powers (copied below), at H = T = 100 and the shapes above;
4. kappa^(1) alone (``kappa_device``, as Path-SGD calls it) by the depth of the squared pass's
   scans (``norms._linear_scan``): depth 0 is the former step-by-step loop, "auto" the depth the
   cost table picks (``norms._scan_levels``), interleaved, with the largest relative difference
   from depth 0.

Shapes: T steps, B batch, n_in inputs, H hidden, K outputs. Record the machine, the BLAS and its
thread count, and the load with the figures.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

from rnnlab import ElmanRNN, backend, losses  # noqa: E402
from rnnlab.objective import Batch  # noqa: E402
from rnnlab.optim import SGD  # noqa: E402
from rnnlab.optim.path_sgd import PathSGD, batch_kappa, kappa_range  # noqa: E402
from rnnlab.params import host_vector  # noqa: E402
from rnnlab.paths import norms  # noqa: E402
from rnnlab.train.run import train_step  # noqa: E402

#: (name, n_in, H, K, B, T, outputs, loss): the adding problem and the one-hot char-LM of
#: benchmarks/bench_step.py
SHAPES = [("adding H=100 T=100 B=50", 2, 100, 1, 50, 100, "last", "mse"),
          ("char-LM H=256 T=50 B=32", 50, 256, 50, 32, 50, "every", "cross_entropy")]


def make(shape, seed=0):
    """Model (float32, IRNN init), batch and loss for one shape."""
    _, n_in, H, K, B, T, outputs, loss = shape
    rng = np.random.default_rng(seed)
    model = ElmanRNN.create(n_in, H, K, outputs=outputs, init="identity", seed=seed,
                            dtype="float32")
    if loss == "mse":
        x = rng.random((T, B, n_in))
        y = rng.random((B, K))
        fn = losses.mse
    else:
        symbols = rng.integers(0, n_in, (T + 1, B))
        x = np.eye(n_in)[symbols[:-1]]
        y = symbols[1:].astype(np.int64)
        fn = losses.softmax_cross_entropy
    batch = Batch(backend.to_device(x, dtype="float32"),
                  backend.to_device(y, dtype="float32" if loss == "mse" else None))
    return model, batch, fn


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_table(shape, reps, steps):
    model, batch, loss = make(shape)
    # tiny rates: ~100 updates on one batch must not change the work (no divergence)
    opts = {"SGD": SGD(lr=1e-7), "Path-SGD kappa1": PathSGD(lr=1e-9),
            "Path-SGD kappa1+kappa2": PathSGD(lr=1e-9, second_term=True)}
    params = {name: {k: v.copy() for k, v in model.params.items()} for name in opts}
    for name, opt in opts.items():   # warm-up
        train_step(model, params[name], opt, batch, loss, clip=1.0)
    per_rep = {name: [] for name in opts}
    for _ in range(reps):
        times = {name: [] for name in opts}
        for _ in range(steps):
            for name, opt in opts.items():
                times[name].append(timed(
                    lambda: train_step(model, params[name], opt, batch, loss, clip=1.0)))
        for name in opts:
            per_rep[name].append(statistics.median(times[name]))
    return per_rep


def parts_table(shape, repeat):
    """Median seconds of the pieces of Path-SGD's extra work at this shape."""
    model, batch, _ = make(shape)
    spec, params = model.spec, model.params
    xp = backend.get_xp()
    grads = {k: xp.ones_like(v) for k, v in params.items()}
    kappa = batch_kappa(spec, params, batch, second_term=False)

    def division_and_update():
        k = {n: v.copy() for n, v in kappa.items()}
        for name, p in params.items():
            d = k[name]
            d += 1e-30
            xp.divide(grads[name], d, out=d)
            d *= 0.0
            p -= d.astype(p.dtype, copy=False)

    parts = {
        "squared pass + kappa^(1)": lambda: batch_kappa(spec, params, batch, second_term=False),
        "kappa^(1) + kappa^(2)": lambda: batch_kappa(spec, params, batch, second_term=True),
        "division + update (incl. a copy of kappa)": division_and_update,
        "metrics (kappa min/max, 1 transfer)": lambda: kappa_range(kappa),
    }
    for fn in parts.values():   # warm-up: first calls in a process pay for fresh memory
        for _ in range(5):
            fn()
    return {name: statistics.median(timed(fn) for _ in range(repeat))
            for name, fn in parts.items()}


def former_kappa2(spec, params, T):
    """The former kappa2_fast: the double sum of outer products and matrix powers, on the host
    (kept here only to time the speed-up; tests/test_path_sgd.py has the same reference)."""
    h, delta = norms.squared_network_pass(spec, params, T)
    sq = norms.squared_params(spec, params)
    out = {}
    for i in range(1, spec.layers + 1):
        w = sq[f"layer{i}.W_rec"]
        hi, di = h[i - 1], delta[i - 1]
        total, power = np.zeros_like(w), np.eye(w.shape[0])
        for n in range(0, T - 2):
            inner = sum((np.outer(di[s + n + 2], hi[s]) for s in range(1, T - 1 - n)),
                        np.zeros_like(w))
            total += power.T * inner
            power = power @ w
        out[f"layer{i}.W_rec"] = 4.0 * w * total
    return out


def kappa2_table(repeat, former):
    rows = []
    for name, n_in, H, K, _, T, outputs, _ in [("H=T=100, last", 2, 100, 1, 0, 100, "last", "")] \
            + [s for s in SHAPES]:
        model = ElmanRNN.create(n_in, H, K, outputs=outputs, init="uniform", scale=0.1, seed=0,
                                dtype="float64")
        spec, params = model.spec, model.params
        new = statistics.median(timed(lambda: norms.kappa2_fast(spec, params, T))
                                for _ in range(repeat))
        old = (statistics.median(timed(lambda: former_kappa2(spec, params, T))
                                 for _ in range(max(1, repeat // 3))) if former else None)
        if former:
            a = norms.kappa2_fast(spec, params, T)["layer1.W_rec"]
            b = former_kappa2(spec, params, T)["layer1.W_rec"]
            err = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
        rows.append((name, new, old, err if former else None))
    return rows


@contextlib.contextmanager
def scan_depth(depth):
    """Force the depth of the squared pass's scans (None: the cost table's choice)."""
    chosen = norms._scan_levels
    if depth is not None:
        norms._scan_levels = lambda n, H, chains=2: depth
    try:
        yield
    finally:
        norms._scan_levels = chosen


def depth_table(shape, repeat):
    """Median ms of kappa^(1) (kappa_device, second_term=False, float64) at each scan depth,
    interleaved; and the largest relative difference from depth 0 (the step-by-step loop)."""
    model, batch, _ = make(shape)
    spec, params, T = model.spec, model.params, batch.T
    depths = [None] + list(range(T.bit_length()))
    run = {d: (lambda d=d: batch_kappa(spec, params, batch, second_term=False)) for d in depths}
    times = {d: [] for d in depths}
    for d in depths:                # warm-up
        with scan_depth(d):
            for _ in range(5):
                run[d]()
    for _ in range(repeat):
        for d in depths:
            with scan_depth(d):
                times[d].append(timed(run[d]))
    with scan_depth(0):
        base = host_vector(batch_kappa(spec, params, batch, second_term=False), spec)
    err = 0.0
    for d in depths:
        with scan_depth(d):
            k = host_vector(batch_kappa(spec, params, batch, second_term=False), spec)
        err = max(err, float(np.max(np.abs(k - base) / np.maximum(np.abs(base), 1e-300))))
    auto = norms._scan_levels(T, spec.hidden[-1])
    return {d: statistics.median(ts) for d, ts in times.items()}, auto, err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="3 reps of 5 steps")
    ap.add_argument("--no-former", action="store_true",
                    help="do not time the former kappa^(2) double sum")
    ap.add_argument("--only-depth", action="store_true",
                    help="only table 4: kappa^(1) by the depth of the scans")
    args = ap.parse_args(argv)
    reps, steps = (3, 5) if args.quick else (args.reps, args.steps)
    print(f"# bench_kappa: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"backend {backend.backend_name()}, numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"load {os.getloadavg()[0]:.2f}")
    for shape in SHAPES if not args.only_depth else []:
        per_rep = step_table(shape, reps, steps)
        base = per_rep["SGD"]
        print(f"\n1. {shape[0]}: ms per training step (median of {steps} steps, {reps} reps)")
        for name, ts in per_rep.items():
            ratios = sorted(t / b for t, b in zip(ts, base))
            print(f"   {name:24s} {1e3 * statistics.median(ts):8.2f} ms   x SGD "
                  f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}..{ratios[-1]:.3f}]")
        print(f"2. {shape[0]}: Path-SGD's extra work, median ms")
        for name, t in parts_table(shape, 5 * steps).items():
            print(f"   {name:42s} {1e3 * t:8.3f}")
    if not args.only_depth:
        print("\n3. kappa^(2) (kappa2_fast, float64) against the former double sum, median ms")
        for name, new, old, err in kappa2_table(5, not args.no_former):
            extra = (f"   former {1e3 * old:9.1f} ms   speed-up {old / new:6.1f}x   "
                     f"max rel. difference {err:.1e}") if old is not None else ""
            print(f"   {name:26s} {1e3 * new:8.2f} ms{extra}")
    print("\n4. kappa^(1) (kappa_device as Path-SGD calls it) by the depth of the scans, median ms "
          "(depth 0: the former step-by-step loop)")
    for shape in SHAPES:
        table, auto, err = depth_table(shape, 10 * steps)
        cells = "  ".join(f"{'auto' if d is None else d}: {1e3 * t:.3f}" for d, t in table.items())
        print(f"   {shape[0]}: auto = depth {auto}; {cells}; x depth 0: "
              f"{table[None] / table[0]:.2f}; max rel. difference from depth 0 {err:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
