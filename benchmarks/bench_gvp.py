"""Time one Gauss-Newton-vector product (``objective.gauss_newton_product``: R-op forward, loss
curvature, BPTT) against one loss + gradient (``objective.batch_loss_and_grads``: forward, loss,
BPTT) of rnnlab's Elman ReLU RNN on the same batch, float32, paired and interleaved in one
process.

    python benchmarks/bench_gvp.py                   # three configs, 5 reps x 8 rounds (~1 min)
    python benchmarks/bench_gvp.py --quick           # smoke test, a few seconds
    python benchmarks/bench_gvp.py --configs add-T100 charlm-H256 --reps 7

How it measures:
- per config: the model, batch and a random direction v are built once; a forward is run once
  for the "given cache" variant (``cache=, outputs=`` reused, as across the products of one
  conjugate-gradient solve);
- a round runs each operation once (gradient, G v with the cache, G v including its forward,
  and, to see where the time goes, a forward alone and an R-op alone), the order rotating from
  round to round; a repetition is --rounds rounds, and its
  time per operation is the median of its rounds;
- a repetition during which other processes took more than --quiet of the machine's CPU (read
  from /proc, as in bench_step.py) is repeated, up to --max-tries times --reps attempts;
- reported: the median over repetitions of each operation's time, and the ratio G v / gradient
  as the median of the per-repetition ratios, with [min..max].
Theory: a gradient is a forward and a backward; G v is an R-op (a forward's recurrence plus the
direction's GEMMs over all steps) and a backward, so about 1.3-2x a gradient.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from _step_common import CONFIGS, make_batch, make_rnnlab_model
from bench_step import ForeignLoad, cpu_model, fmt_ms, fmt_ratio, load_average, print_table

DEFAULT_CONFIGS = ("add-T100", "charlm-H256", "smnist")
OPS = ("grad", "gvp_cached", "gvp_full", "forward", "rop")


class Problem:
    """One config's model, batch, direction and cached forward, and its three operations."""

    def __init__(self, cfg, dtype="float32"):
        from rnnlab import losses, objective
        self.objective = objective
        self.model = make_rnnlab_model(cfg, dtype)
        x, y = make_batch(cfg, dtype)
        self.batch = objective.Batch(x, y)
        self.loss = losses.mse if cfg.loss == "mse" else losses.softmax_cross_entropy
        rng = np.random.default_rng(1)
        self.v = {k: (0.01 * rng.standard_normal(p.shape)).astype(dtype)
                  for k, p in self.model.params.items()}
        self.y, self.cache = self.model.forward(self.model.params, x)

    def run(self, op: str):
        o, m, p = self.objective, self.model, self.model.params
        if op == "grad":
            return o.batch_loss_and_grads(m, p, self.batch, self.loss)[1]
        if op == "forward":
            return m.forward(p, self.batch.x)
        if op == "rop":
            return m.rop(p, self.v, self.cache)
        if op == "gvp_cached":
            return o.gauss_newton_product(m, p, self.batch, self.v, self.loss, cache=self.cache,
                                          outputs=self.y)
        return o.gauss_newton_product(m, p, self.batch, self.v, self.loss)


def time_config(name, reps, rounds, warmup, quiet, max_tries) -> dict:
    prob = Problem(CONFIGS[name])
    gv = prob.run("gvp_cached")
    if not all(np.isfinite(g).all() for g in gv.values()):
        raise RuntimeError(f"{name}: G v is not finite")
    for _ in range(warmup):
        for op in OPS:
            prob.run(op)
    kept, tried, loads = [], 0, []
    while len(kept) < reps and tried < max_tries * reps:
        tried += 1
        load = ForeignLoad([os.getpid()])
        times = {op: [] for op in OPS}
        for r in range(rounds):
            order = OPS[r % len(OPS):] + OPS[:r % len(OPS)]
            for op in order:
                start = time.perf_counter()
                prob.run(op)
                times[op].append(time.perf_counter() - start)
        share = load.share()
        if share is not None and share > quiet:
            continue
        kept.append({op: statistics.median(t) for op, t in times.items()})
        loads.append(share or 0.0)
    if not kept:
        raise RuntimeError(f"{name}: every repetition had other load above {quiet:.0%}")
    return {"reps": kept, "tried": tried, "load": max(loads)}


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            p = pools[0]
            return (f"{p.get('internal_api')} {p.get('version')}, kernel "
                    f"{p.get('architecture')}, {p.get('num_threads')} threads (threadpoolctl)")
    except ImportError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name')} {blas.get('version')} (numpy.show_config)"
    except Exception:  # show_config's layout differs across NumPy versions
        text = "unknown"
    return text + _openblas_runtime()


def _openblas_runtime() -> str:
    """The kernel and thread count the loaded OpenBLAS reports (Linux, scipy-openblas builds,
    read through ctypes when threadpoolctl is missing), or ""."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
        lib = ctypes.CDLL(paths[0])
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if core is not None and threads is not None:
                core.restype, threads.restype = ctypes.c_char_p, ctypes.c_int
                return f", kernel {core().decode()}, {threads()} threads (ctypes)"
    except (OSError, IndexError, AttributeError, UnicodeDecodeError):
        pass
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        choices=sorted(CONFIGS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quiet", type=float, default=0.10)
    parser.add_argument("--max-tries", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="add-T100 only, 2 reps x 2 rounds: checks that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.reps, args.rounds, args.warmup = ["add-T100"], 2, 2, 1

    print("# rnnlab Gauss-Newton-vector product vs gradient\n")
    command = " ".join(["python benchmarks/bench_gvp.py"]
                       + list(argv if argv is not None else sys.argv[1:]))
    print(f"command: `{command}`\n")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs")
    print(f"- Python {platform.python_version()}, NumPy {np.__version__}; BLAS: {blas_info()}")
    print(f"- load average before starting (1, 5, 15 min): {load_average()}")
    print(f"- {args.reps} reps x {args.rounds} interleaved rounds per config after "
          f"{args.warmup} warm-up rounds; float32; a rep is repeated when other processes took "
          f"more than {args.quiet:.0%} of the CPU during it\n")

    rows, parts, started = [], [], time.perf_counter()
    for name in args.configs:
        cfg = CONFIGS[name]
        res = time_config(name, args.reps, args.rounds, args.warmup, args.quiet,
                          args.max_tries)
        med = {op: statistics.median(r[op] for r in res["reps"]) for op in OPS}
        cached = [r["gvp_cached"] / r["grad"] for r in res["reps"]]
        full = [r["gvp_full"] / r["grad"] for r in res["reps"]]
        where = "last step" if cfg.outputs == "last" else "every step"
        loss = "MSE" if cfg.loss == "mse" else "CE"
        rows.append([name, f"n_in {cfg.n_in}, H {cfg.H}, B {cfg.B}, T {cfg.T}, {loss} at {where}",
                     fmt_ms(med["grad"]), fmt_ms(med["gvp_cached"]), fmt_ratio(cached),
                     fmt_ms(med["gvp_full"]), fmt_ratio(full),
                     f"{len(res['reps'])} / {res['tried']}", f"{res['load']:.0%}"])
        rop = [r["rop"] / r["forward"] for r in res["reps"]]
        parts.append([name, fmt_ms(med["forward"]), fmt_ms(med["rop"]), fmt_ratio(rop),
                      fmt_ms(med["grad"] - med["forward"]),
                      fmt_ms(med["gvp_cached"] - med["rop"])])
    print_table(["config", "shape", "gradient ms", "G v (cache given) ms",
                 "G v / gradient", "G v (with forward) ms", "G v + forward / gradient",
                 "reps kept / tried", "other load (max)"], rows)
    print("Where the time goes (same runs; the last two columns are differences of medians):\n")
    print_table(["config", "forward ms", "R-op ms", "R-op / forward",
                 "gradient - forward ms (loss + BPTT)",
                 "G v (cache) - R-op ms (curvature + BPTT)"], parts)
    print(f"gradient = objective.batch_loss_and_grads (forward + loss + BPTT); G v = "
          f"objective.gauss_newton_product (R-op + loss curvature + BPTT); ratios: median "
          f"[min..max] over reps of per-rep ratios. Total {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
