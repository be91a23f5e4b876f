"""Time one training step (forward + BPTT + SGD update, float32) of every registered rnnlab model
at the engine core's shapes, against rnnlab's Elman ReLU RNN of the same width and, for the LSTM
and the GRU, against ``torch.nn.LSTM`` / ``torch.nn.GRU`` + ``nn.Linear``.

    python benchmarks/bench_cells.py                        # all configs and models, 5 reps
    python benchmarks/bench_cells.py --quick                # smoke test, a few seconds
    python benchmarks/bench_cells.py --configs add-T100 charlm-H256 --models lstm gru --reps 7
    python benchmarks/bench_cells.py --models lstm gru --baseline-tree /tmp/old  # new vs old

It reuses ``bench_step.py``'s machinery (details in benchmarks/README.md): one long-lived
``_step_worker.py`` process per engine and model (``--model``), driven one at a time with the
order rotating every repetition; a repetition during which other processes took more than
``--quiet`` of the machine is repeated; every ratio is the median of the per-repetition ratios,
with [min..max]. Models are taken from the registry (``rnnlab.models.MODELS``) when the script
runs; one that cannot be built is skipped with the reason. The gated cells run with the timing
options of ``_step_common.CELL_TIMING_OPTIONS`` (keep gates ~0.95, which keeps the gradient out of
the float32 subnormal range); a worker warns when its warmed-up model still holds subnormals.
Before timing, a float64 check confirms that rnnlab's and PyTorch's gradients agree on identical
weights (rnnlab's gate layouts are PyTorch's: i f g o, r z n), so both do the same work.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_step  # noqa: E402  (its Worker, ForeignLoad, time_config, table helpers)
from _step_common import CELL_TIMING_OPTIONS, CONFIGS, make_cell_model  # noqa: E402
from bench_step import fmt_ms, fmt_ratio, print_table  # noqa: E402

WORKER = HERE / "_step_worker.py"
#: rnnlab model -> (PyTorch module timed against it, the issue's goal for rnnlab / PyTorch)
TORCH_PAIRS = {"lstm": ("nn.LSTM", 1.5), "gru": ("nn.GRU", 1.0)}
#: --malloc-env: glibc's mmap threshold at its largest dynamic value and no trimming of the
#: heap, so that memory freed at the end of one step is reused by the next without first-touch
#: page faults (what the default thresholds do depends on the sizes: see benchmarks/README.md)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


class CellWorker(bench_step.Worker):
    """``bench_step``'s worker process, timing one model (``_step_worker.py --model``)."""

    def __init__(self, label: str, engine: str, threads: int | None, model: str,
                 tree: str | None = None, extra_env: dict | None = None):
        self.label = label
        env = dict(os.environ) | (extra_env or {})
        if engine == "rnnlab" and threads:
            env["OPENBLAS_NUM_THREADS"] = str(threads)  # only the thread count, never the kernel
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree or str(HERE.parent),
                                                          env.get("PYTHONPATH")]))
        cmd = [sys.executable, str(WORKER), "--engine", engine, "--model", model]
        if threads:
            cmd += ["--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, env=env, cwd=str(HERE))


def available_models(wanted):
    """(models that build, {skipped name: reason}) among the registry's names (or ``wanted``)."""
    from rnnlab.models import MODELS
    names = list(MODELS)
    models, skipped = [], {}
    for name in wanted or names:
        if name not in names:
            skipped[name] = "not registered"
            continue
        try:
            if name != "elman":  # built as the workers build it, at the smallest config
                make_cell_model(CONFIGS["add-T100"], name, "float32")
        except Exception as exc:  # a model being written: report it, time the others
            skipped[name] = f"{type(exc).__name__}: {exc}"
            continue
        models.append(name)
    if "elman" not in models:
        models.insert(0, "elman")  # the reference every table is relative to
    return models, skipped


def run_checks(models, configs) -> None:
    """The float64 gradient agreement check of each model paired with PyTorch."""
    print("## Gradient agreement with PyTorch, float64, identical weights and batch "
          "(one step, no update)\n")
    rows = []
    for model in models:
        out = subprocess.run([sys.executable, str(WORKER), "--check", *configs,
                              "--model", model], capture_output=True, text=True, cwd=str(HERE))
        if out.returncode != 0:
            print(f"check of {model} failed to run:\n{out.stderr}")
            continue
        for line in out.stdout.splitlines():
            r = json.loads(line)
            rows.append([model, r["config"], f"{r['loss_rnnlab']:.12g}",
                         f"{r['loss_torch']:.12g}", f"{r['max_rel']:.1e}", r["worst_param"]])
            if r["max_rel"] >= 1e-10:
                print(f"WARNING: {model} {r['config']}: gradients differ by {r['max_rel']:.1e} "
                      f"relative; timings compare different work.\n")
    print_table(["model", "config", "loss rnnlab", "loss torch",
                 "max over params of max abs(g_rnnlab - g_torch) / max abs(g_torch)",
                 "worst param"], rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), metavar="CONFIG",
                    help=f"configs to run (default all: {' '.join(CONFIGS)})")
    ap.add_argument("--models", nargs="+", metavar="NAME",
                    help="registry names to time (default: every registered model); the Elman "
                         "RNN is always timed, as the reference")
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
                    help="scheduling priority of the benchmark and its workers (negative values "
                         "need privileges)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: add-T100 and charlm-H256, 2 reps x 2 steps")
    ap.add_argument("--no-torch", action="store_true", help="time rnnlab only")
    ap.add_argument("--no-check", action="store_true", help="skip the float64 gradient check")
    ap.add_argument("--baseline-tree", metavar="DIR",
                    help="a folder holding an older rnnlab/ package (e.g. a copy taken before a "
                         "change): its --baseline-models are timed too, paired (new / old)")
    ap.add_argument("--baseline", metavar="REV",
                    help="the same with the rnnlab of git revision REV (exported by git archive)")
    ap.add_argument("--baseline-models", nargs="+", default=["lstm", "gru"], metavar="NAME",
                    help="models timed in the baseline tree too (default lstm gru)")
    ap.add_argument("--malloc-env", choices=("off", "on", "both"), default="off",
                    help="on: run every worker with "
                         + " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
                         + " (glibc: no first-touch page faults from trimmed heap memory); "
                           "both: also time each rnnlab model in a second worker with them, "
                           "paired (a 'with / without' table)")
    ap.add_argument("--json", metavar="PATH", help="also write the raw per-step times here")
    args = ap.parse_args(argv)

    if args.quick:
        configs = args.configs or ["add-T100", "charlm-H256"]
        reps, steps, warmup, max_tries = min(args.reps, 2), min(args.steps, 2), 1, 1
    else:
        configs = args.configs or list(CONFIGS)
        reps, steps, warmup, max_tries = args.reps, args.steps, args.warmup, args.max_tries
    threads = args.threads
    use_torch = not args.no_torch and importlib.util.find_spec("torch") is not None

    print(f"# rnnlab cell benchmark: one training step per model\n\n"
          f"command: `python {' '.join(sys.argv)}`\n")
    print(f"- CPU: {bench_step.cpu_model()}, {os.cpu_count()} logical CPUs; threads used: "
          f"{threads}")
    openblas_env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    print(f"- OPENBLAS_* environment: {openblas_env or 'none set'}")
    print(f"- load average before starting (1, 5, 15 min): {bench_step.load_average()}")
    if args.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the workers inherit it
            print(f"- niceness {args.nice} for the benchmark and its workers")
        except (OSError, AttributeError) as exc:
            print(f"- could not set niceness {args.nice} ({exc}); running at the default")
    models, skipped = available_models(args.models)
    print(f"- models: {' '.join(models)}"
          + "".join(f"\n- skipped {k}: {v}" for k, v in skipped.items()))
    print(f"- timing options of the gated cells: {CELL_TIMING_OPTIONS}, GRU update-gate bias "
          f"3 (_step_common.CELL_TIMING_BIAS)")
    if not use_torch:
        print("- PyTorch: " + ("skipped (--no-torch)" if args.no_torch else
                               "not importable; install the [compare] extra to compare"))
    baseline_tree = args.baseline_tree
    if args.baseline and not baseline_tree:
        baseline_tree = bench_step.export_revision(args.baseline)
    if baseline_tree:
        print(f"- baseline: rnnlab from {baseline_tree}"
              + (f" (git revision {args.baseline})" if args.baseline else "")
              + f", models {' '.join(m for m in args.baseline_models if m in models)}")

    extra_env = MALLOC_ENV if args.malloc_env == "on" else None
    if extra_env:
        print(f"- every worker runs with {extra_env}")
    if args.malloc_env == "both":
        print(f"- each rnnlab model also runs in a worker with {MALLOC_ENV} ('+malloc')")
    workers = {m: CellWorker(m, "rnnlab", threads, m, extra_env=extra_env) for m in models}
    torch_models = [m for m in models if m in TORCH_PAIRS] if use_torch else []
    base_models = [m for m in args.baseline_models if m in models] if baseline_tree else []
    try:
        for m in torch_models:
            workers[f"torch-{m}"] = CellWorker(f"torch-{m}", "torch", threads, m,
                                               extra_env=extra_env)
        for m in base_models:
            workers[f"{m}@base"] = CellWorker(f"{m}@base", "rnnlab", threads, m,
                                              tree=baseline_tree, extra_env=extra_env)
        malloc_models = models if args.malloc_env == "both" else []
        for m in malloc_models:
            workers[f"{m}+malloc"] = CellWorker(f"{m}+malloc", "rnnlab", threads, m,
                                                extra_env=MALLOC_ENV)
        infos = {k: w.ask(op="info") for k, w in workers.items()}
        ri = infos["elman"]
        print(f"- Python {ri['python']}, NumPy {ri['numpy']}"
              + (f", PyTorch {infos[f'torch-{torch_models[0]}']['torch']}" if torch_models
                 else ""))
        for p in ri["threadpools"] or []:
            print(f"- rnnlab process thread pool (threadpoolctl): {p['internal_api']} "
                  f"{p['version']}, kernel {p.get('architecture')}, {p['num_threads']} threads")
        print(f"- {reps} paired reps x {steps} timed steps per config after {warmup} warm-up "
              f"steps; SGD, float32; a rep is repeated when other processes took more than "
              f"{args.quiet:.0%} of the CPU during it\n")
        if torch_models and not args.no_check:
            run_checks(torch_models, configs[:1] if args.quick else configs)

        results = {}
        pids = [os.getpid()] + [w.proc.pid for w in workers.values()]
        for name in configs:
            res = bench_step.time_config(name, workers, pids, reps, steps, warmup, args.quiet,
                                         max_tries)
            results[name] = res
            med = {k: statistics.median(statistics.median(a["times"][k]) for a in res["kept"])
                   for k in workers}
            print(f"  {name}: " + ", ".join(f"{k} {fmt_ms(v)} ms" for k, v in med.items())
                  + f" ({len(res['attempts'])} attempts)", file=sys.stderr, flush=True)
    finally:
        for w in workers.values():
            w.close()

    def rep_medians(name, label):
        return [statistics.median(a["times"][label]) for a in results[name]["kept"]]

    def ratios(name, a, b):
        return [x / y for x, y in zip(rep_medians(name, a), rep_medians(name, b))]

    print(f"## Time per training step, {threads} thread(s), relative to rnnlab's Elman ReLU RNN "
          f"of the same width (ms: median over reps of each rep's median step)\n")
    header = ["config", "H", "elman ms"]
    for m in models[1:]:
        header += [f"{m} ms", f"{m} / elman: median [min..max]"]
    header += ["reps kept / tried", "other load (kept reps, max)"]
    rows, disturbed = [], []
    for name in configs:
        res = results[name]
        row = [name, str(CONFIGS[name].H), fmt_ms(statistics.median(rep_medians(name, "elman")))]
        for m in models[1:]:
            row += [fmt_ms(statistics.median(rep_medians(name, m))),
                    fmt_ratio(ratios(name, m, "elman"))]
        shares = [a["foreign"] for a in res["kept"] if a["foreign"] is not None]
        clean = sum(a["kept"] for a in res["attempts"])
        if clean < reps:
            disturbed.append(name)
        row += [f"{min(clean, reps)} / {len(res['attempts'])}",
                f"{max(shares):.0%}" if shares else "?"]
        rows.append(row)
    print_table(header, rows)

    if torch_models:
        print(f"## Against PyTorch, {threads} thread(s), paired (rnnlab / PyTorch)\n")
        rows = []
        for m in torch_models:
            module, goal = TORCH_PAIRS[m]
            for name in configs:
                r = ratios(name, m, f"torch-{m}")
                rows.append([m, name, fmt_ms(statistics.median(rep_medians(name, m))),
                             f"{module} + nn.Linear",
                             fmt_ms(statistics.median(rep_medians(name, f"torch-{m}"))),
                             fmt_ratio(r), f"<= {goal}",
                             "yes" if statistics.median(r) <= goal else "NO"])
        print_table(["model", "config", "rnnlab ms", "PyTorch", "PyTorch ms",
                     "rnnlab / PyTorch: median [min..max]", "goal", "met"], rows)

    if base_models:
        print("## This checkout against the baseline tree, paired (new / old)\n")
        rows = []
        for m in base_models:
            for name in configs:
                rows.append([m, name, fmt_ms(statistics.median(rep_medians(name, m))),
                             fmt_ms(statistics.median(rep_medians(name, f"{m}@base"))),
                             fmt_ratio(ratios(name, m, f"{m}@base"))])
        print_table(["model", "config", "new ms", "old ms", "new / old: median [min..max]"],
                    rows)

    if malloc_models:
        print("## The same models without first-touch page faults (glibc thresholds raised), "
              "paired ((+malloc) / default)\n")
        rows = []
        for m in malloc_models:
            for name in configs:
                rows.append([m, name, fmt_ms(statistics.median(rep_medians(name, m))),
                             fmt_ms(statistics.median(rep_medians(name, f"{m}+malloc"))),
                             fmt_ratio(ratios(name, f"{m}+malloc", m))])
        print_table(["model", "config", "default ms", "+malloc ms",
                     "+malloc / default: median [min..max]"], rows)

    print(f"other load = CPU time that other processes (and hypervisor steal) took during a rep, "
          f"as a share of the machine; reps above {args.quiet:.0%} were repeated.\n")
    if disturbed:
        print(f"WARNING: no quiet reps for all of {', '.join(disturbed)}: the least disturbed "
              f"were kept; these figures are noisy; re-run when the machine is quiet.\n")

    print("## Sanity: training loss after all steps on the same batch (float32), and fresh "
          "memory pages touched per step (first-touch page faults, ~1 us each)\n")
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
                + [f"faults/step {k}" for k in workers], rows)
    bad = sorted({f"{name}/{k}" for name in configs
                  for k, v in results[name]["final_loss"].items()
                  if not (v == v and abs(v) < float("inf"))})
    if bad:
        print(f"WARNING: non-finite final loss in {bad}\n")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"argv": sys.argv, "threads": threads, "models": models, "skipped": skipped,
             "infos": infos, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
