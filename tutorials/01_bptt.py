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
# # Tutorial 01 — Backpropagation through time, by hand
#
# This tutorial opens up the one-layer Elman RNN of `rnnlab` and redoes its forward pass and its
# backpropagation through time (BPTT) with explicit loops on a model small enough to read every
# number. Then it lets the library do the work:
#
# 1. the forward pass, step by step, against `ElmanRNN.forward`;
# 2. the backward pass, step by step, against `ElmanRNN.backward`;
# 3. a finite-difference check with `rnnlab.gradcheck.check_gradients`;
# 4. why gradients vanish or explode over 100 steps, for ReLU and tanh networks.
#
# Run it as a script (`python tutorials/01_bptt.py`) or open it as a notebook with jupytext.
# `RNNLAB_FAST=1` shrinks every size so the whole file runs in seconds; figures go to
# `RNNLAB_TUTORIAL_OUT` (default `./runs/tutorials`) and, in a notebook, also show under their
# cell. The last cell prints `01_bptt: all checks passed`, which it reaches only if every assert
# before it held.
#
# Shapes, as everywhere in rnnlab: T steps, B sequences in a batch, n_in inputs, H hidden units,
# n_out outputs. Arrays are time-major: `x : (T, B, n_in)`.

# %%
from _setup import FAST, draw, finish, save_figure  # first: Agg in scripts, repo on the path

import numpy as np

import rnnlab
from rnnlab import AddingProblem, ElmanRNN, backend, gradcheck, losses, objective

FIGURES = ("01_bptt_gradient_norms.png",)  # every figure this chapter saves (the test reads it)
print(f"rnnlab {rnnlab.__version__}, backend {backend.backend_name()}, fast mode {FAST}")

# %% [markdown]
# ## 1. The forward pass
#
# A one-layer Elman RNN reads a sequence x_1, ..., x_T and keeps a hidden state h_t:
#
# $$a_t = W_\text{in} x_t + W_\text{rec} h_{t-1} + b, \qquad h_t = \phi(a_t), \qquad h_0 = 0,$$
# $$y = W_\text{out} h_T + b_\text{out},$$
#
# with $\phi = \mathrm{ReLU}$ here (a_t is the *pre-activation*). Weights are stored
# (out, in), so `W_in : (H, n_in)`, `W_rec : (H, H)`, `W_out : (n_out, H)`. A batch stacks B
# sequences as rows, so in code every product is written with the transpose:
# `a_t = x_t @ W_in.T + h_prev @ W_rec.T + b` with `x_t : (B, n_in)` and `h_prev : (B, H)`.
#
# We build a tiny model from weights we write down ourselves: n_in = 2, H = 3, n_out = 1,
# on T = 3 steps and a batch of B = 2. Everything is float64 so that comparisons can be tight.

# %%
W_in = np.array([[0.5, -0.3],
                 [0.8, 0.2],
                 [-0.4, 0.6]])
W_rec = np.array([[0.9, -0.2, 0.1],
                  [0.3, 0.7, -0.5],
                  [-0.6, 0.4, 0.8]])
b = np.array([0.1, -0.2, 0.05])
W_out = np.array([[1.0, -0.7, 0.4]])
b_out = np.array([0.2])

tiny = ElmanRNN.from_arrays({"layer1.W_in": W_in, "layer1.W_rec": W_rec, "layer1.b": b,
                             "out.W": W_out, "out.b": b_out},
                            activation="relu", outputs="last", dtype="float64")
print(tiny)
for name, shape in tiny.spec.param_shapes().items():
    print(f"  {name:<12} {shape}")

T, B, n_in, H, n_out = 3, 2, 2, 3, 1
x = np.array([[[1.0, 0.0], [0.3, -1.0]],      # x_1 for the two sequences
              [[-0.5, 0.8], [0.9, 0.4]],      # x_2
              [[0.2, 1.0], [-0.7, 0.5]]])     # x_3
targets = np.array([[0.5], [-0.3]])
assert x.shape == (T, B, n_in) and targets.shape == (B, n_out)

# %% [markdown]
# The forward pass is a loop over time. We keep the list `h = [h_0, h_1, ..., h_T]`, which the
# backward pass needs, and the pre-activations, to look at. (Python lists start at 0, so the
# input of step t, x_t, is `x[t - 1]`.)

# %%
h = [np.zeros((B, H))]                      # h_0
pre = [None]                                # a_t, with a dummy at index 0
for t in range(1, T + 1):
    a_t = x[t - 1] @ W_in.T + h[t - 1] @ W_rec.T + b
    assert a_t.shape == (B, H)
    pre.append(a_t)
    h.append(np.maximum(a_t, 0.0))
y = h[T] @ W_out.T + b_out
assert y.shape == (B, n_out)

print("pre-activations a_t (rows: sequences):")
for t in range(1, T + 1):
    print(f"  a_{t} =", np.array2string(pre[t], precision=3, suppress_small=True).replace("\n", ""))
print("y =", y.ravel())

# %% [markdown]
# Some pre-activations are negative: those units output 0 at that step, and (as we will see)
# pass no gradient back through it. Now the library: `forward(params, x)` returns the output and
# a cache whose `h[0]` holds the hidden states of layer 1 as one `(T + 1, B, H)` array with
# `h[0][0] = h_0`. Inputs move to the active backend with `backend.to_device` and back with
# `backend.to_host` (a no-op on NumPy; a copy on CuPy).

# %%
y_lib, cache = tiny.forward(tiny.params, backend.to_device(x))
h_lib = backend.to_host(cache.h[0])
assert h_lib.shape == (T + 1, B, H)

# Float64 rounding is ~1e-16 per operation and the two codes add in different orders; 1e-12
# leaves wide room for that, while any real difference in the equations would be O(1).
TOL = dict(rtol=1e-12, atol=1e-12)
assert np.allclose(backend.to_host(y_lib), y, **TOL)
assert np.allclose(h_lib, np.stack(h), **TOL)
print("explicit loop == model.forward: max |diff| in y =",
      float(np.abs(backend.to_host(y_lib) - y).max()))

# %% [markdown]
# ## 2. The backward pass through time
#
# The loss is the mean squared error at the last step,
# $L = \frac{1}{B\,n_\text{out}} \sum (y - \text{target})^2$. `rnnlab.losses.mse` returns its
# value and $\partial L/\partial y$. Everything else is the chain rule, applied backwards in time.
#
# **Output layer.** $y = W_\text{out} h_T + b_\text{out}$ gives
# $\partial L/\partial W_\text{out} = \sum_\text{batch} (\partial L/\partial y)\, h_T^\top$,
# $\partial L/\partial b_\text{out} = \sum_\text{batch} \partial L/\partial y$, and the gradient
# that enters the recurrence,
#
# $$g_T := \frac{\partial L}{\partial h_T} = W_\text{out}^\top \frac{\partial L}{\partial y}.$$
#
# **One step back.** Write $g_t = \partial L / \partial h_t$ and
# $\delta_t = \partial L / \partial a_t$. Since $h_t = \phi(a_t)$ elementwise,
#
# $$\delta_t = g_t \odot \phi'(a_t),$$
#
# where for ReLU $\phi'(a_t) = [a_t > 0] = [h_t > 0]$ (a 0/1 mask; for tanh it would be
# $1 - h_t^2$). The pre-activation $a_t$ depends on $h_{t-1}$ through $W_\text{rec}$, so
#
# $$g_{t-1} = W_\text{rec}^\top \delta_t.$$
#
# (Here the loss sits only at step T. With an output at every step, each $g_t$ would also
# receive $W_\text{out}^\top \partial L/\partial y_t$.)
#
# **Weights are shared across time**, so their gradients are sums over the steps:
#
# $$\frac{\partial L}{\partial W_\text{rec}} = \sum_{t=1}^{T} \delta_t\, h_{t-1}^\top, \qquad
#   \frac{\partial L}{\partial W_\text{in}} = \sum_{t=1}^{T} \delta_t\, x_t^\top, \qquad
#   \frac{\partial L}{\partial b} = \sum_{t=1}^{T} \delta_t,$$
#
# each also summed over the batch. In batch-as-rows code, $\delta_t h_{t-1}^\top$ becomes
# `delta.T @ h[t-1]` and $W_\text{rec}^\top \delta_t$ becomes `delta @ W_rec`.
# Finally $g_0 = \partial L/\partial h_0$ is the gradient with respect to the initial state.

# %%
loss, dy = losses.mse(y_lib, backend.to_device(targets))  # y_lib == y, checked above
dy = backend.to_host(dy)
assert dy.shape == (B, n_out)

grads_by_hand = {"layer1.W_in": np.zeros_like(W_in), "layer1.W_rec": np.zeros_like(W_rec),
                 "layer1.b": np.zeros_like(b),
                 "out.W": dy.T @ h[T], "out.b": dy.sum(axis=0)}
g = dy @ W_out                              # g_T = dL/dh_T, (B, H)
for t in range(T, 0, -1):                   # t = T, ..., 1
    delta = g * (h[t] > 0)                  # dL/da_t = g_t * relu'(a_t)
    grads_by_hand["layer1.W_rec"] += delta.T @ h[t - 1]
    grads_by_hand["layer1.W_in"] += delta.T @ x[t - 1]
    grads_by_hand["layer1.b"] += delta.sum(axis=0)
    g = delta @ W_rec                       # g_{t-1} = dL/dh_{t-1}
    assert delta.shape == g.shape == (B, H)
dL_dh0_by_hand = g
print(f"loss = {loss:.6f}")
print("dL/dW_rec by hand:\n", grads_by_hand["layer1.W_rec"])

# %% [markdown]
# The library's `backward(params, dy, cache)` runs the same recursion (vectorised: it stores all
# $\delta_t$ and forms each weight gradient with one matrix product over all steps) and returns
# the gradients, with the parameters' names, and `d_state`, the list of
# $\partial L / \partial h_0$ for each layer.

# %%
grads_lib, d_state = tiny.backward(tiny.params, backend.to_device(dy), cache)
assert list(grads_lib) == list(tiny.params)
for name, g_lib in grads_lib.items():
    g_lib = backend.to_host(g_lib)
    assert g_lib.shape == grads_by_hand[name].shape
    assert np.allclose(g_lib, grads_by_hand[name], **TOL), name  # same TOL as the forward pass
    print(f"  {name:<12} max |by hand - library| = "
          f"{float(np.abs(g_lib - grads_by_hand[name]).max()):.1e}")
assert np.allclose(backend.to_host(d_state[0]), dL_dh0_by_hand, **TOL)
print("dL/dh_0 matches d_state[0]")

# %% [markdown]
# ## 3. Checking gradients against finite differences
#
# Agreement between two hand-written codes does not prove either right: both could share the
# same mistake in the derivation. A finite-difference check compares with the definition of the
# derivative instead. For every parameter element k, `check_gradients` evaluates the loss at
# $p \pm \epsilon e_k$ and compares $(L(p+\epsilon e_k) - L(p-\epsilon e_k)) / 2\epsilon$ with the
# analytic gradient, reporting the largest relative error per parameter. It insists on float64
# (in float32 the two loss values agree to only ~7 digits, too few to resolve the difference
# quotient), and it sets aside elements whose perturbation crosses a ReLU kink, where the
# difference quotient is not a derivative; those are counted in the `kinks` column.
#
# The checker needs only a loss closure over a parameter dict; `rnnlab.objective.loss_value`
# builds that from a model, a batch and a loss.

# %%
def check(model, x, targets):
    """Gradient-check ``model`` at ``model.params`` on one batch.

    Returns ``(report, grads, loss_fn)``: the checker's report, the BPTT gradients it checked,
    and the loss closure it differentiated numerically.
    """
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets, losses.mse)

    def loss_fn(p):
        return objective.loss_value(model, p, x, targets, losses.mse)

    return gradcheck.check_gradients(loss_fn, model.params, grads), grads, loss_fn


report, _, _ = check(tiny, backend.to_device(x), backend.to_device(targets))
print(report)
# Central differences with eps = 1e-5 are accurate to ~eps^2 = 1e-10 (truncation) plus
# ~1e-16 / eps = 1e-11 (round-off), relative; 1e-6 leaves margin, a wrong gradient gives ~1.
assert report.passed(1e-6)

# %% [markdown]
# The same check on a bigger random model, for both activations, on a batch of the adding
# problem (`rnnlab.AddingProblem`: two input channels, values and markers; the target is the sum
# of the two marked values, read at the last step).

# %%
check_T, check_H, check_B = (6, 4, 3) if FAST else (20, 10, 8)
task = AddingProblem(check_T, dtype="float64")
xc, tc, _ = task.batch(backend.host_rng(1), check_B)
for activation in ("relu", "tanh"):
    model = ElmanRNN.create(task.n_in, check_H, task.n_out, activation=activation,
                            init="orthogonal", seed=1, dtype="float64")
    report, grads, loss_fn = check(model, xc, tc)
    print(f"\n{activation}, T={check_T}, H={check_H}, B={check_B}:")
    print(report)
    assert report.passed(1e-6)  # same reasoning as above

# %% [markdown]
# A check is only worth something if it can fail. Hand it (for the tanh model just checked) a
# gradient with one classic BPTT bug, a transposed $\partial L/\partial W_\text{rec}$ (from
# writing `h[t-1].T @ delta` instead of `delta.T @ h[t-1]`), and it says so:

# %%
broken = dict(grads)
broken["layer1.W_rec"] = grads["layer1.W_rec"].T
bad = gradcheck.check_gradients(loss_fn, model.params, broken, names=["layer1.W_rec"])
print(bad)
assert not bad.passed(1e-6)

# %% [markdown]
# ## 4. Vanishing and exploding gradients
#
# Unroll the recursion of section 2. From $g_{t-1} = W_\text{rec}^\top (g_t \odot \phi'(a_t))$,
#
# $$\frac{\partial L}{\partial h_t} = J_{t+1}^\top J_{t+2}^\top \cdots J_T^\top\,
#   \frac{\partial L}{\partial h_T}, \qquad J_s = \frac{\partial h_s}{\partial h_{s-1}}
#   = \mathrm{diag}(\phi'(a_s))\, W_\text{rec}.$$
#
# The gradient that reaches step t is a product of T − t Jacobians, so its size changes
# geometrically with the distance to the loss: if every $J_s$ shrinks vectors by a factor
# $\rho < 1$, the signal from step T arrives at step t scaled by about $\rho^{T-t}$ (vanishing);
# if the $J_s$ stretch vectors, it blows up (exploding). Since $|\phi'| \le 1$ for both ReLU and
# tanh, $\|J_s\| \le \|W_\text{rec}\|$, and for an identity or orthogonal $W_\text{rec}$ times a
# *gain* that spectral norm is exactly the gain.
#
# **Measuring $\partial L/\partial h_t$ with the library.** `backward` takes an optional
# `d_final_state`, a gradient arriving at the last hidden state from later in the sequence
# (this is how truncated BPTT hands gradients from one chunk to the one before), and returns
# `d_state`, the gradient at the initial state. A one-step run from $h_{t-1}$ on $x_t$, with no
# gradient at its output (`dy = 0`) and `d_final_state` $= g_t$, therefore returns
# $g_{t-1}$: the recursion of section 2, one library call per step. The states $h_{t-1}$ come
# from the full forward's `cache.h`. At the end, $g_0$ must equal the `d_state` of one full
# backward pass, which checks the whole chain.

# %%
def hidden_state_gradients(model, params, x, targets):
    """||dL/dh_t|| for t = 0..T, for the MSE loss at the last step.

    Parameters
    ----------
    model : ElmanRNN with one hidden layer and outputs "last"
    params : dict, the model's parameter names (need not be ``model.params``)
    x : (T, B, n_in)
    targets : (B, n_out)

    Returns
    -------
    norms : (T + 1,) host array; norms[t] is the Frobenius norm over the batch of dL/dh_t.
    """
    xp = backend.get_xp()
    y, cache = model.forward(params, x)
    _, dy = losses.mse(y, targets)
    _, d_state = model.backward(params, dy, cache)   # full BPTT; d_state[0] = dL/dh_0
    h = cache.h[0]                                   # (T + 1, B, H); h[t] = h_t
    steps = x.shape[0]
    norms = np.empty(steps + 1)
    g = dy @ params["out.W"]                         # g_T = dL/dh_T
    norms[steps] = float(xp.linalg.norm(g))
    no_output_grad = xp.zeros_like(dy)
    for t in range(steps, 0, -1):
        _, one_step = model.forward(params, x[t - 1:t], state=[h[t - 1]])  # h_{t-1} -> h_t
        _, (g,) = model.backward(params, no_output_grad, one_step, d_final_state=[g])
        norms[t - 1] = float(xp.linalg.norm(g))     # g is now dL/dh_{t-1}
    # Same per-step arithmetic as the full pass, so only rounding may differ (relative 1e-9
    # allows ~1e-16 per step over thousands of steps; a wrong chain would differ by O(1)).
    assert float(xp.linalg.norm(g - d_state[0])) <= 1e-9 * float(xp.linalg.norm(d_state[0]))
    return norms


# %% [markdown]
# The experiment: adding-problem batches of length T = 100 (the loss sits at the last step and
# a marker can be at step 1, so a network that learns this task needs gradient from step 100 to
# reach step 1), H = 100 units. The input and output weights are drawn once and shared; only
# the recurrent matrix changes: the identity (as in the IRNN of Le et al. 2015) or one random
# orthogonal matrix, times a gain of 0.8, 1.0 or 1.2, under a ReLU or a tanh. Because the
# compute methods take the parameters explicitly, one model per activation serves all six
# recurrent matrices. We plot $\|\partial L/\partial h_t\| / \|\partial L/\partial h_T\|$, the
# factor by which the gradient has grown or shrunk on its way back to step t.

# %%
T4, H4, B4 = (30, 16, 8) if FAST else (100, 100, 64)
GAINS = (0.8, 1.0, 1.2)
ACTIVATIONS = ("relu", "tanh")
task = AddingProblem(T4, dtype="float64")
x4, t4, _ = task.batch(backend.host_rng(0), B4)

base = ElmanRNN.create(task.n_in, H4, task.n_out, init="orthogonal", seed=0, dtype="float64")
Q = backend.to_host(base.params["layer1.W_rec"])
assert np.allclose(Q.T @ Q, np.eye(H4))          # orthogonal to float64 rounding
RECURRENT = {"identity": np.eye(H4), "orthogonal": Q}

ratios = {}
for activation in ACTIVATIONS:
    model = ElmanRNN.from_arrays(base.params, activation=activation, dtype="float64")
    for init, W in RECURRENT.items():
        for gain in GAINS:
            params = dict(model.params, **{"layer1.W_rec": backend.to_device(gain * W)})
            norms = hidden_state_gradients(model, params, x4, t4)
            ratios[init, activation, gain] = norms / norms[-1]

print(f"||dL/dh_0|| / ||dL/dh_T|| after T = {T4} steps back (gain^T for reference):")
print(f"{'W_rec':<11} {'act':<5}" + "".join(f"{f'gain {g}':>11}" for g in GAINS))
for init in RECURRENT:
    for activation in ACTIVATIONS:
        print(f"{init:<11} {activation:<5}"
              + "".join(f"{ratios[init, activation, g][0]:>11.1e}" for g in GAINS))
print(f"{'gain^T':<17}" + "".join(f"{g ** T4:>11.1e}" for g in GAINS))

# %%
fig = draw.gradient_ratios(ratios, RECURRENT, ACTIVATIONS, GAINS,
                           f"Gradient reaching step t, adding problem T={T4}, H={H4}, B={B4}")
save_figure(fig, "01_bptt_gradient_norms.png")

# %% [markdown]
# **What the figure shows** (full mode: T = 100, H = 100, B = 64; the numbers of the fast
# mode's smaller network differ, most for tanh). On a log scale a constant factor per step is a
# straight line, and the per-step factor is roughly the gain times how much of the gradient the
# activation lets through.
#
# * **ReLU, identity (top left).** Straight lines with slope log(gain): after 100 steps the
#   ratio is 1.4e-10 at gain 0.8 and 5.8e7 at gain 1.2, against 0.8¹⁰⁰ = 2.0e-10 and
#   1.2¹⁰⁰ = 8.3e7. With $W_\text{rec} = $ gain × I each unit only talks to itself, so a unit
#   that stays on passes its gradient back multiplied by exactly the gain, and one that is off
#   drops out. At gain 1.0 the gradient from step 100 reaches step 1 nearly intact (ratio
#   0.68, most of it lost in the first step back, where the units that are off at step T drop
#   out; the line is flat after that). This is the IRNN's reason to start from the identity,
#   and gain 1.2 is why it also needs gradient clipping (`rnnlab.clip_grad_norm`).
# * **ReLU, orthogonal (bottom left).** Every line decays, even at gain 1.2 (5.3e-6). A random
#   rotation spreads the gradient over all units each step, and the ReLU mask keeps only the
#   ~55 % that are on, i.e. a factor of about $\sqrt{0.55} \approx 0.74$ in norm per step:
#   gain 1.0 ends at 1.5e-13 ≈ 0.74¹⁰⁰, gain 0.8 at 1.5e-22.
# * **tanh, identity (top right).** Gain 0.8 vanishes (7e-11), and even gain 1.0 loses a
#   factor 7 (0.15), because the states drift into tanh's saturation where
#   $\phi' = 1 - h^2 < 1$. Gain 1.2 does *not* explode: the states saturate near the fixed
#   point of $h = \tanh(1.2h)$, where the per-step factor is about 0.6, and the gradient decays
#   (to 7e-9 at t = 28) until, in the first steps before the states have grown, it grows by
#   up to 1.2 per step again. tanh trades explosion for vanishing.
# * **tanh, orthogonal (bottom right).** States stay small enough that $\phi' \approx 0.95$:
#   gain 0.8 vanishes, gain 1.0 decays slowly (0.011), and gain 1.2 is the one setting here
#   where the gradient grows modestly (×10) without exploding.
#
# In every panel a gain below 1 makes the gradient vanish geometrically (no activation can
# help, since $\|J_s\| \le$ gain). Learning a dependency across 100 steps, as the adding problem
# asks, needs a recurrent Jacobian whose norm stays close to 1 *along the directions the
# activation lets through*; among these twelve networks only ReLU with gain × identity at
# gain 1, and tanh with orthogonal matrices near gain 1.2, come close.

# %% [markdown]
# ## Summary
#
# * An Elman RNN's forward pass is a loop of $h_t = \phi(W_\text{in} x_t + W_\text{rec} h_{t-1}
#   + b)$; the output reads $h_T$. `ElmanRNN.forward` computes exactly the explicit loop.
# * BPTT runs the chain rule backwards: $\delta_t = g_t \odot \phi'(a_t)$,
#   $g_{t-1} = W_\text{rec}^\top \delta_t$, and the shared weights collect
#   $\sum_t \delta_t h_{t-1}^\top$ and $\sum_t \delta_t x_t^\top$. `ElmanRNN.backward` agrees
#   with the explicit loop to 1e-12 and returns $\partial L/\partial h_0$ as `d_state`.
# * `gradcheck.check_gradients` confirms the gradients against central differences in float64,
#   sets aside ReLU kinks, and catches a transposed $\partial L/\partial W_\text{rec}$.
# * $\partial L/\partial h_t$ is a product of T − t Jacobians
#   $\mathrm{diag}(\phi'(a_s)) W_\text{rec}$, so it shrinks or grows geometrically; the
#   recurrent gain and the activation decide which. Chaining one-step `backward` calls through
#   `d_final_state` measures it with the library. A ReLU network with $W_\text{rec} = I$
#   carries the gradient over 100 steps almost unchanged; gain 0.8 loses ten orders of
#   magnitude, gain 1.2 gains eight, and a random orthogonal matrix under ReLU loses it all.
#
# ## Exercises
#
# 1. Redo sections 1 and 2 for tanh: change `activation="tanh"` in `from_arrays`, replace
#    `np.maximum` by `np.tanh` and the mask `(h[t] > 0)` by `1 - h[t] ** 2`, and check that the
#    asserts still pass.
# 2. Give the tiny model an output at every step (`outputs="every"`, targets of shape
#    `(T, B, n_out)`). Where does $\partial L/\partial y_t$ enter the backward loop? Change the
#    loop and compare with `backward` again.
# 3. Truncated BPTT: split `x` into two chunks, run the second from the first's
#    `cache.final_state`, and pass the second chunk's `d_state` as `d_final_state` to the first
#    chunk's `backward` (with `dy = 0`: the first chunk's output is not scored). Show that the
#    two chunks' gradients add up to those of the unsplit sequence.
# 4. Use `gradcheck.check_directional` on the H = 100 model of section 4. Why is it the only
#    practical check at that size?
# 5. In section 4, for ReLU with identity init, predict $\|\partial L/\partial h_0\| /
#    \|\partial L/\partial h_T\|$ from the gain alone and compare with the printed table. What
#    explains the remaining factor? (Hint: look at `(cache.h[0][-1] > 0).mean()`.)
# 6. Add a third recurrent matrix to `RECURRENT`: the np-RNN one,
#    `ElmanRNN.create(..., init="np-rnn").params["layer1.W_rec"]` (symmetric positive definite,
#    largest eigenvalue 1). Where do its curves fall relative to identity and orthogonal, and
#    why? (Hint: its other eigenvalues are below 1.)

# %%
finish("01_bptt", FIGURES)  # prints "01_bptt: all checks passed": every assert above held
