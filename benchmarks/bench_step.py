"""Time one training step (forward + BPTT + SGD update, float32) of rnnlab's Elman ReLU RNN,
side by side with PyTorch's ``nn.RNN(nonlinearity='relu')`` + ``nn.Linear`` when torch is
importable, and compare both with the physical floor of the machine.

    python benchmarks/bench_step.py                      # all configs, 5 reps x 10 steps
    python benchmarks/bench_step.py --quick --no-torch   # smoke test, a few seconds
    python benchmarks/bench_step.py --configs add-T100 smnist --reps 7 --steps 20
    python benchmarks/bench_step.py --no-torch --baseline HEAD~3 --path trainer  # new vs old
    python benchmarks/bench_step.py --no-torch --optimizers path-sgd gsgd  # optimizer vs SGD

How it measures (details in benchmarks/README.md):
- one long-lived process per engine (rnnlab; PyTorch at --threads; PyTorch at 1 thread); this
  process only tells them when to run, one at a time, the order rotating every repetition;
- per config: each engine builds its model and batch and runs --warmup untimed steps, then
  --reps repetitions of --steps timed steps; a repetition's time is the median of its steps;
- a repetition during which other processes took more than --quiet of the machine's CPU (read
  from /proc) is repeated, up to --max-tries times --reps attempts in all;
- reported: the median over repetitions of an engine's step time, and the ratio rnnlab / PyTorch
  as the median of the per-repetition ratios, with [min..max];
- the floor: FLOPs per step / the peak GEMM rate measured in this run (a large float32 GEMM,
  NumPy) + the dispatch floor (NumPy calls per time step x T x the measured cost of one call).
Before timing, a float64 check confirms that rnnlab's and PyTorch's gradients agree on identical
weights, so both do the same work.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _step_common import CONFIGS  # noqa: E402

WORKER = HERE / "_step_worker.py"
PAUSE_S = 0.05  # between turns: lets the previous engine's spinning worker threads go to sleep


class Worker:
    """A worker process (``_step_worker.py``) spoken to through JSON lines."""

    def __init__(self, label: str, engine: str, threads: int | None, tree: str | None = None,
                 path: str = "core", optimizer: str = "sgd"):
        self.label = label
        env = dict(os.environ)
        if engine == "rnnlab" and threads:
            env["OPENBLAS_NUM_THREADS"] = str(threads)  # only the thread count, never the kernel
        # rnnlab from this checkout, or from an exported older tree (--baseline)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree or str(HERE.parent),
                                                          env.get("PYTHONPATH")]))
        cmd = [sys.executable, str(WORKER), "--engine", engine, "--path", path,
               "--optimizer", optimizer]
        if threads:
            cmd += ["--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, env=env, cwd=str(HERE))

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.label} exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.label}: {reply['error']}")
        return reply

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=30)


class ForeignLoad:
    """How much CPU other processes (and the hypervisor, as steal time) took since construction,
    from /proc (Linux only; :meth:`share` is None elsewhere).

    share = (busy CPU time of the whole machine - CPU time of our processes) / (wall time x
    CPUs): 0 on a quiet machine; 0.5 means another job kept one of two cores busy, and then
    2-thread timings are meaningless (a BLAS or OpenMP thread waits for a preempted partner).
    Resolution: one clock tick (10 ms) per CPU."""

    def __init__(self, pids):
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.start = self._snap()

    def _snap(self):
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle, iowait (steal counts)
            ours = 0
            for pid in self.pids:
                with open(f"/proc/{pid}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                ours += int(parts[11]) + int(parts[12])  # utime + stime
            return time.perf_counter(), busy, ours
        except (OSError, ValueError, IndexError):
            return None

    def share(self):
        end, start = self._snap(), self.start
        if end is None or start is None:
            return None
        wall = end[0] - start[0]
        foreign = ((end[1] - start[1]) - (end[2] - start[2])) / self.tick
        return max(0.0, foreign / (wall * (os.cpu_count() or 1)))


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_ratio(values) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}..{max(values):.2f}]"


def print_table(header, rows) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def run_check(configs) -> bool:
    """The float64 gradient agreement check, in its own short-lived process."""
    print("## Gradient agreement, float64, identical weights and batch (one step, no update)\n")
    out = subprocess.run([sys.executable, str(WORKER), "--check", *configs],
                         capture_output=True, text=True, cwd=str(HERE))
    if out.returncode != 0:
        print("check failed to run:\n" + out.stderr)
        return False
    rows, ok = [], True
    for line in out.stdout.splitlines():
        r = json.loads(line)
        ok &= r["max_rel"] < 1e-10
        rows.append([r["config"], f"{r['loss_rnnlab']:.12g}", f"{r['loss_torch']:.12g}",
                     f"{r['max_rel']:.1e}", r["worst_param"]])
    print_table(["config", "loss rnnlab", "loss torch",
                 "max over params of max abs(g_rnnlab - g_torch) / max abs(g_torch)",
                 "worst param"], rows)
    if not ok:
        print("WARNING: gradients differ by more than 1e-10 relative; timings compare "
              "different work.\n")
    return ok


def time_config(name, workers, pids, reps, steps, warmup, quiet, max_tries) -> dict:
    """Paired, interleaved repetitions of one config; disturbed repetitions are repeated."""
    order = list(workers)
    for w in workers.values():
        setup = w.ask(op="setup", config=name, warmup=warmup)
        if setup.get("subnormal"):
            print(f"WARNING: {name}: {setup['subnormal']}\n")
    attempts, losses = [], {}
    while sum(a["kept"] for a in attempts) < reps and len(attempts) < reps * max_tries:
        # rotate who goes first and reverse every other attempt, so no engine always follows
        # the same one
        n = len(attempts)
        k = n % len(order)
        turn = order[k:] + order[:k]
        if n % 2:
            turn = turn[::-1]
        monitor = ForeignLoad(pids)
        times, faults = {}, {}
        for label in turn:
            time.sleep(PAUSE_S)
            r = workers[label].ask(op="time", steps=steps)
            times[label], losses[label] = r["times"], r["loss"]
            faults[label] = r.get("page_faults_per_step")
        share = monitor.share()
        attempts.append({"times": times, "foreign": share, "page_faults_per_step": faults,
                         "kept": share is None or share <= quiet})
    kept = [a for a in attempts if a["kept"]]
    if len(kept) < reps:  # never quiet enough: keep the least disturbed attempts
        rest = sorted((a for a in attempts if not a["kept"]), key=lambda a: a["foreign"])
        kept += rest[:reps - len(kept)]
    steps_done = warmup + len(attempts) * steps
    return {"attempts": attempts, "kept": kept, "final_loss": losses, "steps_done": steps_done}


def git(*args) -> str:
    return subprocess.run(["git", "-C", str(HERE.parent), *args], capture_output=True,
                          text=True, check=True).stdout.strip()


def export_revision(rev: str) -> str:
    """The rnnlab package of git revision ``rev``, exported into a new temporary folder."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="rnnlab-baseline-")
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev, "rnnlab"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), metavar="CONFIG",
                    help=f"configs to run (default all: {' '.join(CONFIGS)})")
    ap.add_argument("--reps", type=int, default=5, help="paired repetitions (default 5)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per repetition (10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per config (3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for NumPy's BLAS and PyTorch (default: all cores)")
    ap.add_argument("--quiet", type=float, default=0.10,
                    help="repeat a repetition if other processes took more than this share of "
                         "the machine's CPU during it (default 0.10)")
    ap.add_argument("--max-tries", type=int, default=3,
                    help="at most this many times --reps attempts per config (default 3)")
    ap.add_argument("--nice", type=int, default=0,
                    help="scheduling priority of the benchmark and its workers, e.g. -10 on a "
                         "machine shared with other jobs (negative values need privileges)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: add-T100 and charlm-H256, 2 reps x 2 steps, small peak GEMM")
    ap.add_argument("--no-torch", action="store_true", help="time rnnlab only")
    ap.add_argument("--no-check", action="store_true", help="skip the float64 gradient check")
    ap.add_argument("--json", metavar="PATH", help="also write the raw per-step times here")
    ap.add_argument("--baseline", metavar="REV",
                    help="also time the rnnlab of git revision REV (exported to a temporary "
                         "folder), paired with this checkout's: the new / old ratio")
    ap.add_argument("--path", choices=("core", "trainer"), default="core",
                    help="what rnnlab's step runs: core (loss_and_grads + SGD.step, the "
                         "PyTorch comparison) or trainer (train.train_step)")
    ap.add_argument("--optimizers", nargs="+", default=[], metavar="NAME",
                    help="also time these registered optimizers through train_step, each in its "
                         "own worker, paired with SGD through train_step (implies --path trainer)")
    args = ap.parse_args(argv)

    if args.quick:
        configs = args.configs or ["add-T100", "charlm-H256"]
        reps, steps, warmup, peak_n = min(args.reps, 2), min(args.steps, 2), 1, 1024
        max_tries = 1
    else:
        configs = args.configs or list(CONFIGS)
        reps, steps, warmup, peak_n = args.reps, args.steps, args.warmup, 2048
        max_tries = args.max_tries
    threads = args.threads
    use_torch = not args.no_torch and importlib.util.find_spec("torch") is not None

    print(f"# rnnlab training-step benchmark\n\ncommand: `python {' '.join(sys.argv)}`\n")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; threads used: {threads}")
    openblas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    print(f"- OPENBLAS_* environment: {openblas_env or 'none set'}")
    print(f"- load average before starting (1, 5, 15 min): {load_average()}")
    if args.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the workers inherit it
            print(f"- niceness {args.nice} for the benchmark and its workers")
        except (OSError, AttributeError) as exc:
            print(f"- could not set niceness {args.nice} ({exc}); running at the default")
    if not use_torch:
        print("- PyTorch: " + ("skipped (--no-torch)" if args.no_torch else
                               "not importable; install the [compare] extra to compare"))

    baseline_tree = export_revision(args.baseline) if args.baseline else None
    if args.optimizers:
        args.path = "trainer"
    workers = {"rnnlab": Worker("rnnlab", "rnnlab", threads, path=args.path)}
    for name in args.optimizers:
        workers[name] = Worker(name, "rnnlab", threads, path="trainer", optimizer=name)
    if baseline_tree:
        workers["baseline"] = Worker("baseline", "rnnlab", threads, tree=baseline_tree,
                                     path=args.path)
        print(f"- baseline: rnnlab at {args.baseline} "
              f"({git('rev-parse', '--short', args.baseline)}), exported to {baseline_tree}; "
              f"this checkout at {git('rev-parse', '--short', 'HEAD')}"
              f"{' + uncommitted changes' if git('status', '--porcelain') else ''}; "
              f"path: {args.path}")
    try:
        if use_torch:
            workers["torch"] = Worker("torch", "torch", threads)
            if threads != 1:
                workers["torch1"] = Worker("torch1", "torch", 1)
        infos = {k: w.ask(op="info") for k, w in workers.items()}
        ri = infos["rnnlab"]
        print(f"- Python {ri['python']}, NumPy {ri['numpy']}"
              + (f", PyTorch {infos['torch']['torch']} (CPU capability "
                 f"{infos['torch']['torch_cpu_capability']})" if use_torch else ""))
        if ri["threadpools"] is None:
            print("- NumPy BLAS: unknown (threadpoolctl missing: pip install threadpoolctl)")
        else:
            for p in ri["threadpools"]:
                print(f"- rnnlab process thread pool (threadpoolctl): {p['internal_api']} "
                      f"{p['version']} ({p['prefix']}), kernel {p.get('architecture')}, "
                      f"{p['num_threads']} threads, {p.get('threading_layer')}")
        if use_torch:
            print(f"- PyTorch threads: {infos['torch']['torch_threads']}"
                  + (f" and {infos['torch1']['torch_threads']}" if "torch1" in infos else ""))
        print(f"- {reps} paired reps x {steps} timed steps per config after {warmup} warm-up "
              f"steps; SGD, float32; a rep is repeated when other processes took more than "
              f"{args.quiet:.0%} of the CPU during it\n")

        if use_torch and not args.no_check:
            run_check(configs[:1] if args.quick else configs)

        # Floor ingredients, measured in the rnnlab process (NumPy), the only one running.
        rw = workers["rnnlab"]
        peak = rw.ask(op="peak", n=peak_n, repeats=3 if args.quick else 5)["gflops"]
        per_call = rw.ask(op="dispatch", T=200 if args.quick else 2000)["seconds_per_call"]

        results = {}
        pids = [os.getpid()] + [w.proc.pid for w in workers.values()]
        for name in configs:
            res = time_config(name, workers, pids, reps, steps, warmup, args.quiet, max_tries)
            results[name] = res
            med = {k: statistics.median(statistics.median(a["times"][k]) for a in res["kept"])
                   for k in workers}
            print(f"  {name}: " + ", ".join(f"{k} {fmt_ms(v)} ms" for k, v in med.items())
                  + f" ({len(res['attempts'])} attempts)", file=sys.stderr, flush=True)
        peak = max(peak, rw.ask(op="peak", n=peak_n, repeats=3 if args.quick else 5)["gflops"])
    finally:
        for w in workers.values():
            w.close()

    # ------------------------------------------------------------------ tables
    def rep_medians(name, label):
        return [statistics.median(a["times"][label]) for a in results[name]["kept"]]

    print(f"## Time per training step, {threads} thread(s) (ms: median over reps of each rep's "
          f"median step)\n")
    header = ["config", "B", "T", "H", "rnnlab"]
    if use_torch:
        header += [f"torch {threads}t", f"rnnlab / torch {threads}t: median [min..max]",
                   "goal", "met"]
        if "torch1" in workers:
            header += ["torch 1t", "rnnlab / torch 1t: median [min..max]"]
    header += ["reps kept / tried", "other load (kept reps, max)"]
    rows, disturbed = [], []
    for name in configs:
        cfg, res = CONFIGS[name], results[name]
        rl = rep_medians(name, "rnnlab")
        row = [name, str(cfg.B), str(cfg.T), str(cfg.H), f"**{fmt_ms(statistics.median(rl))}**"]
        if use_torch:
            tl = rep_medians(name, "torch")
            ratios = [a / b for a, b in zip(rl, tl)]
            res["ratio"] = statistics.median(ratios)
            row += [fmt_ms(statistics.median(tl)), fmt_ratio(ratios), f"<= {cfg.goal}",
                    "yes" if res["ratio"] <= cfg.goal else "NO"]
            if "torch1" in workers:
                t1 = rep_medians(name, "torch1")
                res["ratio_1t"] = statistics.median(a / b for a, b in zip(rl, t1))
                row += [fmt_ms(statistics.median(t1)),
                        fmt_ratio([a / b for a, b in zip(rl, t1)])]
        shares = [a["foreign"] for a in res["kept"] if a["foreign"] is not None]
        clean = sum(a["kept"] for a in res["attempts"])
        if clean < reps:
            disturbed.append(name)
        row += [f"{min(clean, reps)} / {len(res['attempts'])}",
                f"{max(shares):.0%}" if shares else "?"]
        rows.append(row)
    print_table(header, rows)
    if args.optimizers:
        print("## Optimizers against SGD, each through train_step (forward, BPTT, the "
              "optimizer's needs and update), paired\n")
        rows = []
        for name in configs:
            sgd = rep_medians(name, "rnnlab")
            row = [name, fmt_ms(statistics.median(sgd))]
            for opt in args.optimizers:
                mine = rep_medians(name, opt)
                row += [fmt_ms(statistics.median(mine)),
                        fmt_ratio([a / b for a, b in zip(mine, sgd)])]
            rows.append(row)
        header = ["config", "SGD ms"]
        for opt in args.optimizers:
            header += [f"{opt} ms", f"{opt} / SGD: median [min..max]"]
        print_table(header, rows)
    if baseline_tree:
        print(f"## This checkout against rnnlab {args.baseline}, same process layout, paired "
              f"({args.path} path)\n")
        rows = []
        for name in configs:
            new, old = rep_medians(name, "rnnlab"), rep_medians(name, "baseline")
            rows.append([name, fmt_ms(statistics.median(new)), fmt_ms(statistics.median(old)),
                         fmt_ratio([a / b for a, b in zip(new, old)])])
        print_table(["config", "new ms", f"{args.baseline} ms", "new / old: median [min..max]"],
                    rows)
    print(f"other load = CPU time that other processes (and hypervisor steal) took during a rep, "
          f"as a share of the machine; reps above {args.quiet:.0%} were repeated.\n")
    if disturbed:
        print(f"WARNING: no quiet reps for all of {', '.join(disturbed)}: the least disturbed "
              f"were kept; re-run when the machine is quiet.\n")

    print(f"## Floor: FLOPs / peak GEMM rate + dispatch floor, {threads} thread(s)\n")
    print(f"- peak: float32 {peak_n}^3 GEMM with NumPy's BLAS, best of the runs before and "
          f"after the configs: **{peak:.0f} GFLOP/s**")
    print(f"- dispatch: {per_call * 1e6:.2f} us per NumPy call (best loop of rnnlab's five "
          f"per-time-step calls on 1x1 float32 arrays)\n")
    rows = []
    for name in configs:
        cfg = CONFIGS[name]
        flops = cfg.total_flops()
        peak_floor = flops / (peak * 1e9)
        disp = cfg.T * cfg.numpy_calls_per_step() * per_call
        floor = peak_floor + disp
        rl = statistics.median(rep_medians(name, "rnnlab"))
        row = [name, f"{flops / 1e9:.3f}", fmt_ms(peak_floor),
               f"{cfg.T} x {cfg.numpy_calls_per_step()} x {per_call * 1e6:.2f} us = "
               f"{fmt_ms(disp)}", f"**{fmt_ms(floor)}**", fmt_ms(rl), f"{rl / floor:.1f}x",
               f"{flops / rl / 1e9:.0f}"]
        if use_torch:
            row += [f"{statistics.median(rep_medians(name, 'torch')) / floor:.1f}x"]
        rows.append(row)
    header = ["config", "GFLOP/step", "peak floor ms", "dispatch floor ms (T x calls x cost)",
              "floor ms", "rnnlab ms", "rnnlab / floor", "rnnlab GFLOP/s"]
    if use_torch:
        header += [f"torch {threads}t / floor"]
    print_table(header, rows)

    print("## Sanity: training loss after all steps on the same batch (float32), and fresh "
          "memory pages touched per step\n")
    rows = []
    for name in configs:
        res = results[name]
        fl = res["final_loss"]
        pf = [statistics.median(a["page_faults_per_step"][k] for a in res["kept"]
                                if a["page_faults_per_step"].get(k) is not None)
              for k in workers]
        rows.append([name, str(res["steps_done"])] + [f"{fl[k]:.6g}" for k in workers]
                    + [f"{v:.0f}" for v in pf])
    print_table(["config", "SGD steps"] + [f"loss {k}" for k in workers]
                + [f"page faults/step {k}" for k in workers], rows)
    if use_torch:
        print("The losses differ slightly because nn.RNN has two hidden biases (b_ih, b_hh), both "
              "receiving dLoss/db, so its effective bias step is twice rnnlab's; with b_hh frozen "
              "the two loss trajectories agree to 7 digits (checked over 5 steps).\n")

    bad = sorted({f"{name}/{k}" for name in configs
                  for k, v in results[name]["final_loss"].items()
                  if not (v == v and abs(v) < float("inf"))})
    if bad:
        print(f"WARNING: non-finite final loss in {bad}\n")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"argv": sys.argv, "threads": threads, "peak_gflops": peak,
             "dispatch_s_per_call": per_call, "infos": infos, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
