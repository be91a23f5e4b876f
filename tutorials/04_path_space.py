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
# # Tutorial 04 — Optimizing in path space
#
# A ReLU network has many parameterisations of one function: multiply every weight into a
# hidden unit by α > 0 and every weight out of it by 1/α, and nothing it computes changes
# (chapter 02; Theorem 1 of the Path-SGD paper, `path-sgd-relu-rnn.md`). An update rule that
# sees only the weights may then move two equivalent networks to two different ones. This
# chapter shows that numerically and trains with the two remedies of the papers:
#
# 1. why SGD is not invariant: the same function, two parameterisations, two next steps;
# 2. **Path-SGD** (the Path-SGD paper): divide each gradient by κ, the diagonal curvature of the
#    path regulariser γ², which rescales with the weights so the step does not depend on the
#    parameterisation;
# 3. **G-SGD** (the G-SGD paper, `path-space-rnn-gsgd.md`): take the SGD step on the values of a
#    basis of paths, which rescalings do not change at all, and map it back to weights;
# 4. the invariance over several steps for SGD, Adam, Path-SGD and G-SGD, and learning curves on
#    the adding problem.
#
# Definition 1 of the Path-SGD paper: an update rule A is invariant when f(A(p)) = f(A(T(p)))
# for every feasible rescaling T and every input. `RNNLAB_FAST=1` shrinks the sizes; the last
# cell prints `04_path_space: all checks passed` only if every assert before it held.

# %%
from _setup import FAST, draw, finish, save_figure  # first: Agg in scripts, repo on the path

import numpy as np

import rnnlab
from rnnlab import RunConfig, backend, losses, objective
from rnnlab.models import ElmanRNN
from rnnlab.optim import make_optimizer
from rnnlab.optim.gsgd import skeleton_init
from rnnlab.paths import rescale
from rnnlab.train import MemorySink, run
from rnnlab.train.plots import learning_curves_figure

FIGURES = ("04_invariance.png", "04_learning_curves.png")
print(f"rnnlab {rnnlab.__version__}, backend {backend.backend_name()}, fast mode {FAST}")

# %% [markdown]
# ## 1. Two parameterisations of one function
#
# A two-layer ReLU RNN with biases, float64, and a rescaled copy with per-unit factors drawn
# from [0.25, 4] (`rnnlab.paths.rescale`). Same outputs on any input:

# %%
rng = np.random.default_rng(3)
T, B = 6, 4
model = ElmanRNN.create(2, (4, 4), 1, outputs="last", init="orthogonal", gain=0.9, seed=5,
                        dtype="float64")
# Start where G-SGD's steps are moderate: its skeleton weights (one in- and one out-weight per
# hidden unit, section 2) set to +1, as the official G-SGD code does at initialisation. A weight's
# G-SGD step scales like 1 / (the skeleton weights on its basis path)^2, so from small drawn
# skeleton weights its first steps explode.
p = skeleton_init({k: v.copy() for k, v in model.params.items()}, model.spec)
alpha = rescale.random_alpha(model.spec, rng)
q = {k: backend.to_device(v) for k, v in rescale.rescale(model.spec, p, alpha).items()}
print("largest weight change from the rescaling:",
      f"{max(float(np.abs(p[k] - q[k]).max()) for k in p):.3g}")


def batch(seed):
    """A batch of the adding problem with T steps (the same for the same seed)."""
    task = rnnlab.AddingProblem(T, dtype="float64")
    x, y, _ = task.batch(backend.host_rng(seed), B)
    return objective.Batch(x, y)


def outputs(params, x):
    return backend.to_host(model.forward(params, x)[0])


probe = batch(1000).x   # an input none of the training steps sees
gap0 = np.abs(outputs(p, probe) - outputs(q, probe)).max()
print(f"|f_p - f_q| on a fresh input: {gap0:.1e}")
assert gap0 < 1e-12   # the same function, to float64 round-off

# %% [markdown]
# ## 2. One step of each rule on both
#
# Every rule gets the same batch and the same learning rate; we compare the two networks'
# outputs afterwards on the fresh input. SGD moves them apart by an amount of the order of the
# step itself; the path-space rules keep them together to round-off. (G-SGD runs here with
# `skeleton_init=False`: its default first step sets every skeleton weight to +1, as the
# official code does at initialisation, which is a change of the function made once, before
# training, and differs between the two parameterisations.)

# %%
RULES = {"sgd": {"lr": 0.01}, "adam": {"lr": 0.01}, "path-sgd": {"lr": 0.01},
         "path-sgd + kappa2": {"lr": 0.01, "second_term": True},
         "gsgd": {"lr": 0.01, "skeleton_init": False}}


def trajectory_gap(rule, steps):
    """|f_A(p) - f_A(q)| on the probe after each of ``steps`` updates of ``rule``."""
    name = rule.split(" ")[0]
    opts = RULES[rule]
    pa = {k: v.copy() for k, v in p.items()}
    qa = {k: v.copy() for k, v in q.items()}
    opt_p, opt_q = make_optimizer(name, **opts), make_optimizer(name, **opts)
    gaps = []
    for step in range(steps):
        b = batch(step)
        for params, opt in ((pa, opt_p), (qa, opt_q)):
            _, grads, _ = objective.batch_loss_and_grads(model, params, b, losses.mse)
            opt.step(params, grads, model=model, batch=b)
        gaps.append(float(np.abs(outputs(pa, probe) - outputs(qa, probe)).max()))
    return gaps


STEPS = 5 if FAST else 20
gaps = {rule: trajectory_gap(rule, STEPS) for rule in RULES}
for rule, g in gaps.items():
    print(f"{rule:>18}: after 1 step {g[0]:.1e}, after {STEPS} steps {g[-1]:.1e}")
assert gaps["sgd"][0] > 1e-6 and gaps["adam"][0] > 1e-6       # not invariant: far above 1e-12
for rule in ("path-sgd", "path-sgd + kappa2", "gsgd"):
    assert max(gaps[rule]) < 1e-9, rule                        # invariant, to round-off

# %%
save_figure(draw.invariance_gaps(gaps, "one function, two parameterisations: output gap "
                                       "after each step"), "04_invariance.png")

# %% [markdown]
# Why it works. Under a rescaling T_α, a weight w into unit j scales by α_j and its gradient by
# 1/α_j; an SGD step −η ∂L/∂w therefore scales by 1/α_j where the weight scaled by α_j — the
# step is the wrong size in the rescaled network by α_j². κ(w) = ½ ∂²γ²/∂w² scales by 1/α_j² (γ²
# is invariant), so the Path-SGD step −η (∂L/∂w)/κ(w) scales by α_j exactly like w. G-SGD never
# sees the weights' scale: its step is SGD on the basis-path values, which T_α leaves unchanged,
# and the weights are then solved from the new values with the skeleton out-weights held fixed.
#
# Two details matter for the invariance to be exact. The squared network that gives κ must
# start from h̃_0 = 0 (the Path-SGD paper's Section 2 lists the time-0 hidden units as inputs,
# which breaks it: see chapter 02), and biases must be edges from a bias node, so κ(b) is not
# zero and b rescales like a weight into its unit. Adam is not invariant: its per-coordinate
# normalisation divides out the scale of the gradient, so its step has the same size in both
# networks while the weights differ by α.
#
# ## 3. Training with the three rules
#
# The adding problem (T = 20) with an IRNN of 64 units (ReLU, identity recurrence), the same
# seed, data and clipping for all three; only the update rule differs, each at a rate picked from
# a small grid on this task. These are the configs of `rnnlab demo optimizers`. Path-SGD's rate
# is in path units: g/κ is huge on the weights whose paths carry small input and output weights,
# so its rate is five orders of magnitude below SGD's, and the run is sensitive to it (3e-7
# diverges here while 1e-6 trains). Invariance is a property of the rule, not a promise of
# speed: in this setting plain SGD learns fastest.

# %%
from rnnlab.experiments.demo import demo_configs  # noqa: E402

TRAIN_STEPS = 300 if FAST else 6000
histories, finals = {}, {}
for label, config in demo_configs(steps=TRAIN_STEPS, which="optimizers").items():
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished", (label, result.message)
    histories[label], finals[label] = result.history, result.final["mse"]
    print(f"{label:>18}: held-out mse {result.final['mse']:.4f} (trivial baseline "
          f"{result.baseline:.4f})")
assert all(np.isfinite(v) for v in finals.values())

# %%
save_figure(learning_curves_figure(histories, metric="mse", baseline=1 / 6,
                                   title="adding problem, T=20, IRNN with 64 units"),
            "04_learning_curves.png")

# %% [markdown]
# ## Summary
#
# - SGD and Adam depend on the parameterisation: two weight settings of one ReLU network move to
#   two different functions after one step.
# - Path-SGD divides the gradient by κ = ½ ∂²γ²/∂w², computed with one forward and one backward
#   pass of the squared network on the all-ones input (κ₁), optionally plus the corrected second
#   term κ₂ (the paper's Eq. 10 is half of it, Eq. 11 a quarter, and its Section 4.4 matrix
#   form is shifted by one step: see `rnnlab verify`); both versions are invariant.
# - G-SGD is exact SGD on basis-path values; its closed form (not Algorithm 2 of the G-SGD paper
#   as printed) keeps the function's trajectory independent of the parameterisation.
#
# ## Exercises
#
# 1. Use tanh instead of ReLU: the rescaled network no longer computes the same function. What
#    do `rnnlab.paths` and the optimizers say, and why?
# 2. Start the squared network from h̃_0 = 1 (the paper's Section 2 reading) in a copy of κ₁ and
#    watch the invariance of section 2 break.
# 3. Compare `update="printed"` (Algorithm 2 as printed) with the default on the invariance
#    test, with and without `skeleton_init=True`.

# %%
finish("04_path_space", FIGURES)
