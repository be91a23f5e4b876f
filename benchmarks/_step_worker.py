"""A long-lived timing process for ``bench_step.py`` (one per engine), and the float64 gradient
agreement check.

Timing mode: ``python _step_worker.py --engine {rnnlab,torch} --threads N [--model NAME]``
reads one JSON command per line on stdin and answers one JSON line on stdout (``--model``: the
rnnlab registry name to time, default the Elman ReLU RNN; with ``--engine torch`` one of elman,
lstm, gru, timing ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``):

    {"op": "info"}                          versions, thread pools
    {"op": "setup", "config": NAME, "warmup": W}
                                            build the model, optimizer and batch; W untimed steps
    {"op": "time", "steps": S}              S timed training steps -> {"times": [s, ...], "loss",
                                            "page_faults_per_step"}
    {"op": "peak", "n": N, "repeats": R}    GFLOP/s of an (N, N) @ (N, N) float32 GEMM (numpy)
    {"op": "dispatch", "T": T}              seconds per NumPy call on 1x1 arrays (numpy)
    {"op": "quit"}

Only the parent decides when a worker runs; the worker does nothing between commands, so two
workers never compute at the same time.

Check mode: ``python _step_worker.py --check NAME [NAME ...] [--model elman|lstm|gru]`` builds
rnnlab and PyTorch models with identical float64 weights for each config, computes one gradient
with each (no update), and prints one JSON line per config with max over parameters of
max|g_rnnlab - g_torch| / max|g_torch|.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

try:
    import resource
except ImportError:  # not on Windows
    resource = None

from _step_common import CONFIGS, TIMING_LR, make_batch, make_rnnlab_model

#: The PyTorch module timed against each rnnlab model (rnnlab's gate layouts are PyTorch's:
#: rows i f g o for the LSTM, r z n for the GRU in its "reset after" form, so the weights load
#: unchanged).
TORCH_MODULES = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}

# ----------------------------------------------------------------------------- engines


class RnnlabEngine:
    """One training step through rnnlab's public objects: ElmanRNN, a loss from rnnlab.losses,
    objective.loss_and_grads (forward + loss + BPTT), SGD.step ("core" path); or the trainer's
    own ``train_step`` (forward, BPTT, gradient-norm measurement, the optimizer's needs, SGD)
    ("trainer" path), called with the signature of whichever rnnlab is imported, so an older
    tree can be timed side by side (``bench_step.py --baseline REV``)."""

    def __init__(self, cfg, dtype="float32", path="core", optimizer="sgd", model="elman"):
        from rnnlab import losses, objective
        from rnnlab.optim import SGD
        self.model_name = model
        self.model = make_rnnlab_model(cfg, dtype, model=model)
        self.x, self.y = make_batch(cfg, dtype)
        self.loss = losses.mse if cfg.loss == "mse" else losses.softmax_cross_entropy
        self.objective = objective
        if optimizer == "sgd":
            self.opt = SGD(lr=TIMING_LR)
        else:  # another registered optimizer, through the trainer (which supplies its needs)
            from rnnlab.optim import make_optimizer
            # Path-SGD's rate is in path units (g / kappa is ~1e8 larger than g here), and
            # G-SGD's first step sets the skeleton weights to 1 (large outputs at T = 784):
            # both scaled down so that their timed steps stay finite like SGD's
            lr = TIMING_LR * (1e-4 if optimizer in ("path-sgd", "gsgd") else 1.0)
            self.opt = make_optimizer(optimizer, lr=lr)
            path = "trainer"
        self.step = self._core_step if path == "core" else self._trainer_step(objective)

    def _core_step(self) -> float:
        model = self.model
        value, grads, _ = self.objective.loss_and_grads(model, model.params, self.x, self.y,
                                                        self.loss)
        self.opt.step(model.params, grads)
        return value

    def _trainer_step(self, objective):
        model, opt, loss = self.model, self.opt, self.loss
        if hasattr(objective, "Batch"):  # rnnlab >= the seams change
            from rnnlab.train import train_step
            batch = objective.Batch(self.x, self.y)
            return lambda: train_step(model, model.params, opt, batch, loss)["loss"]
        from rnnlab.train import train_step
        return lambda: train_step(model, model.params, opt, self.x, self.y, None, loss)["loss"]

    def subnormals(self) -> str | None:
        """Whether the hidden states or the backpropagated dLoss/d(pre-activation) hold subnormal
        floats (arithmetic on them is ~100x slower and would make the timing meaningless), by
        replaying BPTT's recursion outside the timed step; a message, or None. Models other than
        the Elman RNN: the arrays of the forward cache and ``hidden_gradients`` (when the model
        has it), which is what can be seen from outside."""
        if self.model_name != "elman":
            return self._cell_subnormals()
        model, p = self.model, self.model.params
        y, cache = model.forward(p, self.x)
        _, dy = self.loss(y, self.y)
        h = cache.h[0]
        tiny = np.finfo(h.dtype).tiny
        count = lambda a: int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))  # noqa: E731
        n_h, n_d = count(h), 0
        T = h.shape[0] - 1
        if dy.ndim == 2:
            g, above = dy @ p["out.W"], None
        else:
            g, above = np.zeros_like(h[0]), dy @ p["out.W"]
        mask = np.sign(h[1:])
        for t in range(T - 1, -1, -1):
            if above is not None:
                g = g + above[t]
            d = g * mask[t]
            n_d += count(d)
            g = d @ p["layer1.W_rec"]
        if n_h or n_d:
            return (f"{n_h} subnormal hidden values and {n_d} subnormal dLoss/d(pre-activation) "
                    f"values after warm-up: timings include slow subnormal arithmetic")
        return None

    def _cell_subnormals(self) -> str | None:
        model, p = self.model, self.model.params
        y, cache = model.forward(p, self.x)
        _, dy = self.loss(y, self.y)
        arrays = []
        for field in dataclasses.fields(cache):
            value = getattr(cache, field.name)
            arrays += [a for a in (value if isinstance(value, list) else [value])
                       if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        grads_h = model.hidden_gradients(p, dy, cache) if hasattr(model, "hidden_gradients") \
            else []
        tiny = np.finfo(y.dtype).tiny
        count = lambda a: int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))  # noqa: E731
        n_c, n_g = sum(count(a) for a in arrays), sum(count(a) for a in grads_h)
        if n_c or n_g:
            return (f"{n_c} subnormal values in the forward cache and {n_g} in dLoss/dh_t after "
                    f"warm-up: timings include slow subnormal arithmetic")
        return None


def build_torch(cfg, params, dtype, model="elman"):
    """torch.nn.RNN(relu) (or nn.LSTM / nn.GRU for ``model``) + nn.Linear holding rnnlab's
    weights ``params`` (host arrays).

    rnnlab has one hidden bias b; PyTorch has two (b_ih + b_hh): b_ih = b, b_hh = 0, so both
    receive dLoss/db (for the GRU, b_hh's n block sits inside the reset gate's product, where
    rnnlab has no bias: 0 makes the two functions equal)."""
    import torch
    if model == "elman":
        rnn = torch.nn.RNN(cfg.n_in, cfg.H, nonlinearity="relu").to(dtype)
    else:
        rnn = getattr(torch.nn, TORCH_MODULES[model])(cfg.n_in, cfg.H).to(dtype)
    head = torch.nn.Linear(cfg.H, cfg.K).to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(np.asarray(params["layer1.W_in"])))
        rnn.weight_hh_l0.copy_(torch.from_numpy(np.asarray(params["layer1.W_rec"])))
        rnn.bias_ih_l0.copy_(torch.from_numpy(np.asarray(params["layer1.b"])))
        rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(np.asarray(params["out.W"])))
        head.bias.copy_(torch.from_numpy(np.asarray(params["out.b"])))
    return rnn, head


def torch_loss(cfg, rnn, head, x, y):
    import torch.nn.functional as F
    out, _ = rnn(x)
    if cfg.outputs == "last":
        logits = head(out[-1])
    else:
        logits = head(out).reshape(-1, cfg.K)
    if cfg.loss == "mse":
        return F.mse_loss(logits, y)
    return F.cross_entropy(logits, y.reshape(-1))


class TorchEngine:
    """One training step in PyTorch: zero_grad + forward + loss + backward + SGD.step, on the
    same shapes, initial weights and batch as :class:`RnnlabEngine`."""

    def __init__(self, cfg, dtype="float32", model="elman"):
        import torch
        tdtype = getattr(torch, dtype)
        rnnlab_model = make_rnnlab_model(cfg, dtype, model=model)
        self.cfg = cfg
        self.rnn, self.head = build_torch(cfg, rnnlab_model.params, tdtype, model)
        x, y = make_batch(cfg, dtype)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.opt = torch.optim.SGD(list(self.rnn.parameters()) + list(self.head.parameters()),
                                   lr=TIMING_LR)

    def step(self) -> float:
        self.opt.zero_grad()
        loss = torch_loss(self.cfg, self.rnn, self.head, self.x, self.y)
        loss.backward()
        self.opt.step()
        return loss.item()


# ----------------------------------------------------------------------------- measurements
def peak_gflops(n: int, repeats: int) -> float:
    """Best GFLOP/s of a float32 (n, n) @ (n, n) GEMM with NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def dispatch_cost(T: int, repeats: int = 7) -> float:
    """Seconds per NumPy call: the best of ``repeats`` loops of T steps, each step the five calls
    of rnnlab's Elman forward + backward loops (matmul, add, maximum, multiply, matmul) on 1x1
    float32 arrays."""
    h = np.ones((T + 1, 1, 1), dtype=np.float32)
    z = np.ones((T, 1, 1), dtype=np.float32)
    w = np.ones((1, 1), dtype=np.float32)
    g = np.ones((1, 1), dtype=np.float32)
    d = np.empty((T, 1, 1), dtype=np.float32)
    zero = np.zeros((), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in range(T):
            np.matmul(h[t], w, out=h[t + 1])
            np.add(h[t + 1], z[t], out=h[t + 1])
            np.maximum(h[t + 1], zero, out=h[t + 1])
        for t in range(T - 1, -1, -1):
            np.multiply(g, z[t], out=d[t])
            np.matmul(d[t], w, out=g)
        best = min(best, time.perf_counter() - t0)
    return best / (5 * T)


def info(engine: str) -> dict:
    out = {"engine": engine, "python": sys.version.split()[0], "numpy": np.__version__,
           "pid": os.getpid()}
    try:
        from threadpoolctl import threadpool_info
        out["threadpools"] = [{k: p.get(k) for k in ("internal_api", "prefix", "version",
                                                     "num_threads", "threading_layer",
                                                     "architecture")}
                              for p in threadpool_info()]
    except ImportError:
        out["threadpools"] = None
    if engine == "torch":
        import torch
        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out


# ----------------------------------------------------------------------------- modes
def serve(engine: str, threads: int | None, path: str = "core", optimizer: str = "sgd",
          model: str = "elman") -> None:
    if engine == "torch":
        import torch
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        make = TorchEngine
    else:
        if threads:
            try:
                from threadpoolctl import threadpool_limits
                threadpool_limits(threads)
            except ImportError:  # the parent also sets OPENBLAS_NUM_THREADS for this process
                pass
        make = RnnlabEngine
    eng = None
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "info":
            reply = info(engine)
        elif op == "setup":
            eng = None  # free the previous config's arrays first
            eng = make(CONFIGS[cmd["config"]], model=model) if engine == "torch" else make(
                CONFIGS[cmd["config"]], path=path, optimizer=optimizer, model=model)
            for _ in range(cmd.get("warmup", 3)):
                eng.step()
            reply = {"ok": True}
            if engine == "rnnlab":
                reply["subnormal"] = eng.subnormals()
        elif op == "time":
            times, loss = [], None
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0
            for _ in range(cmd["steps"]):
                t0 = time.perf_counter()
                loss = eng.step()
                times.append(time.perf_counter() - t0)
            if resource:  # fresh memory pages touched, per step (first-touch costs ~1 us each)
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            reply = {"times": times, "loss": loss, "page_faults_per_step": faults / len(times)}
        elif op == "peak":
            reply = {"gflops": peak_gflops(cmd.get("n", 2048), cmd.get("repeats", 5))}
        elif op == "dispatch":
            reply = {"seconds_per_call": dispatch_cost(cmd.get("T", 1000))}
        else:
            reply = {"error": f"unknown op {op!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def check(names, model_name: str = "elman") -> None:
    """Float64 gradients of rnnlab and PyTorch on identical weights and batch, one per config."""
    import torch
    from rnnlab import losses, objective
    torch.set_num_threads(1)
    names_map = {"layer1.W_in": "weight_ih_l0", "layer1.W_rec": "weight_hh_l0",
                 "layer1.b": "bias_ih_l0"}
    for name in names:
        cfg = CONFIGS[name]
        # Glorot recurrent weights: gradients that neither vanish nor explode over T steps;
        # the gated cells with their timing options (keep gates ~0.95)
        model = make_rnnlab_model(cfg, "float64", init="glorot", seed=1, model=model_name)
        x, y = make_batch(cfg, "float64", seed=1)
        loss = losses.mse if cfg.loss == "mse" else losses.softmax_cross_entropy
        value, grads, _ = objective.loss_and_grads(model, model.params, x, y, loss)
        rnn, head = build_torch(cfg, model.params, torch.float64, model_name)
        tloss = torch_loss(cfg, rnn, head, torch.from_numpy(x), torch.from_numpy(y))
        tloss.backward()
        tgrads = {k: getattr(rnn, v).grad.numpy() for k, v in names_map.items()}
        tgrads["out.W"] = head.weight.grad.numpy()
        tgrads["out.b"] = head.bias.grad.numpy()
        rel = {k: float(np.max(np.abs(grads[k] - tgrads[k])) / np.max(np.abs(tgrads[k])))
               for k in grads}
        if model_name != "gru":  # b_hh gets dLoss/db too (the GRU's n block does not)
            hh = rnn.bias_hh_l0.grad.numpy()
            rel["layer1.b (vs b_hh)"] = float(np.max(np.abs(grads["layer1.b"] - hh))
                                              / np.max(np.abs(hh)))
        worst = max(rel, key=rel.get)
        print(json.dumps({"config": name, "model": model_name, "loss_rnnlab": value,
                          "loss_torch": tloss.item(),
                          "max_rel": rel[worst], "worst_param": worst, "per_param": rel}),
              flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("rnnlab", "torch"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--path", choices=("core", "trainer"), default="core")
    ap.add_argument("--optimizer", default="sgd", help="a registered optimizer (trainer path)")
    ap.add_argument("--model", default="elman",
                    help="rnnlab registry name to time (torch engine: elman, lstm or gru)")
    ap.add_argument("--check", nargs="+", metavar="CONFIG")
    args = ap.parse_args(argv)
    if args.check:
        check(args.check, args.model)
    else:
        serve(args.engine, args.threads, args.path, args.optimizer, args.model)


if __name__ == "__main__":
    main()
