"""The tutorials' figures, one function each (imported by ``_setup`` as ``draw``).

Each function takes the numbers or graph objects a chapter computed with the library and returns
a matplotlib figure (or draws into a given axes); it computes nothing the chapter should see.
Chapters save the result with ``_setup.save_figure``. Imported after ``_setup`` picks the
backend, since it imports ``matplotlib.pyplot``.
"""
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np

GAIN_COLOURS = ("tab:blue", "tab:green", "tab:red", "tab:purple", "tab:orange")


def gradient_ratios(ratios, inits, activations, gains, title):
    """Tutorial 01, section 4: ||dL/dh_t|| / ||dL/dh_T|| against t, one panel per
    (recurrent matrix, activation), one line per gain.

    ``ratios[init, activation, gain]`` is a (T + 1,) array with ratios[..][T] == 1.
    """
    inits, activations, gains = list(inits), list(activations), list(gains)
    fig, axes = plt.subplots(len(inits), len(activations), figsize=(10, 7), sharex=True,
                             sharey=True, squeeze=False)
    for row, init in enumerate(inits):
        for col, activation in enumerate(activations):
            ax = axes[row, col]
            for gain, colour in zip(gains, GAIN_COLOURS):
                curve = ratios[init, activation, gain]
                ax.semilogy(np.arange(len(curve)), curve, color=colour, label=f"gain {gain}")
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            ax.set_title(f"{activation}, $W_{{rec}}$ = gain × {init}")
            ax.grid(True, which="major", alpha=0.3)
            if row == len(inits) - 1:
                ax.set_xlabel("time step t (loss at t = T)")
            if col == 0:
                ax.set_ylabel(r"$\|\partial L/\partial h_t\| \,/\, \|\partial L/\partial h_T\|$")
    axes[0, 0].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def unrolled_graph(graph, ax=None):
    """Tutorial 02, section 1: the time-unrolled DAG of an ``rnnlab.paths.UnrolledGraph``,
    time left to right, every edge styled by the parameter matrix it shares."""
    fig, ax, own = _figure(ax, (7, 4.5))
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
    if own:
        fig.tight_layout()
    return fig


def reduction_graph(red, ax=None, highlight=None, title=None):
    """Tutorial 02: a ``rnnlab.paths.reduction.ReductionGraph`` (Definition 3 of the G-SGD
    paper), one node per unit and one edge per parameter; ``highlight`` maps edges (flat
    parameter indices) to colours and greys out the rest."""
    fig, ax, own = _figure(ax, (4.5, 4))
    highlight = highlight or {}
    rpos = {}
    for node in red.nodes:
        height = {"input": 0.0, "bias": 0.0, "hidden": float(node.layer),
                  "output": float(red.spec.layers + 1)}[node.kind]
        width = sum(1 for n in red.nodes if n.kind == node.kind and n.layer == node.layer)
        rpos[node] = ((node.unit - (width - 1) / 2) if node.kind != "bias"   # centred rows
                      else (red.spec.n_in - 1) / 2 + 0.7, height)            # bias: right of x
    for e in red.edges:
        (x0, y0), (x1, y1) = rpos[e.src], rpos[e.dst]
        rec = e.kind == "rec"
        colour = highlight.get(e.param, "tab:red" if rec else "k")
        lw, alpha = (2.8, 1.0) if e.param in highlight else (1.0, 0.35 if highlight else 1.0)
        if rec and e.src == e.dst:   # a self-loop W_rec[j, j], drawn on the outer side
            side = -1.0 if x0 < 0 or (x0 == 0 and e.src.unit == 0) else 1.0
            ax.add_patch(matplotlib.patches.Circle((x0 + 0.28 * side, y0), 0.13, fill=False,
                                                   ls="--", color=colour, lw=lw, alpha=alpha))
            continue
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", shrinkA=11, shrinkB=11, lw=lw, alpha=alpha,
                                    connectionstyle="arc3,rad=0.35" if rec else "arc3",
                                    color=colour, ls="--" if rec else "-"))
    for node, (x0, y0) in rpos.items():
        ax.scatter(x0, y0, s=520, c="white", edgecolors="k", zorder=3)
        ax.annotate(str(node), (x0, y0), ha="center", va="center", fontsize=7, zorder=4)
    xs = [p[0] for p in rpos.values()]
    ax.set_xlim(min(xs) - 0.55, max(xs) + 0.55)
    ax.set_ylim(-0.35, red.spec.layers + 1.35)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title or f"reduction graph: {len(red.paths)} paths (<= 1 recurrent edge)\n"
                          "dashed: W_rec (circles: self-loops W_rec[j, j])", fontsize=8)
    if own:
        fig.tight_layout()
    return fig


def skeleton_colours(basis):
    """Edge colours for ``reduction_graph``: skeleton in-edges blue, skeleton out-edges orange."""
    colours = {p: "tab:blue" for p in basis.tree}
    colours.update({p: "tab:orange" for p in basis.free})
    return colours


def skeleton_and_basis(red, basis, basis_values, M_in, M_out):
    """Tutorial 02, section 7: the skeleton on the reduction graph, then each basis path of a
    ``rnnlab.paths.BasisPaths`` highlighted with its value, then the Algorithm 1 masks of the
    G-SGD paper (its fixed reading). Room for 6 basis paths (the 2-unit network's)."""
    fig, axes = plt.subplots(2, 4, figsize=(11, 6.2))
    reduction_graph(red, axes[0, 0], skeleton_colours(basis),
                    title="skeleton: in-edges (blue), out-edges (orange)")
    for r, ax in enumerate(axes.flat[1:1 + len(basis)]):
        reduction_graph(red, ax, {p: "tab:purple" for p in basis.paths[r]},
                        title=f"Q{r} ({basis.kinds[r]}, edge {red.edges[basis.edges[r]]})\n"
                              f"value {basis_values[r]:+.3f}")
    ax = axes.flat[-1]
    ax.set_axis_off()
    ax.text(0.0, 0.5, f"G-SGD paper, Algorithm 1\n(fixed) masks\n\nM^i on W_in:\n{M_in}"
            f"\n\nM^o on W_out:\n{M_out}\n\n{len(basis)} basis paths =\n{red.n_params} "
            f"weights - {red.n_hidden} hidden nodes",
            family="monospace", fontsize=9, va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def path_counts(Ts, counts_by_width):
    """Tutorial 02, section 6: number of paths against T on a log scale, one line per width H;
    ``counts_by_width[H]`` lists the exact counts for ``Ts``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for H, counts in counts_by_width.items():
        ax.semilogy(list(Ts), counts, marker="o", ms=3, label=f"H = {H}")
    ax.set_xlabel("T")
    ax.set_ylabel("number of paths (exact DP)")
    ax.legend()
    fig.tight_layout()
    return fig


def _figure(ax, figsize):
    """``(figure, axes, new)``: a new figure when ``ax`` is None (laid out by the caller's
    function), else ``ax`` and its figure (laid out by whoever made it)."""
    if ax is None:
        return (*plt.subplots(figsize=figsize), True)
    return ax.figure, ax, False


def curvature_spectrum(eigenvalues, title):
    """Tutorial 03, section 2: the sorted eigenvalues of a Gauss-Newton matrix (log scale),
    with the round-off floor below which they count as zero."""
    eig = np.sort(np.asarray(eigenvalues))[::-1]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    floor = 1e-12 * eig[0]
    ax.semilogy(np.arange(1, eig.size + 1), np.maximum(eig, floor * 1e-2), "o", ms=4)
    ax.axhline(floor, color="0.5", ls=":", lw=1, label="1e-12 x largest (round-off)")
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue of G")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def invariance_gaps(gaps, title):
    """Tutorial 04, section 2: the output gap between two parameterisations of one network
    after each step, one line per update rule (log scale; round-off is ~1e-15)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for rule, values in gaps.items():
        steps = np.arange(1, len(values) + 1)
        ax.semilogy(steps, np.maximum(values, 1e-17), "o-", ms=3, label=rule)
    ax.axhline(1e-12, color="0.5", ls=":", lw=1, label="1e-12, the tolerance (round-off ~1e-15)")
    ax.set_xlabel("update")
    ax.set_ylabel(r"$\max |f_{A(p)} - f_{A(T(p))}|$ on a fresh input")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def sweep_curves(curves, baseline, threshold, title, metric="mse"):
    """Tutorial 05, section 5: validation learning curves of a sweep's selected groups, one line
    per optimizer with a band. ``curves[label] = (steps, median, q25, q75)``, the median and the
    25th/75th percentiles across seeds at each evaluation step (log scale)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (steps, median, low, high) in curves.items():
        line, = ax.plot(steps, median, lw=1.6, label=label)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls="--", lw=1, label=f"trivial baseline {baseline:.3g}")
    if threshold is not None:
        ax.axhline(threshold, color="tab:green", ls=":", lw=1.2,
                   label=f"solved: < {threshold:g}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}\n(median across seeds, 25-75 % band)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def sweep_heatmap(values, rows, cols, selected, title, metric="mse"):
    """Tutorial 05, section 5: a sweep's median validation metric over (optimizer x learning
    rate), log colour scale; ``values[i, j]`` is +inf where the median seed diverged or failed
    (drawn grey, "inf"), ``selected[i]`` the column chosen for row i (outlined)."""
    from matplotlib.colors import LogNorm

    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 3.2, 0.55 * len(rows) + 1.9))
    ax.set_facecolor("0.85")
    shown = np.ma.masked_invalid(np.where(finite, values, np.nan))
    norm = LogNorm(vmin=values[finite].min(), vmax=values[finite].max()) \
        if finite.any() else None
    image = ax.imshow(shown, cmap="viridis_r", norm=norm, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            text = f"{values[i, j]:.3g}" if finite[i, j] else "inf"
            dark = finite[i, j] and norm is not None and norm(values[i, j]) > 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
        ax.add_patch(matplotlib.patches.Rectangle((selected[i] - 0.46, i - 0.46), 0.92, 0.92,
                                                  fill=False, ec="tab:red", lw=2.2))
    ax.set_xticks(range(len(cols)), [f"lr={c:g}" for c in cols])
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=f"median validation {metric}")
    fig.tight_layout()
    return fig


def cg_model_values(values, minimum, stop, kept, title):
    """Tutorial 06, section 2: the quadratic model value M(x_i) per CG iteration, as the gap
    M(x_i) - M* to its minimum (log scale) and as M(x_i) itself; ``stop`` is the iteration where
    Martens' rule stops, ``kept`` the iterations whose iterates CG backtracking would keep."""
    values = np.asarray(values, dtype=float)
    its = np.arange(1, values.size + 1)
    kept = [i for i in kept if 1 <= i <= values.size]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    gap = np.maximum(values - minimum, 1e-16 * abs(minimum))
    for ax, curve, label in ((axes[0], values, "M(x_i)"),
                             (axes[1], gap, "M(x_i) - M*")):
        ax.plot(its, curve, "-", color="tab:blue", lw=1.4, label=label)
        ax.plot(kept, curve[np.asarray(kept) - 1], "o", color="tab:blue", ms=4,
                label="stored for backtracking (iterations ceil(1.3^j))")
        ax.axvline(stop, color="tab:red", ls="--", lw=1.2,
                   label=f"Martens' rule, tol 5e-4: stops at i = {stop}")
        ax.set_xlabel("CG iteration i (products with A)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(minimum, color="0.4", ls=":", lw=1, label=f"M* = {minimum:.4g} (solve)")
    axes[0].set_ylabel("quadratic model value")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("distance to the minimum of the model")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_by_update(runs, baseline, threshold, title, metric="error", floor=1e-3):
    """Tutorial 06, section 3: training loss and validation ``metric`` against updates, one line
    per run (``runs``: label -> history records of ``rnnlab.train.run``), with the trivial
    baseline and the solved threshold on the metric panel (log scales; a metric of 0 is drawn
    at ``floor`` with an open marker)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, records in runs.items():
        train = [r for r in records if r["kind"] == "train"]
        evals = [r for r in records if r["kind"] == "eval" and metric in r and r["step"] > 0]
        line, = axes[0].plot([r["step"] for r in train], [r["loss"] for r in train],
                             label=label)
        steps = np.array([r["step"] for r in evals])
        values = np.array([r[metric] for r in evals])
        axes[1].plot(steps, np.maximum(values, floor), label=label, color=line.get_color(),
                     marker="o", markersize=2.5)
        zero = values <= 0
        if zero.any():
            axes[1].plot(steps[zero], np.full(zero.sum(), floor), "o", mfc="white", ms=6,
                         color=line.get_color(), label=f"{label}: {metric} 0 (drawn at {floor:g})")
    axes[1].axhline(baseline, color="0.4", ls="--", lw=1, label=f"trivial baseline {baseline:.3g}")
    axes[1].axhline(threshold, color="tab:green", ls=":", lw=1.2, label=f"solved: < {threshold:g}")
    for ax, ylabel in zip(axes, ("training loss (mean since last log)", f"validation {metric}")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("updates (log scale)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def saturation(biases, reach, gate_grad, others, title):
    """Tutorial 07, section 2: against the LSTM's forget-gate bias, how far the gradient
    travels (||dL/dh_1|| / ||dL/dh_T||, ``reach[b]``) and how much the gate learns
    (||dL/db_f||, ``gate_grad[b]``); ``others``: label -> the first ratio of other cells, drawn
    as horizontal references."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].semilogy(biases, [reach[b] for b in biases], "o-", color="tab:blue", label="LSTM")
    for (label, value), colour in zip(others.items(), GAIN_COLOURS[1:] + ("tab:brown",)):
        axes[0].axhline(value, color=colour, ls="--", lw=1, label=f"{label} (default init)")
    axes[0].set_ylabel("||dL/dh_1|| / ||dL/dh_T||")
    axes[1].semilogy(biases, [gate_grad[b] for b in biases], "o-", color="tab:red")
    axes[1].set_ylabel("||dL/db_f||: the forget gate's own gradient")
    for ax in axes:
        ax.set_xlabel("forget-gate bias b_f")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gradient_flow_panels(flows, T):
    """Tutorial 07, section 3: one heatmap per model (``flows``: label -> its flow records),
    training update (rows) against time step (columns), colour log10 ||dL/dh_t|| of the top
    layer, on one colour scale so the models compare."""
    grids = {k: np.log10(np.maximum([r["grad_h"][-1] for r in v], 1e-30))
             for k, v in flows.items()}
    low = min(g.min() for g in grids.values())
    high = max(g.max() for g in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 3.6), squeeze=False)
    for ax, (label, grid) in zip(axes[0], grids.items()):
        steps = [r["step"] for r in flows[label]]
        image = ax.imshow(grid, aspect="auto", origin="lower", vmin=low, vmax=high,
                          extent=(0.5, grid.shape[1] + 0.5, -0.5, len(steps) - 0.5),
                          cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(steps))[::max(1, len(steps) // 5)],
                      [str(s) for s in steps][::max(1, len(steps) // 5)])
        ax.set_title(label)
        ax.set_xlabel(f"time step t (T + 20 = {T + 20})")
        ax.set_ylabel("update")
    fig.colorbar(image, ax=axes[0].tolist(), label="log10 ||dL/dh_t||")
    return fig
