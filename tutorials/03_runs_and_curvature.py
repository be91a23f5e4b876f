# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 03 — Runs, registries and curvature: building your own optimizer
#
# Chapters 01 and 02 took the model apart. This one puts training together the way every later
# capability of rnnlab plugs in:
#
# 1. a run as a **config** (task, model, optimizer, each with its own options) and a **sink**
#    that keeps what the run measures; `run(config, sink)` returns a status instead of raising;
# 2. the **Gauss-Newton product** G v = Jᵀ H J v, the curvature second-order methods use,
#    checked against the matrix formed explicitly on a tiny network;
# 3. a small **optimizer of our own** that declares what it needs (a loss closure and the
#    Gauss-Newton product), registered by name and trained through the same `run()` as SGD.
#
# Shapes: T steps, B sequences, n_in inputs, H hidden units, n_out outputs; `x : (T, B, n_in)`.
# `RNNLAB_FAST=1` shrinks the sizes; the last cell prints `03_runs_and_curvature: all checks
# passed` only if every assert before it held.

# %%
from _setup import FAST, draw, finish, save_figure  # first: Agg in scripts, repo on the path

import time

import numpy as np

import rnnlab
from rnnlab import RunConfig, backend, losses, objective, params
from rnnlab.models import make_model
from rnnlab.optim import OPTIMIZERS, Optimizer
from rnnlab.options import Option
from rnnlab.train import MemorySink, run
from rnnlab.train.plots import learning_curves_figure

FIGURES = ("03_gauss_newton_spectrum.png", "03_line_step_vs_sgd.png")
print(f"rnnlab {rnnlab.__version__}, backend {backend.backend_name()}, fast mode {FAST}")

# %% [markdown]
# ## 1. A run is a config and a sink
#
# A config names a task, a model and an optimizer, each with its own options; whatever is
# left out takes the default its owner declares. The same nesting is what a TOML file passed to
# `rnnlab train --config` holds, and what a run writes into its folder as `config.json`.

# %%
T_ADD = 10 if FAST else 20
STEPS = 60 if FAST else 400
config = RunConfig(task={"name": "adding", "T": T_ADD},
                   model={"name": "elman", "hidden": 16, "init": "identity"},
                   optimizer={"name": "sgd", "lr": 0.05},
                   train={"steps": STEPS, "batch": 32, "eval_every": STEPS // 10,
                          "eval_size": 256, "dtype": "float64"})
print("optimizer section:", config.optimizer)
print("model section:    ", config.model)
print("run id:", config.run_id(), "(a hash of everything but train.steps)")
assert config.optimizer == {"name": "sgd", "lr": 0.05, "momentum": 0.0, "nesterov": False}

sgd_result = run(config, MemorySink(), progress=False)   # memory only: nothing on disk
print(f"status {sgd_result.status} after {sgd_result.step} steps; held-out "
      f"{sgd_result.metric} {sgd_result.final[sgd_result.metric]:.4f} (trivial baseline "
      f"{sgd_result.baseline:.4f})")
assert sgd_result.status == "finished" and sgd_result.step == STEPS

# %% [markdown]
# A wrong option is refused with the list of what its owner allows, before anything runs:

# %%
try:
    config.with_overrides({"optimizer": "adam", "optimizer.momentum": 0.9})
except rnnlab.ConfigError as error:
    print("ConfigError:", error)
    assert "its options: lr, beta1, beta2, eps" in str(error)

# %% [markdown]
# ## 2. The Gauss-Newton product
#
# For a loss L(y(p)) of the outputs y, the Gauss-Newton matrix is G = Jᵀ H J, with
# J = ∂y/∂p and H = ∂²L/∂y² the loss's curvature in output space (for MSE a constant times the
# mask, for softmax cross-entropy diag(p) − p pᵀ per position). Hessian-free optimisation needs
# only products G v, never G itself: `objective.gauss_newton_product` runs the R-op forward
# (J v), multiplies by H (`loss.gn_product`) and runs BPTT (Jᵀ). On a network small enough to
# form everything we check it against the explicit matrix, with J from central differences of
# the forward pass (independent of the R-op) and H from the loss's formula.

# %%
model = make_model("elman", 2, 2, "every", hidden=3, activation="tanh", init="orthogonal",
                   seed=1, dtype="float64")
rng = np.random.default_rng(0)
T, B = 4, 3
x = backend.to_device(rng.standard_normal((T, B, 2)))
y_target = backend.to_device(rng.standard_normal((T, B, 2)))
batch = objective.Batch(x, y_target)
p = model.params
vec, unflatten = params.flatten(p)
m = vec.size

G = np.stack([backend.to_host(params.flatten(objective.gauss_newton_product(
    model, p, batch, unflatten(backend.to_device(np.eye(m)[j])), losses.mse))[0])
    for j in range(m)], axis=1)

eps = 1e-6
host = backend.to_host(vec)
J = np.stack([(backend.to_host(model.forward(unflatten(backend.to_device(host + eps * e)), x)[0])
               - backend.to_host(model.forward(unflatten(backend.to_device(host - eps * e)),
                                               x)[0])).ravel() / (2 * eps)
              for e in np.eye(m)], axis=1)
H = 2.0 / (T * B * 2)            # MSE: 2 / (scored positions x outputs), times the identity
G_explicit = H * J.T @ J
error = np.abs(G - G_explicit).max() / np.abs(G_explicit).max()
print(f"{m} parameters; max |G - J^T H J| / max |G| = {error:.1e}")
assert error < 1e-7              # central differences with eps = 1e-6: O(eps^2) + round-off
assert np.allclose(G, G.T, atol=1e-12)                  # symmetric
eigenvalues = np.linalg.eigvalsh(G)
assert eigenvalues.min() > -1e-12 * eigenvalues.max()   # positive semi-definite
rank = int((eigenvalues > 1e-12 * eigenvalues.max()).sum())
print(f"eigenvalues from {eigenvalues.max():.3g} down to {eigenvalues.min():.1e}; rank {rank} "
      f"<= T*B*n_out = {T * B * 2} outputs")
assert rank <= T * B * 2

# %% [markdown]
# The rank can never exceed the number of scored outputs (J has that many rows), however many
# parameters there are: curvature seen through one small batch is low-rank. The spectrum:

# %%
save_figure(draw.curvature_spectrum(eigenvalues, f"Gauss-Newton matrix, {m} parameters, "
                                                 f"T={T}, B={B}"), "03_gauss_newton_spectrum.png")

# %% [markdown]
# What does a product cost? An R-op pass and a backward pass, against a forward and a backward
# for the gradient: about twice a gradient in theory (`benchmarks/bench_gvp.py` measures it).

# %%
big = make_model("elman", 2, 1, "last", hidden=64, seed=0)
x_big = backend.to_device(rng.standard_normal((50, 32, 2)).astype("float32"))
batch_big = objective.Batch(x_big, backend.to_device(np.ones((32, 1), dtype="float32")))
_, g_big, _ = objective.batch_loss_and_grads(big, big.params, batch_big, losses.mse)


def seconds(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


t_grad = seconds(lambda: objective.batch_loss_and_grads(big, big.params, batch_big, losses.mse))
t_gvp = seconds(lambda: objective.gauss_newton_product(big, big.params, batch_big, g_big,
                                                       losses.mse))
print(f"H=64, T=50, B=32: gradient {t_grad * 1e3:.2f} ms, G v {t_gvp * 1e3:.2f} ms "
      f"({t_gvp / t_grad:.1f}x)")

# %% [markdown]
# ## 3. An optimizer of our own
#
# An optimizer declares its hyper-parameters (`options`) and what it needs besides the
# gradient (`needs`); the trainer supplies exactly that. This one takes the gradient direction
# and chooses the step length that minimises the Gauss-Newton model of the loss along it,
#
# $$\alpha = \frac{g^\top g}{g^\top G g + \lambda},$$
#
# then halves α while the loss (re-evaluated on the same batch with the closure) does not
# fall. λ adapts Levenberg-Marquardt style and lives in the optimizer's structured state, so
# it survives checkpoints; α is reported as a step metric into the metrics history.

# %%
class GaussNewtonLineStep(Optimizer):
    """p <- p - alpha g, alpha = g.g / (g.G g + damping), halved until the loss falls."""

    name = "gn-line"
    needs = frozenset({"closure", "gvp"})
    options = (Option.number("damping", 1e-2, "initial damping lambda", minimum=0),
               Option.integer("max_halvings", 6, "backtracking halvings", minimum=0))

    def _update(self, params, grads, *, closure, gvp):
        xp = backend.get_xp()
        damping = self.state.setdefault("damping", self.hyperparameters["damping"])
        gg = float(sum(xp.vdot(g, g) for g in grads.values()))
        Gg = gvp(params, grads)
        gGg = float(sum(xp.vdot(grads[k], Gg[k]) for k in grads))
        alpha, before, halvings = gg / (gGg + damping), closure(params)[0], 0
        trial = {k: w - alpha * grads[k] for k, w in params.items()}
        while closure(trial)[0] > before and halvings < self.hyperparameters["max_halvings"]:
            alpha, halvings = alpha / 2, halvings + 1
            trial = {k: w - alpha * grads[k] for k, w in params.items()}
        for k, w in params.items():
            w[...] = trial[k]
        self.state["damping"] = damping * (4.0 if halvings else 0.5)
        return {"alpha": alpha, "halvings": float(halvings)}


with OPTIMIZERS.temporarily("gn-line", GaussNewtonLineStep):
    line_result = run(config.with_overrides({"optimizer": "gn-line"}), MemorySink(),
                      progress=False)
print(f"gn-line: status {line_result.status}, held-out mse "
      f"{line_result.final['mse']:.4f}; SGD lr=0.05: {sgd_result.final['mse']:.4f}")
alphas = [r["optimizer"]["alpha"] for r in line_result.history if r["kind"] == "train"]
print("mean step length per logging window:", " ".join(f"{a:.3g}" for a in alphas))
assert line_result.status == "finished" and all(a > 0 for a in alphas)
assert line_result.final["mse"] < line_result.history[0]["mse"]   # it learns

# %%
save_figure(learning_curves_figure({"SGD lr=0.05": sgd_result.history,
                                    "Gauss-Newton line step": line_result.history},
                                   metric="mse", baseline=sgd_result.baseline,
                                   title=f"adding problem, T={T_ADD}, H=16"),
            "03_line_step_vs_sgd.png")

# %% [markdown]
# Nothing in the trainer knows about `gn-line`: registering it (here only for the block, with
# `OPTIMIZERS.temporarily`; a library optimizer gets one `OPTIMIZERS.register` line) made it a
# name the config, `rnnlab train --optimizer gn-line --damping 0.1` and `--help` all accept.
#
# ## Summary
#
# - A run is `run(config, sink)`: the config names task, model and optimizer with their own
#   options; the sink keeps records and checkpoints (files or memory); the result has a status.
# - `gauss_newton_product` gives G v = Jᵀ H J v at the cost of about two gradients; G is
#   symmetric, positive semi-definite, and its rank is bounded by the number of scored outputs.
# - An optimizer declares `options` and `needs` (`model`, `batch`, `closure`, `gvp`), keeps
#   structured state in `self.state`, and returns step metrics from `_update`.
#
# ## Exercises
#
# 1. Redo section 2 with `losses.softmax_cross_entropy` and integer targets; write H per
#    position as diag(p) − p pᵀ and form Jᵀ H J again.
# 2. Give `gn-line` momentum: keep the previous step in `self.state` and check that a run
#    resumed from a checkpoint (`FileSink`, `resume=True`) ends bit-identical to a straight run.
# 3. Replace the gradient direction by a few conjugate-gradient iterations on (G + λI) d = −g:
#    the core of Hessian-free optimisation.

# %%
finish("03_runs_and_curvature", FIGURES)
