"""Where rnnlab's training step spends its time, per benchmark config (rnnlab only).

    python benchmarks/profile_step.py                        # all configs, 2 threads
    python benchmarks/profile_step.py --configs charlm-H256 --threads 1 --steps 30

The step is the one ``bench_step.py`` times (objective.loss_and_grads + SGD.step). Its parts are
timed by wrapping the model's internal stages (``ElmanRNN._check_input``, ``_input_projection``,
``_recur_forward``, ``_derivative``, ``_recur_backward``), the loss and ``SGD._update``; what is
left of ``forward``/``backward`` is the output head and the weight-gradient GEMMs, and what is left
of the step is Python glue. Inside the two recurrent loops, "GEMM" is a replay of the same
per-step GEMM calls alone (same shapes, operand order and output buffer), and "rest" = loop - GEMM
(the elementwise calls and the interpreter). Each number is the median over --steps steps; the
parts are medians too, so they need not add up exactly.

Timing through wrappers adds about a microsecond per wrapped call (~10 per step), nothing inside
the loops.
"""
from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import numpy as np

from _step_common import CONFIGS  # noqa: E402  (sets sys.path for rnnlab)


def gemm_replay(model, h, backward: bool, repeats: int = 3) -> float:
    """Seconds for the T per-step recurrent GEMMs of one loop alone, as the model issues them."""
    from rnnlab.models import elman
    w = model.params["layer1.W_rec"]
    steps = list(h)
    batch, width = steps[0].shape
    if elman._weights_first(batch, width):
        w_op = elman._transposed(w) if backward else w
        out = np.empty((width, batch), dtype=h.dtype)
        calls = [(w_op, s.T) for s in steps[1:]]
    else:
        w_op = w if backward else elman._transposed(w)
        out = np.empty((batch, width), dtype=h.dtype)
        calls = [(s, w_op) for s in steps[1:]]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a, b in calls:
            np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return best


def profile(name: str, steps: int, warmup: int) -> dict:
    from _step_worker import RnnlabEngine
    from rnnlab.models import elman
    from rnnlab.optim import sgd

    times: dict = {}

    def timed(label, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            times.setdefault(label, []).append(time.perf_counter() - t0)
            return out
        return wrapper

    cls = elman.ElmanRNN
    originals = {k: getattr(cls, k) for k in ("_check_input", "_input_projection",
                                              "_recur_forward", "_derivative",
                                              "_recur_backward", "forward", "backward")}
    sgd_update = sgd.SGD._update
    try:
        for k, fn in originals.items():
            setattr(cls, k, timed(k, fn))
        sgd.SGD._update = timed("sgd", sgd_update)
        eng = RnnlabEngine(CONFIGS[name])
        eng.loss = timed("loss", eng.loss)
        for _ in range(warmup):
            eng.step()
        times.clear()
        total = []
        for _ in range(steps):
            t0 = time.perf_counter()
            eng.step()
            total.append(time.perf_counter() - t0)
    finally:
        for k, fn in originals.items():
            setattr(cls, k, fn)
        sgd.SGD._update = sgd_update
    med = {k: statistics.median(v) for k, v in times.items()}
    _, cache = eng.model.forward(eng.model.params, eng.x)
    h = cache.h[0]
    parts = {
        "step": statistics.median(total),
        "validation": med["_check_input"],
        "input proj": med["_input_projection"],
        "fwd loop": med["_recur_forward"],
        "fwd loop GEMM": gemm_replay(eng.model, h, backward=False),
        "head fwd": med["forward"] - med["_check_input"] - med["_input_projection"]
        - med["_recur_forward"],
        "loss": med["loss"],
        "relu mask": med["_derivative"],
        "bwd loop": med["_recur_backward"],
        "bwd loop GEMM": gemm_replay(eng.model, h, backward=True),
        "weight grads + head bwd": med["backward"] - med["_derivative"] - med["_recur_backward"],
        "SGD": med["sgd"],
    }
    named = ("validation", "input proj", "fwd loop", "head fwd", "loss", "relu mask", "bwd loop",
             "weight grads + head bwd", "SGD")
    parts["other (glue)"] = parts["step"] - sum(parts[k] for k in named)
    return parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), metavar="CONFIG")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        print("threadpoolctl not installed: using NumPy's default thread count")
    configs = args.configs or list(CONFIGS)
    print(f"## rnnlab step profile, {args.threads} thread(s), median of {args.steps} steps "
          f"(ms; % of the step)\n")
    cols = ["step", "validation", "input proj", "fwd loop", "fwd loop GEMM", "head fwd", "loss",
            "relu mask", "bwd loop", "bwd loop GEMM", "weight grads + head bwd", "SGD",
            "other (glue)"]
    print("| config | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name in configs:
        p = profile(name, args.steps, args.warmup)
        cells = []
        for c in cols:
            ms = p[c] * 1e3
            cells.append(f"**{ms:.2f}**" if c == "step" else f"{ms:.2f} ({p[c] / p['step']:.0%})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\nfwd/bwd loop GEMM: the loop's per-step GEMMs replayed alone; the rest of the loop is "
          "its elementwise calls and the interpreter.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
