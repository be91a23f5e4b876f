"""Second-order costs, paired and interleaved in one process, float64, one BLAS thread:

* a Gauss-Newton product (its forward shared, as within one CG solve) relative to a gradient
  on the same batch (theory: about 2; ``bench_gvp.py`` has the float32 table);
* one Hessian-free CG iteration (the damped product plus CG's vector updates and inner
  products) relative to a gradient;
* one PSGD (Kronecker, finite differences, its defaults) update relative to one SGD update
  through the trainer's ``train_step``, split into PSGD's extra gradients (two ``closure``
  calls, g(theta) and g(theta + dtheta), since the trainer's gradient is clipped; each measured
  alone) and the rest, the preconditioner's own work (fitting the factors and applying P);
  goal: that rest <= 15 % of an SGD step.

    python benchmarks/bench_second_order.py            # ~1-2 minutes
    python benchmarks/bench_second_order.py --quick    # smoke test

Each repetition runs every operation ``--rounds`` times in rotating order and keeps each one's
median; the table shows the median over ``--reps`` repetitions of each ratio with [min..max].
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _step_common import CONFIGS, make_batch, make_rnnlab_model
from bench_step import cpu_model


class Problem:
    def __init__(self, cfg, curvature_rows: int):
        from rnnlab import losses, objective
        from rnnlab.optim import make_optimizer
        from rnnlab.optim.cg import conjugate_gradient
        from rnnlab.train.run import supply_needs, train_step
        self.objective, self.train_step, self.supply = objective, train_step, supply_needs
        self.cg = conjugate_gradient
        self.model = make_rnnlab_model(cfg, "float64")
        x, y = make_batch(cfg, "float64")
        self.batch = objective.Batch(x, y)
        self.loss = losses.mse if cfg.loss == "mse" else losses.softmax_cross_entropy
        self.rows = (0, min(curvature_rows, cfg.B))
        self.c_batch = self.batch.rows(*self.rows, cfg.outputs)
        rng = np.random.default_rng(1)
        self.v = {k: 0.01 * rng.standard_normal(p.shape) for k, p in self.model.params.items()}
        self.y, self.cache = self.model.forward(self.model.params, self.c_batch.x)
        self.params = {k: p.copy() for k, p in self.model.params.items()}
        self.sgd = make_optimizer("sgd", lr=1e-9)   # tiny steps: the state barely moves
        self.psgd = make_optimizer("psgd", lr=1e-9)

    def run(self, op: str):
        o, m, p = self.objective, self.model, self.params
        if op == "grad_c":  # a gradient on the curvature rows
            o.batch_loss_and_grads(m, p, self.c_batch, self.loss)
        elif op == "gvp_c":
            o.gauss_newton_product(m, p, self.c_batch, self.v, self.loss, cache=self.cache,
                                   outputs=self.y)
        elif op == "cg10":  # ten CG iterations on the damped product
            def damped(v):
                gv = o.gauss_newton_product(m, p, self.c_batch, v, self.loss,
                                            cache=self.cache, outputs=self.y)
                return {k: gv[k] + v[k] for k in gv}
            zeros = {k: np.zeros_like(a) for k, a in p.items()}
            self.cg(damped, self.v, zeros, max_iter=10, tol=0)
        elif op == "grad":  # the second gradient PSGD takes on the whole batch
            o.batch_loss_and_grads(m, p, self.batch, self.loss)
        elif op in ("sgd_step", "psgd_step"):
            opt = self.sgd if op == "sgd_step" else self.psgd
            self.train_step(m, p, opt, self.batch, self.loss, clip=1.0)
        else:
            raise ValueError(op)


OPS = ("grad_c", "gvp_c", "cg10", "grad", "sgd_step", "psgd_step")


def measure(problem, rounds: int) -> dict:
    times = {op: [] for op in OPS}
    for r in range(rounds):
        order = OPS[r % len(OPS):] + OPS[:r % len(OPS)]
        for op in order:
            start = time.perf_counter()
            problem.run(op)
            times[op].append(time.perf_counter() - start)
    return {op: statistics.median(ts) for op, ts in times.items()}


def main(argv=None) -> int:
    from threadpoolctl import threadpool_limits
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["add-T100", "charlm-H256"],
                   choices=list(CONFIGS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--curvature-rows", type=int, default=50,
                   help="B_c: sequences of the curvature batch (default: 50)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.rounds = 2, 2
    print(f"machine: {cpu_model()}; float64, 1 BLAS thread; medians over {args.reps} reps of "
          f"{args.rounds} rounds")
    header = (f"{'config':<12} {'ms grad':>8} {'G v / grad':>18} {'CG iter / grad':>18} "
              f"{'SGD step ms':>11} {'PSGD / SGD':>18} {'2 grads / SGD':>18} "
              f"{'precond / SGD':>18}")
    print(header)
    print("-" * len(header))
    with threadpool_limits(1):
        for cfg in [CONFIGS[name] for name in args.configs]:
            problem = Problem(cfg, args.curvature_rows)
            problem.run("psgd_step")  # the factors exist before timing
            reps = [measure(problem, args.rounds) for _ in range(args.reps)]

            def ratio(f):
                values = [f(r) for r in reps]
                return (f"{statistics.median(values):.2f} [{min(values):.2f}.."
                        f"{max(values):.2f}]")
            print(f"{cfg.name:<12} {1e3 * statistics.median(r['grad_c'] for r in reps):>8.2f} "
                  f"{ratio(lambda r: r['gvp_c'] / r['grad_c']):>18} "
                  f"{ratio(lambda r: r['cg10'] / 10 / r['grad_c']):>18} "
                  f"{1e3 * statistics.median(r['sgd_step'] for r in reps):>11.2f} "
                  f"{ratio(lambda r: r['psgd_step'] / r['sgd_step']):>18} "
                  f"{ratio(lambda r: 2 * r['grad'] / r['sgd_step']):>18} "
                  f"{ratio(lambda r: (r['psgd_step'] - r['sgd_step'] - 2 * r['grad']) / r['sgd_step']):>18}")
    print("G v and CG on the curvature rows (B_c); SGD and PSGD steps on the whole batch "
          "(train_step, clip 1); 'precond' = PSGD step - SGD step - two gradients")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
