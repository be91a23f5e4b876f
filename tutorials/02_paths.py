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
# # Tutorial 02 — Paths through a ReLU RNN
#
# It follows two papers, and since both number their theorems from 1, every reference below
# names its paper:
#
# * **the Path-SGD paper**, `path-sgd-relu-rnn.md` (Neyshabur, Wu, Salakhutdinov and Srebro,
#   *Path-Normalized Optimization of Recurrent Neural Networks with ReLU Activations*);
# * **the G-SGD paper**, `path-space-rnn-gsgd.md` (*Path Space for Recurrent Neural Networks
#   with ReLU Activations*).
#
# A ReLU RNN unrolled over T steps is a feed-forward network whose weights are *shared* across
# time (the Path-SGD paper, Section 2). Every output is a sum over the network's
# input-to-output **paths** of (product of the weights on the path) x (is every ReLU on the path
# on?) x (the input the path starts from) (Eq. 3 of the G-SGD paper). This tutorial builds
# that picture for a 2-unit network you can read completely:
#
# 1. the unrolled graph, drawn, with every edge labelled by the parameter it shares;
# 2. its paths, their values and counting vectors, and the output rebuilt from them;
# 3. the path regularizer gamma^2 three ways, and its curvature kappa used by Path-SGD —
#    including a place where the Path-SGD paper's printed formula is off;
# 4. a node-wise rescaling: the weights change, the function and every path value do not;
# 5. why such a rescaling must use the same factor at every time step;
# 6. how fast the number of paths grows with T;
# 7. basis paths and the skeleton: a few path values from which all others follow, and what
#    they (with a few signs) say about the function (the G-SGD paper, Sections 3-4).
#
# Run it as a script (`python tutorials/02_paths.py`) or open it with jupytext.
# `RNNLAB_FAST=1` shrinks the work; figures go to `RNNLAB_TUTORIAL_OUT` (default
# `./runs/tutorials`) and, in a notebook, also show under their cell. The last cell prints
# `02_paths: all checks passed`, which it reaches only if every assert before it held.

# %%
from _setup import FAST, draw, finish, save_figure  # first: Agg in scripts, repo on the path

import collections
from fractions import Fraction

import numpy as np

import rnnlab
from rnnlab import ElmanRNN, ElmanSpec
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import (BasisPaths, Skeleton, UnrolledGraph, algorithm1_masks, exact,
                          forward_exact, norms, param_names_flat, rescale)

FIGURES = ("02_unrolled_graph.png", "02_reduction_graph.png", "02_path_counts.png",
           "02_skeleton.png")  # every figure this chapter saves (the test reads it)
np.set_printoptions(precision=4, suppress=True)
print(f"rnnlab {rnnlab.__version__}, fast mode {FAST}")

# %% [markdown]
# ## 1. A 2-unit ReLU RNN and its unrolled graph
#
# One input, two hidden ReLU units, one output read at the last of T = 3 steps, no biases (we
# add the bias node later). The weights are written out so every path value can be checked by
# hand. `W[j, k]` is the edge from unit k to unit j.

# %%
spec = ElmanSpec(n_in=1, hidden=(2,), n_out=1, activation="relu", bias=False, outputs="last")
params = {
    "layer1.W_in": np.array([[1.0], [-0.5]]),
    "layer1.W_rec": np.array([[0.5, 0.8], [-0.6, 0.9]]),
    "out.W": np.array([[1.5, -1.0]]),
}
T = 3
model = ElmanRNN(spec, params)
graph = UnrolledGraph(spec, T)
print(graph)
names = param_names_flat(spec)
print("parameters in flatten order:", names)
assert graph.n_nodes == T * (1 + 2) + 1 and graph.n_edges == T * 2 + (T - 1) * 4 + 2

# %% [markdown]
# Each node is an input x_t, a hidden unit h_t[j] or the output y_T. There are no time-0 hidden
# nodes: h_0 = 0, so a path starting there would carry nothing (rnnlab leaves them out; the
# `rnnlab.paths.unrolled` docstring explains why that also keeps the path norm invariant).
# Every edge carries the index pi(e) of the parameter it shares — the 4 recurrent weights appear
# on T - 1 = 2 edges each.

# %%
fig = draw.unrolled_graph(graph)
save_figure(fig, "02_unrolled_graph.png")

# %% [markdown]
# ### The reduction graph (time removed)
#
# Section 3.2 of the G-SGD paper collapses time: one node per unit, one edge per parameter, and
# paths that cross at most one recurrent edge (Definition 3 of the G-SGD paper). rnnlab builds
# it with `rnnlab.paths.reduction.ReductionGraph`; section 7 picks its basis paths.

# %%
from rnnlab.paths.reduction import ReductionGraph

red = ReductionGraph(spec)
fig = draw.reduction_graph(red)
save_figure(fig, "02_reduction_graph.png")
w = host_vector(params, spec)
for path in red.paths:
    print(f"  {red.describe(path):40s} value {float(red.value(path, w)):+.4f}")
assert len(red.paths) == red.count_paths() == 6 and red.n_params == len(names) == 8

# %% [markdown]
# ## 2. Paths, their values, and the output rebuilt from them
#
# `graph.bulk()` enumerates all paths at once (it first counts them exactly by dynamic
# programming and refuses above `max_paths`). A path's **value** is the product of its weights;
# its **counting vector** says how often it uses each shared parameter, so the value is
# prod_i p_i^(c_i).

# %%
paths = graph.bulk()
values = paths.values(params)
print(f"{len(paths)} paths (DP count {graph.count_paths()})")
for row, v, c in zip(paths.edges, values, paths.counts):
    used = ", ".join(f"{names[i]}^{c[i]}" if c[i] > 1 else names[i] for i in np.flatnonzero(c))
    print(f"  {graph.describe_path(row):58s} {v:+.4f}   {used}")
assert len(paths) == 2 + 4 + 8   # n_in * (H + H^2 + H^3) * n_out paths end at y_3

# %% [markdown]
# For an input batch, each path is either fully on (all the ReLUs it passes are active) or off.
# Eq. 3 of the G-SGD paper: y = sum over paths of value x activation x input — exactly the
# network's output.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((T, 4, 1))
act = paths.activation(x, params)        # (P, B) 0/1
inp = paths.inputs(x)                    # (P, B)
rebuilt = paths.reconstruct(x, params)
y, _ = model.forward(params, x)
print("active paths per sequence:", act.sum(axis=0))
print("forward :", y[:, 0])
print("rebuilt :", rebuilt[:, 0])
assert np.allclose(rebuilt, y, rtol=1e-13, atol=1e-13)

# %% [markdown]
# ## 3. The path regularizer gamma^2, three ways
#
# gamma^2 = sum over paths of the product of squared weights (Eq. 2 of the Path-SGD paper). It
# can also be built node by node, gamma_v^2 = sum_{u -> v} gamma_u^2 w^2 (Eq. 3 of the Path-SGD
# paper), or — Theorem 3 of the Path-SGD paper — read off as the summed output of the same
# network with squared weights on the all-ones input: all values are then >= 0, so the ReLUs do
# nothing and the forward pass *is* the path sum.

# %%
g_enum = norms.gamma2_enumeration(spec, params, T)
g_rec = norms.gamma2_recursion(spec, params, T)
g_sq = norms.gamma2_squared_network(spec, params, T)
print(f"gamma^2: enumeration {g_enum:.12f}, recursion {g_rec:.12f}, squared net {g_sq:.12f}")
assert abs(g_enum - g_rec) < 1e-13 * g_enum and abs(g_enum - g_sq) < 1e-13 * g_enum

# %% [markdown]
# ### kappa: the curvature Path-SGD divides by
#
# Path-SGD updates p_i <- p_i - eta (dL/dp_i) / kappa_i with kappa_i = 1/2 d^2 gamma^2 / dp_i^2
# (Eq. 8 of the Path-SGD paper). A path using p_i c times contributes p_i^(2c) R, so kappa_i
# collects c (2c - 1) p_i^(2c-2) R = [c + 2c(c-1)] p_i^(2c-2) R. The first part, kappa^(1), is
# one backward pass of the squared network; the second, kappa^(2), exists only for W_rec (only
# recurrent weights can repeat on a path).
#
# Lemma 1 of the Path-SGD paper (its Eq. 10) writes kappa^(2) with ordered pairs of repeated
# edges — c(c-1) per path, half the true 2c(c-1) — and its matrix form in Section 4.4 of the
# Path-SGD paper is a further factor 2 short and pairs each h_t with the gradient one step too
# early. `rnnlab.paths.norms.kappa` uses the corrected form; we check it three ways.

# %%
k_fast = host_vector(norms.kappa(spec, params, T), spec)   # kappa: a dict by name, flattened
k_enum = {part: host_vector(k, spec)                       # the KappaParts fields, flattened
          for part, k in vars(norms.kappa_enumeration(spec, params, T)).items()}
k_fd = host_vector(norms.kappa_finite_difference(spec, params, T), spec)
k_paper = host_vector(norms.kappa1_fast(spec, params, T), spec) + host_vector(
    norms.kappa2_paper_matrix_form(spec, params, T), spec)
print(f"{'parameter':18s} {'enumeration':>12s} {'fast':>12s} {'finite diff':>12s} "
      f"{'Path-SGD 4.4':>12s}")
for i, name in enumerate(names):
    print(f"{name:18s} {k_enum['kappa'][i]:12.6f} {k_fast[i]:12.6f} {k_fd[i]:12.6f} "
          f"{k_paper[i]:12.6f}")
assert np.allclose(k_fast, k_enum["kappa"], rtol=1e-13)
assert np.allclose(k_fd, k_fast, rtol=1e-6, atol=1e-9)
print("Eq. 10 (Lemma 1) of the Path-SGD paper is half the true second term:",
      np.allclose(2 * k_enum["kappa2_eq10"], k_enum["kappa2"]))

# %% [markdown]
# ## 4. Rescale a unit: the weights move, the function does not
#
# Multiply everything flowing into hidden unit 0 by alpha = 3 and everything flowing out of it by
# 1/3 (Theorem 1 of the Path-SGD paper). The recurrent self-weight W_rec[0,0] is both, so it
# stays; W_rec[0,1] grows, W_rec[1,0] shrinks.

# %%
alpha = [np.array([3.0, 1.0])]
scaled = rescale.rescale(spec, params, alpha)
for name in params:
    print(f"{name:13s} before {params[name].ravel()}  after {scaled[name].ravel()}")
y2, _ = ElmanRNN(spec, scaled).forward(scaled, x)
v2 = paths.values(scaled)
print("largest change in the outputs    :", float(np.max(np.abs(y2 - y))))
print("largest change in any path value :", float(np.max(np.abs(v2 - values))))
print("gamma^2 before / after           :", g_enum, norms.gamma2_enumeration(spec, scaled, T))
assert np.allclose(y2, y, rtol=1e-13, atol=1e-13) and np.allclose(v2, values, rtol=1e-13)

# %% [markdown]
# Path-SGD's step is invariant too (Theorem 2 of the Path-SGD paper): kappa of the rescaled
# network is kappa / s^2 where s is each parameter's scale factor, and the gradient is divided
# by s, so the step is multiplied by s — the same move, seen in rescaled coordinates. Plain SGD
# has no such property.

# %%
s = host_vector(rescale.rescaling_factors(spec, alpha), spec)
print("kappa(rescaled) * s^2 == kappa:",
      np.allclose(host_vector(norms.kappa(spec, scaled, T), spec) * s ** 2, k_fast, rtol=1e-12))

# %% [markdown]
# ## 5. Why the factor must be the same at every step
#
# Rescaling h_t[0] by a different factor at each step would need the edge into step t to carry
# W * f_t / f_(t-1): different values for different t. Shared weights cannot do that. We ask for
# factors (3, 2, 1) over the three steps and look at what each shared weight would have to be.

# %%
per_time = [np.array([[3.0, 1.0], [2.0, 1.0], [1.0, 1.0]])]   # (T, H): unit 0 at t = 1, 2, 3
res = rescale.per_time_rescaling(spec, params, T, per_time)
for i, name in enumerate(names):
    need = res["required"][i]
    if np.ptp(need) > 0:
        print(f"{name:18s} would need {need} on its {need.size} edges")
print(f"least-squares residual with shared weights: {res['residual']:.4f} (0 only if feasible)")
const = rescale.per_time_rescaling(spec, params, T, [np.tile(alpha[0], (T, 1))])
print("the same factor at every step: residual", const["residual"])
print("dimension of the feasible family:", rescale.feasible_rescaling_dimension(spec, T),
      "= number of hidden units", sum(spec.hidden))

# %% [markdown]
# ## 6. How fast paths multiply
#
# The count grows like H^T, which is why enumeration is only a reference method and the
# recursion / squared-network forms are what an optimizer uses.

# %%
Ts = range(1, 9 if FAST else 21)
counts_by_width = {}
for H in (1, 2, 4, 8):
    counts = [UnrolledGraph(ElmanSpec(1, (H,), 1, bias=True, outputs="every"), t).count_paths()
              for t in Ts]
    counts_by_width[H] = counts
fig = draw.path_counts(Ts, counts_by_width)
save_figure(fig, "02_path_counts.png")
big = UnrolledGraph(ElmanSpec(1, (8,), 1, outputs="every"), 20).count_paths()
print(f"H = 8, T = 20: {big:,} paths (a Python int; no overflow)")

# %% [markdown]
# ## 7. Basis paths and the skeleton
#
# The 14 path values of section 2 are not independent. x1 -> h0 -> h0 -> h0 -> y has value
# W_in[0] W_rec[0,0]^2 W_out[0], which is (value of x -> h0 -> h0 -> y)^2 / (value of
# x -> h0 -> y). **Basis paths** (Definition 2 of the G-SGD paper) are a smallest set of
# paths from which every other path value follows by products and quotients, i.e. with
# integer exponents. The **Skeleton Method** of the G-SGD paper's Section 4 picks them in the
# reduction graph:
#
# 1. give every hidden unit one *skeleton in-edge* (from an input) and one *skeleton out-edge*
#    (to an output). Algorithm 1 of the G-SGD paper stores these as 0/1 masks M^i, M^o shaped
#    like W_in, W_out;
# 2. for every edge e = u -> v that is not a skeleton in-edge, the basis path runs along the
#    skeleton to u, crosses e, then runs along the skeleton from v to an output.
#
# Theorem 3 of the G-SGD paper says this gives basis paths, and that there are
# #weights - #hidden nodes of them.
#
# ### The skeleton (Algorithm 1 of the G-SGD paper)
#
# Algorithm 1 of the G-SGD paper as printed sets `M^o[j][j % n_out] = 1` with j running over the
# hidden units. W_out is (n_out, H) = (1, 2) here, so row j = 1 does not exist: the printed loop
# fails whenever H > n_out, which includes the G-SGD paper's own sMNIST model (H = 100,
# 10 classes). Swapping the indices, `M^o[j % n_out][j] = 1`, gives what the text means: one 1
# per column, i.e. one skeleton out-edge per hidden unit. `Skeleton.cyclic` uses this corrected
# version.

# %%
skeleton = Skeleton.cyclic(spec)     # Algorithm 1 with the index fix, on every layer
M_in, M_out = skeleton.in_masks[1], skeleton.out_masks[1]
assert M_in.shape == params["layer1.W_in"].shape and M_out.shape == params["out.W"].shape
print("M^i on layer1.W_in (one 1 per row):", M_in.tolist())
print("M^o on out.W (one 1 per column):   ", M_out.tolist())
shapes = (params["layer1.W_in"].shape, params["out.W"].shape)
assert all(np.array_equal(a, b) for a, b in zip(algorithm1_masks(*shapes, reading="fixed"),
                                                 (M_in, M_out)))
try:
    algorithm1_masks(*shapes, reading="printed")
except IndexError as exc:
    print(f"Algorithm 1 of the G-SGD paper as printed, M^o[j][j % n_out]: IndexError ({exc})")
else:
    raise AssertionError("Algorithm 1 of the G-SGD paper as printed should fail for H > n_out")

# %% [markdown]
# ### The basis paths
#
# `BasisPaths` builds one path for every edge that is not a skeleton in-edge and labels its
# kind: **skeleton** (P_s: only skeleton edges, one per hidden unit), **non-skeleton** (P_ns:
# one non-skeleton W_in / W_out edge), **bias** (P_ns through a bias edge) and **recurrent**
# (P_b2: skeleton in-edge, one W_rec edge, skeleton out-edge). With one input and one output,
# every W_in and W_out entry of this network is a skeleton edge, so only the skeleton and
# recurrent kinds appear. The other two kinds show up with two inputs and biases (last line
# below).
#
# Counting: the network has 8 weights and 2 hidden units, so Theorem 3 of the G-SGD paper
# predicts 8 - 2 = 6 basis paths. Each hidden unit removes one dimension because rescaling that
# unit (section 4) changes the weights but no path value. We check the rest exactly with
# `rnnlab.paths.exact` (integers, no tolerance): the 6 counting vectors have rank 6, adding all
# reduction paths does not raise the rank, and every rescaling direction is orthogonal to every
# basis path.

# %%
basis = BasisPaths(spec, skeleton)
bvals = basis.values(w)                       # w: the flat weights from section 1
for r in range(len(basis)):
    print(f"  Q{r}  {basis.kinds[r]:9s}  {red.describe(basis.paths[r]):32s} value "
          f"{bvals[r]:+.4f}")
assert len(basis) == red.n_params - red.n_hidden == 8 - 2
Bmat = basis.matrix()                         # (6, 8) 0/1 counting vectors
assert Bmat.shape == (len(basis), red.n_params)
rank_basis = exact.rank(Bmat)
rank_joint = exact.rank(np.vstack([Bmat, red.counting_matrix()]))
print(f"{len(basis)} basis paths = {red.n_params} weights - {red.n_hidden} hidden nodes; "
      f"exact rank {rank_basis}; with all {len(red.paths)} reduction paths {rank_joint}")
assert rank_basis == rank_joint == len(basis)
assert (Bmat @ red.conservation_matrix().T == 0).all()   # rescalings leave basis values alone
wider = BasisPaths(ElmanSpec(2, (2,), 1, "relu", bias=True, outputs="last"))
print("two inputs and biases:", wider, dict(collections.Counter(wider.kinds)))

# %%
fig = draw.skeleton_and_basis(red, basis, bvals, M_in, M_out)
save_figure(fig, "02_skeleton.png")

# %% [markdown]
# ### Theorems 1 and 3 of the G-SGD paper at work: a long path from basis paths
#
# Take the unrolled path x[t=1] -> h0 -> h1 -> h0 -> y[t=3]. It crosses W_rec twice, so it is
# not a reduction path. `BasisPaths.coefficients` writes its counting vector c (section 2) as an
# **integer** combination c = sum_r k_r Q_r, and `BasisPaths.check` verifies that identity in
# integer arithmetic. Because a path value is prod_i p_i^(c_i), the same integers give
# v_p = prod_r v_Qr^(k_r). A negative k_r is a division. That is Theorem 1 of the G-SGD paper
# (paths of any length come from reduction paths) together with its Theorem 3 (reduction paths
# come from the basis). The value check runs in float64: each side takes about a dozen
# roundings, so we allow a relative error of 1e-13.

# %%
RTOL_VALUE = 1e-13
names_of = {r: graph.describe_path(row) for r, row in enumerate(paths.edges)}
pick = next(r for r, d in names_of.items()
            if d == "x[t=1,0] -> h1[t=1,0] -> h1[t=2,1] -> h1[t=3,0] -> y[t=3,0]")
c = paths.counts[pick]
k = basis.coefficients(c)
print("path          :", names_of[pick])
print("counting c    :", c.tolist())
print("coefficients k:", {f"Q{r}": n for r, n in sorted(k.items())})
assert basis.check(k, c) and all(isinstance(n, int) for n in k.values())
assert (sum(n * Bmat[r] for r, n in k.items()) == c).all()


def monomial(k):
    return " ".join(f"Q{r}" if n == 1 else f"Q{r}^{n}" for r, n in sorted(k.items()))


rec_edges = [e.param for e in red.edges if e.recurrent]
twice = [r for r in range(len(paths)) if paths.counts[r][rec_edges].sum() == 2]
assert len(twice) == 8                         # the 2^3 paths starting at t = 1
for r in twice:
    k = basis.coefficients(paths.counts[r])
    assert basis.check(k, paths.counts[r])
    product = float(np.prod([bvals[q] ** n for q, n in k.items()]))
    print(f"  {names_of[r]:58s} {values[r]:+.4f} = {monomial(k):16s} = {product:+.4f}")
    assert abs(product - values[r]) <= RTOL_VALUE * abs(values[r])

# %% [markdown]
# ### Theorem 2 of the G-SGD paper: basis values and signs fix the function
#
# Theorem 2 of the G-SGD paper says: the basis-path values plus the *signs* of the selected
# W_out entries (the skeleton out-weights) determine every ReLU's on/off state, and so the
# output. `BasisPaths` makes this constructive. Every other weight is a product of integer
# powers of basis values and skeleton out-weights (`BasisPaths.exponents`).
# `weights_from_values` evaluates those products. We work in exact fractions, so rebuilding the
# weights returns them *exactly*.

# %%
wq = [Fraction(float(v)) for v in w]          # the float64 weights as exact rationals
vq = basis.values(wq)                          # exact basis values
free = {o: wq[o] for o in basis.free}          # skeleton out-weights: out.W[0,0], out.W[0,1]
for p, (bexp, fexp) in sorted(basis.exponents.items()):
    terms = [f"Q{r}^{n}" if n != 1 else f"Q{r}" for r, n in sorted(bexp.items())]
    terms += [f"{names[o]}^{n}" if n != 1 else names[o] for o, n in sorted(fexp.items())]
    print(f"  {names[p]:18s} = {' * '.join(terms)}")
assert basis.check_exponents() and basis.weights_from_values(vq, free) == wq

# %% [markdown]
# Now choose different skeleton out-weights with the **same signs**: out.W[0,0] halved,
# out.W[0,1] tripled. `weights_from_values` then gives a second, different weight vector with
# the same basis values. It is the node rescaling of section 4 with alpha = (2, 1/3). On a random
# batch, both networks switch the same ReLUs on and give the same outputs. The float64 forwards
# agree up to rounding: 3 steps of dot products of length at most 3 on numbers of order 1, so we
# allow 1e-12 relative to the largest output. The exact rational forward
# (`rnnlab.paths.forward_exact`) gives identical outputs with no tolerance at all.

# %%
def as_params(wflat):
    return unflatten(np.array([float(v) for v in wflat]), spec, host=True)


def run_on(wflat, xb):
    p = as_params(wflat)
    yb, cache = ElmanRNN(spec, p).forward(p, xb)
    return yb, cache.h[0][1:] > 0              # outputs (B, 1), ReLU pattern (T, B, H)


free2 = {o: f * free[o] for o, f in zip(basis.free, (Fraction(1, 2), Fraction(3)))}
w2 = basis.weights_from_values(vq, free2)
assert basis.values(w2) == vq and w2 != wq
for name in params:
    print(f"{name:13s} first {params[name].ravel()}  second {as_params(w2)[name].ravel()}")
via_rescale = rescale.rescale(spec, params, [np.array([2.0, 1 / 3])])
assert all(np.allclose(via_rescale[n], as_params(w2)[n], rtol=1e-15) for n in params)

xb = np.random.default_rng(1).standard_normal((T, 16 if FAST else 256, 1))
y_a, pat_a = run_on(wq, xb)
y_b, pat_b = run_on(w2, xb)
assert y_a.shape == (xb.shape[1], 1) and pat_a.shape == (T, xb.shape[1], 2)
err = float(np.max(np.abs(y_b - y_a))) / float(np.max(np.abs(y_a)))
print(f"same ReLU pattern: {np.array_equal(pat_a, pat_b)}; relative output difference {err:.1e}")
assert np.array_equal(pat_a, pat_b) and err <= 1e-12
xq = [[[Fraction(int(v))] for v in row] for row in np.random.default_rng(2).integers(-3, 4, (T, 6))]
ex_a, ex_b = forward_exact(spec, wq, xq), forward_exact(spec, w2, xq)
print("exact forward: identical outputs and patterns:",
      ex_a.y == ex_b.y and ex_a.pattern == ex_b.pattern)
assert ex_a.y == ex_b.y and ex_a.pattern == ex_b.pattern

# %% [markdown]
# The signs are needed. Flip the sign of h0's skeleton out-weight and keep every basis value
# (`BasisPaths.flip_node`). The rebuilt weights are the rescaling of unit 0 by alpha = -1:
# W_in[0], out.W[0,0] and the two cross-recurrent weights change sign. Every path value stays the
# same, because each path through h0 enters and leaves it once per visit. But a ReLU is not
# symmetric, so h0 now fires on the other inputs and the outputs change. This is why the path
# space (Eq. 5 of the G-SGD paper) comes with fixed signs for the skeleton out-weights. For
# stacked RNNs the signs of W_out alone are not enough; the `rnnlab.paths.basis` docstring and
# `rnnlab verify` cover that case.

# %%
h0 = red.hidden_nodes[0]
w3 = basis.weights_from_values(vq, basis.flip_node(free, h0))
assert basis.values(w3) == vq
changed = [names[p] for p in range(len(w3)) if w3[p] != wq[p]]
print("weights that changed sign:", changed)
assert all(w3[names.index(n)] == -wq[names.index(n)] for n in changed)
y_c, pat_c = run_on(w3, xb)
print(f"sequences whose ReLU pattern changed: {int(np.any(pat_c != pat_a, axis=(0, 2)).sum())}"
      f" of {xb.shape[1]}; largest output change {float(np.max(np.abs(y_c - y_a))):.3f}")
assert np.any(pat_c != pat_a) and np.max(np.abs(y_c - y_a)) > 0.1

# %% [markdown]
# ## Summary
#
# * An unrolled RNN is a DAG whose edges share parameters through the map pi; rnnlab builds it
#   with `UnrolledGraph(spec, T)`, counts its paths exactly and enumerates them lazily or in bulk.
# * Every output is a sum over paths of value x activation x input (Eq. 3 of the G-SGD paper);
#   the counting vector of a path turns its value into prod_i p_i^(c_i).
# * gamma^2 is the same number by enumeration, by node recursion and by the squared network
#   (Eqs. 2-3 and Theorem 3 of the Path-SGD paper).
# * kappa = 1/2 d^2 gamma^2 / dp^2 is kappa^(1) (one squared-network backward pass) plus a
#   recurrent-only kappa^(2); the Path-SGD paper's printed kappa^(2) is short by a factor 2
#   (its Lemma 1, Eq. 10) or 4 with an index shift (its Section 4.4), and `norms.kappa` uses the
#   corrected form.
# * Node-wise rescalings with one positive factor per unit change the weights but not the
#   function, the path values, gamma^2 or the Path-SGD step (Theorems 1 and 2 of the Path-SGD
#   paper); factors that vary in time are not representable with shared weights.
# * The Skeleton Method (Algorithm 1 of the G-SGD paper, with its printed index error fixed:
#   `M^o[j % n_out][j]`) gives every hidden unit one skeleton in- and out-edge. It then picks
#   #weights - #hidden nodes basis paths (Theorem 3 of the G-SGD paper; exact rank in
#   `rnnlab.paths.exact`). Every path of any length is an integer combination of them, so its
#   value is a product of integer powers of basis values (Theorems 1 and 3 of the G-SGD paper,
#   `BasisPaths.coefficients`). The basis values and the signs of the skeleton out-weights fix
#   every weight up to a positive rescaling, and with it the activation pattern and the output
#   (Theorem 2 of the G-SGD paper, `BasisPaths.weights_from_values`). Flipping one of those
#   signs keeps every path value but changes the function.
#
# ## Exercises
#
# 1. Turn on biases (`bias=True`). How many paths start at the bias node for T = 3? Check your
#    count against `graph.count_paths()` and the rebuilt output against the forward pass.
# 2. Rescale unit 1 by alpha = -1 with `rescale.rescale(..., check=False)`. Which outputs change
#    for the ReLU network, and why does the identity network not care?
# 3. Make W_rec diagonal. Which per-time rescalings become feasible, and what does
#    `rescale.feasible_rescaling_dimension` say for the graph (it assumes all edges present)?
# 4. Compute `norms.kappa_ratio` for H = 2 and T = 5, 10, 20 and for H = 20. When is kappa^(2)
#    worth its extra cost (compare the table in Fig. 2 of the Path-SGD paper)?
# 5. Build `BasisPaths(ElmanSpec(2, (3,), 2, bias=True))` and list its basis paths by kind.
#    Check the count against #weights - #hidden nodes, and explain why the skeleton kind has
#    exactly one path per hidden unit and the recurrent kind one per W_rec entry.
# 6. Pick another skeleton, e.g. `Skeleton(spec, {1: M_in}, {1: M_out})` with masks of your
#    choice for a 2-input, 2-output net. The basis paths change, but does their number, or the
#    rank of basis and reduction paths together? Write the same long unrolled path in both bases
#    with `coefficients` and compare the integer exponents.

# %%
finish("02_paths", FIGURES)  # prints "02_paths: all checks passed": every assert above held
