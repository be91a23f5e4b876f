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
# A ReLU RNN unrolled over T steps is a feed-forward network whose weights are *shared* across
# time (`path-sgd-relu-rnn.md`, Section 2). Every output is a sum over the network's
# input-to-output **paths** of (product of the weights on the path) x (is every ReLU on the path
# on?) x (the input the path starts from) (`path-space-rnn-gsgd.md`, Eq. 3). This tutorial builds
# that picture for a 2-unit network you can read completely:
#
# 1. the unrolled graph, drawn, with every edge labelled by the parameter it shares;
# 2. its paths, their values and counting vectors, and the output rebuilt from them;
# 3. the path regularizer gamma^2 three ways, and its curvature kappa used by Path-SGD —
#    including a place where the paper's printed formula is off;
# 4. a node-wise rescaling: the weights change, the function and every path value do not;
# 5. why such a rescaling must use the same factor at every time step.
#
# Run it as a script (`python tutorials/02_paths.py`) or open it with jupytext.
# `RNNLAB_FAST=1` shrinks the work; figures go to `RNNLAB_TUTORIAL_OUT` (default
# `./runs/tutorials`).

# %%
from _setup import FAST, OUT  # first: Agg off-screen, repo root on the path, fast mode

import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import rnnlab
from rnnlab import ElmanRNN, ElmanSpec
from rnnlab.paths import UnrolledGraph, flat_params, norms, param_names_flat, rescale

START = time.perf_counter()
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
def draw_unrolled(graph, ax):
    spec = graph.spec
    pos = {}
    for v, node in enumerate(graph.nodes):
        if node.kind == "bias":
            pos[v] = (0.2, -0.9)
        elif node.kind == "input":
            pos[v] = (node.time, node.unit * 0.5)
        elif node.kind == "hidden":
            base = 1.0 + sum(h + 0.6 for h in spec.hidden[:node.layer - 1])
            pos[v] = (node.time + 0.15 * node.unit, base + node.unit)
        else:
            pos[v] = (node.time, 1.0 + sum(h + 0.6 for h in spec.hidden) + 0.5 * node.unit)
    styles = {"input": dict(color="tab:blue", ls="-"), "rec": dict(color="tab:red", ls="--"),
              "out": dict(color="tab:green", ls="-"), "bias": dict(color="0.6", ls=":")}
    for e in range(graph.n_edges):
        u, v = graph.nodes[graph.edge_src[e]], graph.nodes[graph.edge_dst[e]]
        kind = ("bias" if u.kind == "bias" else "out" if v.kind == "output"
                else "rec" if u.layer == v.layer else "input")
        (x0, y0), (x1, y1) = pos[graph.edge_src[e]], pos[graph.edge_dst[e]]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", lw=1.0, shrinkA=7, shrinkB=7,
                                    connectionstyle="arc3,rad=0.08", **styles[kind]))
    colours = {"input": "tab:blue", "bias": "0.6", "hidden": "white", "output": "tab:green"}
    for v, node in enumerate(graph.nodes):
        ax.scatter(*pos[v], s=380, c=colours[node.kind], edgecolors="k", zorder=3)
        ax.annotate(str(node).replace("[t=", "\n").replace("]", ""), pos[v], ha="center",
                    va="center", fontsize=7, zorder=4)
    for kind, st in styles.items():
        ax.plot([], [], label={"input": "W_in", "rec": "W_rec (shared over time)",
                               "out": "W_out", "bias": "bias node"}[kind], **st)
    ax.set_xlabel("time step t")
    ax.set_xticks(range(1, graph.T + 1))
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"unrolled graph, T = {graph.T}: {graph.count_paths()} paths")


fig, ax = plt.subplots(figsize=(7, 4.5))
draw_unrolled(graph, ax)
fig.tight_layout()
fig.savefig(OUT / "02_unrolled_graph.png", dpi=120)
plt.close(fig)
print("saved", OUT / "02_unrolled_graph.png")

# %% [markdown]
# ### The reduction graph (time removed)
#
# `path-space-rnn-gsgd.md` Section 3.2 collapses time: one node per unit, one edge per
# parameter, and paths that cross at most one recurrent edge. It lives in
# `rnnlab.paths.reduction`; the cell below draws it when that module is present.

# %%
try:
    from rnnlab.paths.reduction import ReductionGraph
except ImportError:  # the reduction module is optional here
    ReductionGraph = None

if ReductionGraph is not None:
    red = ReductionGraph(spec)
    rpos = {}
    for node in red.nodes:
        height = {"input": 0.0, "bias": 0.0, "hidden": float(node.layer),
                  "output": float(spec.layers + 1)}[node.kind]
        rpos[node] = (node.unit + (1.2 if node.kind == "bias" else 0.0), height)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for e in red.edges:
        (x0, y0), (x1, y1) = rpos[e.src], rpos[e.dst]
        rec = e.kind == "rec"
        if rec and e.src == e.dst:   # a self-loop W_rec[j, j]
            ax.add_patch(matplotlib.patches.Circle((x0, y0 + 0.22), 0.16, fill=False,
                                                   ls="--", color="tab:red"))
            continue
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", shrinkA=9, shrinkB=9,
                                    connectionstyle="arc3,rad=0.35" if rec else "arc3",
                                    color="tab:red" if rec else "k", ls="--" if rec else "-"))
    for node, (x0, y0) in rpos.items():
        ax.scatter(x0, y0, s=500, c="white", edgecolors="k", zorder=3)
        ax.annotate(str(node), (x0, y0), ha="center", va="center", fontsize=7, zorder=4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(f"reduction graph: {len(red.paths)} paths (<= 1 recurrent edge)")
    fig.tight_layout()
    fig.savefig(OUT / "02_reduction_graph.png", dpi=120)
    plt.close(fig)
    w = flat_params(spec, params)
    for path in red.paths:
        print(f"  {red.describe(path):40s} value {float(red.value(path, w)):+.4f}")
else:
    print("rnnlab.paths.reduction is not available; skipping the reduction graph")

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
# Eq. 3: y = sum over paths of value x activation x input — exactly the network's output.

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
# gamma^2 = sum over paths of the product of squared weights (Eq. 2). It can also be built node
# by node, gamma_v^2 = sum_{u -> v} gamma_u^2 w^2 (Eq. 3), or — Theorem 3 — read off as the
# summed output of the same network with squared weights on the all-ones input: all values are
# then >= 0, so the ReLUs do nothing and the forward pass *is* the path sum.

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
# (Eq. 8). A path using p_i c times contributes p_i^(2c) R, so kappa_i collects
# c (2c - 1) p_i^(2c-2) R = [c + 2c(c-1)] p_i^(2c-2) R. The first part, kappa^(1), is one
# backward pass of the squared network; the second, kappa^(2), exists only for W_rec (only
# recurrent weights can repeat on a path).
#
# The paper's Lemma 1 writes kappa^(2) with ordered pairs of repeated edges — c(c-1) per path,
# half the true 2c(c-1) — and its matrix form in Section 4.4 is a further factor 2 short and
# pairs each h_t with the gradient one step too early. `rnnlab.paths.norms.kappa` uses the
# corrected form; we check it three ways.

# %%
k_fast = norms.kappa_flat(spec, params, T)
k_enum = norms.kappa_enumeration(spec, params, T)
k_fd = norms.kappa_finite_difference(spec, params, T)
k_paper = flat_params(spec, norms.kappa1_fast(spec, params, T)) + flat_params(
    spec, norms.kappa2_paper_matrix_form(spec, params, T))
print(f"{'parameter':18s} {'enumeration':>12s} {'fast':>12s} {'finite diff':>12s} "
      f"{'paper 4.4':>12s}")
for i, name in enumerate(names):
    print(f"{name:18s} {k_enum['kappa'][i]:12.6f} {k_fast[i]:12.6f} {k_fd[i]:12.6f} "
          f"{k_paper[i]:12.6f}")
assert np.allclose(k_fast, k_enum["kappa"], rtol=1e-13)
assert np.allclose(k_fd, k_fast, rtol=1e-6, atol=1e-9)
print("the paper's Eq. 10 is half the true second term:",
      np.allclose(2 * k_enum["kappa2_eq10"], k_enum["kappa2"]))

# %% [markdown]
# ## 4. Rescale a unit: the weights move, the function does not
#
# Multiply everything flowing into hidden unit 0 by alpha = 3 and everything flowing out of it by
# 1/3 (Theorem 1). The recurrent self-weight W_rec[0,0] is both, so it stays; W_rec[0,1] grows,
# W_rec[1,0] shrinks.

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
# Path-SGD's step is invariant too (Theorem 2): kappa of the rescaled network is kappa / s^2
# where s is each parameter's scale factor, and the gradient is divided by s, so the step is
# multiplied by s — the same move, seen in rescaled coordinates. Plain SGD has no such property.

# %%
s = flat_params(spec, rescale.rescaling_factors(spec, alpha))
print("kappa(rescaled) * s^2 == kappa:",
      np.allclose(norms.kappa_flat(spec, scaled, T) * s ** 2, k_fast, rtol=1e-12))

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
fig, ax = plt.subplots(figsize=(5, 3.5))
for H in (1, 2, 4, 8):
    counts = [UnrolledGraph(ElmanSpec(1, (H,), 1, bias=True, outputs="every"), t).count_paths()
              for t in Ts]
    ax.semilogy(list(Ts), counts, marker="o", ms=3, label=f"H = {H}")
ax.set_xlabel("T")
ax.set_ylabel("number of paths (exact DP)")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "02_path_counts.png", dpi=120)
plt.close(fig)
big = UnrolledGraph(ElmanSpec(1, (8,), 1, outputs="every"), 20).count_paths()
print(f"H = 8, T = 20: {big:,} paths (a Python int; no overflow)")

# %% [markdown]
# ## Summary
#
# * An unrolled RNN is a DAG whose edges share parameters through the map pi; rnnlab builds it
#   with `UnrolledGraph(spec, T)`, counts its paths exactly and enumerates them lazily or in bulk.
# * Every output is a sum over paths of value x activation x input (Eq. 3); the counting vector of
#   a path turns its value into prod_i p_i^(c_i).
# * gamma^2 is the same number by enumeration, by node recursion and by the squared network.
# * kappa = 1/2 d^2 gamma^2 / dp^2 is kappa^(1) (one squared-network backward pass) plus a
#   recurrent-only kappa^(2); the paper's printed kappa^(2) is short by a factor 2 (Lemma 1) or 4
#   with an index shift (Section 4.4), and `norms.kappa` uses the corrected form.
# * Node-wise rescalings with one positive factor per unit change the weights but not the
#   function, the path values, gamma^2 or the Path-SGD step; factors that vary in time are not
#   representable with shared weights.
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
#    worth its extra cost (compare the paper's Fig. 2)?

# %%
print(f"done in {time.perf_counter() - START:.1f} s")
