"""The paper claims about unrolled paths, path norms and rescalings, as registered checks.

Each function here tests one claim on the networks of a :class:`~rnnlab.paths.checks.
CheckContext` and returns a :class:`~rnnlab.paths.checks.Tally`; ``rnnlab verify`` runs them
together with the reduction-graph claims of :mod:`rnnlab.paths.reduction_checks`. Sources are
cited as ``path-sgd`` (``path-sgd-relu-rnn.md``) and ``gsgd`` (``path-space-rnn-gsgd.md``). The
computations that planted bugs replace come from :mod:`rnnlab.paths.plants`. kappa results are
dicts keyed by parameter name; the checks compare them as flat vectors
(:func:`rnnlab.params.host_vector`).
"""
from __future__ import annotations

import numpy as np

from ..params import host_vector
from . import norms, plants, rescale
from .checks import EPS, Tally, register_check
from .unrolled import UnrolledGraph


def _forward(spec, params, x):
    from ..models import ElmanRNN
    y, _ = ElmanRNN(spec, params).forward(params, x)
    return np.asarray(y)


def _abs_scale(spec, params, x) -> float:
    """max over outputs of the network with |weights| on |x| and no ReLU: a bound on the
    magnitude of every intermediate sum, the natural scale of forward round-off."""
    from dataclasses import replace
    ab = {k: np.abs(v) for k, v in params.items()}
    return float(np.max(np.abs(_forward(replace(spec, activation="identity"), ab, np.abs(x)))))


def _rel(a, b) -> float:
    """Largest entrywise |a - b| / max(|a|, |b|) (0 where both are 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    den = np.maximum(np.abs(a), np.abs(b))
    diff = np.abs(a - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, diff / np.where(den > 0, den, 1.0), 0.0)
    return float(r.max()) if r.size else 0.0


def _depth(spec, T) -> int:
    """Roundings along one forward (or backward) pass: T + d layers of dot products of width
    <= max(H) + n_in + 1, plus one per weight."""
    return (T + spec.layers) * (max(spec.hidden) + spec.n_in + 2)


def _sum_tol(n_terms: int, depth: int) -> float:
    # A float64 sum of n nonnegative (or absolutely summed) terms, each a product of <= depth
    # factors, has relative error <= (n + depth) eps (first-order bound, naive summation).
    return (n_terms + depth) * EPS


# ----------------------------------------------------------------------------- the checks
@register_check("path count: exact DP = lazy enumeration = bulk enumeration (same paths)",
                "path-sgd Sec. 2 (unrolled DAG)")
def _check_count(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=200_000, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        lazy = list(g.iter_paths())
        bulk = g.bulk()
        same = {tuple(int(e) for e in row if e >= 0) for row in bulk.edges} == set(lazy)
        tally.exact(g.count_paths() == len(lazy) == len(bulk) and same)
    return tally


@register_check("edge -> shared parameter map pi: path value = prod_i p_i^c_i; a path's first "
                "edge leaves an input/bias node and its last enters an output",
                "gsgd Sec. 3.2 (counting vectors); path-sgd Sec. 2 (pi)")
def _check_counting(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        paths = g.bulk()
        flat = host_vector(case.params, case.spec)
        direct = paths.values(flat)
        from_counts = np.prod(flat[None, :] ** paths.counts, axis=1)
        ends_ok = (np.isin(paths.start, g.input_nodes).all()
                   and g.is_output[paths.end].all()
                   and (paths.counts.sum(axis=1) == paths.lengths).all())
        tally.exact(bool(ends_ok))
        # both are products of <= T + d factors in different orders: relative error <= 2 L eps
        tally.add(_rel(direct, from_counts), 4 * g.max_length * EPS, count=False)
    return tally


@register_check("output = sum over paths of value x activation x input (relu and identity; "
                "bias node as an input of value 1)",
                "gsgd Eq. 3; path-sgd footnote 2")
def _check_reconstruction(ctx):
    tally = Tally()
    for activation in ("relu", "identity"):
        for case in ctx.cases(activation, enumerate_up_to=ctx.max_paths, tally=tally):
            g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
            paths = g.bulk()
            x = case.rng.standard_normal((case.T, 3, case.spec.n_in))
            values = paths.values(case.params)
            act = plants.activation_under_test(ctx.plant, paths, x, case.params)
            terms = values[:, None] * act * paths.inputs(x)
            sums = np.zeros((g.n_nodes, x.shape[1]))
            np.add.at(sums, paths.end, terms)
            rebuilt = g.output_array(sums)
            absum = np.zeros_like(sums)
            np.add.at(absum, paths.end, np.abs(terms))
            scale = max(float(absum.max()), _abs_scale(case.spec, case.params, x), 1e-300)
            y = _forward(case.spec, case.params, x)
            # sum of <= P products of <= L factors, plus the forward's (T + d) layers of dot
            # products of width <= H + n_in + 1: error <= (P + L + (T+d)(H+n_in+1)) eps * scale
            depth = g.max_length * (max(case.spec.hidden) + case.spec.n_in + 1)
            tally.add(float(np.max(np.abs(rebuilt - y))) / scale, _sum_tol(len(paths), depth))
    return tally


@register_check("gamma^2: explicit path sum (Eq. 2) = node recursion on the DAG (Eq. 3)",
                "path-sgd Eqs. 2-3")
def _check_gamma_recursion(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        a = norms.gamma2_enumeration(case.spec, case.params, case.T,
                                     max_paths=ctx.max_paths)
        b = norms.gamma2_recursion(case.spec, case.params, case.T)
        # sums of nonnegative terms: relative error <= (P + L) eps
        tally.add(_rel(a, b), 2 * _sum_tol(g.count_paths(), g.max_length))
    return tally


@register_check("gamma^2 = g(1): summed outputs of the squared-weight network on all-ones "
                "input (h_0 = 0)", "path-sgd Theorem 3")
def _check_gamma_squared(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        a = norms.gamma2_enumeration(case.spec, case.params, case.T,
                                     max_paths=ctx.max_paths)
        b = norms.gamma2_squared_network(case.spec, case.params, case.T)
        tally.add(_rel(a, b), 2 * _sum_tol(g.count_paths(), _depth(case.spec, case.T)))
    return tally


def _fast_kappa(ctx, spec, params, T, second_term=True):
    """The kappa under test (with the planted bugs that target it) as an (m,) vector."""
    return host_vector(plants.kappa_under_test(ctx.plant, spec, params, T, second_term), spec)


def _enumerated(ctx, case):
    """kappa and its parts by enumeration, each as an (m,) vector (a dict of field -> vector)."""
    parts = norms.kappa_enumeration(case.spec, case.params, case.T, max_paths=ctx.max_paths)
    return {f: host_vector(getattr(parts, f), case.spec) for f in
            ("kappa", "kappa1", "kappa2", "kappa2_eq10", "kappa2_eq11")}


@register_check("kappa^(1) = gradient of g(1) w.r.t. squared params (squared-network pass) = "
                "Lemma 1 Eq. 9 by enumeration", "path-sgd Theorem 3, Lemma 1 Eq. 9")
def _check_kappa1(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        enum = _enumerated(ctx, case)["kappa1"]
        fast = _fast_kappa(ctx, case.spec, case.params, case.T, second_term=False)
        # nonnegative sums on both sides: entrywise relative error <= (P + m + L) eps each
        tally.add(_rel(enum, fast), 2 * _sum_tol(g.count_paths() + g.n_params,
                                                 2 * _depth(case.spec, case.T)))
    return tally


@register_check("kappa (kappa^(1) + corrected matrix-form kappa^(2)) = 1/2 d^2 gamma^2/dp_i^2 "
                "exactly, from counting vectors", "path-sgd Eq. 8 (definition)")
def _check_kappa_enum(ctx):
    tally = Tally()
    for T in sorted({ctx.T, max(ctx.T, 4)}):
        for case in ctx.cases(T=T, enumerate_up_to=ctx.max_paths, tally=tally):
            g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
            enum = _enumerated(ctx, case)["kappa"]
            fast = _fast_kappa(ctx, case.spec, case.params, case.T)
            tally.add(_rel(enum, fast), 2 * _sum_tol(g.count_paths() + g.n_params,
                                                     2 * _depth(case.spec, case.T)))
    return tally


@register_check("kappa (fast) = central finite differences of gamma^2 (Richardson, h = 1e-3)",
                "path-sgd Eq. 8")
def _check_kappa_fd(ctx):
    # Second differences lose 4 N eps gamma^2 / (2 h^2) to round-off (N <= 1e3 flops per gamma^2,
    # h = 1e-3: <= 5e-7 gamma^2) and O(h^4) to truncation (~1e-9 here); errors are measured
    # relative to gamma^2 + max kappa.
    tally = Tally(tolerance=1e-6)
    for case in ctx.cases():
        fd = host_vector(norms.kappa_finite_difference(case.spec, case.params, case.T),
                         case.spec)
        fast = _fast_kappa(ctx, case.spec, case.params, case.T)
        scale = norms.gamma2_recursion(case.spec, case.params, case.T) + float(np.max(fast))
        tally.add(float(np.max(np.abs(fd - fast))) / max(scale, 1e-300))
    return tally


@register_check("kappa^(2) = 0 for W_in, W_out and biases (no path uses them twice)",
                "path-sgd Sec. 4.4")
def _check_kappa2_zero(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        counts = g.bulk().counts
        rec = np.zeros(g.n_params, dtype=bool)
        for i in range(1, case.spec.layers + 1):
            rec[[g.edge_param[e] for e in range(g.n_edges)
                 if g.nodes[g.edge_src[e]].kind == "hidden"
                 and g.nodes[g.edge_src[e]].layer == i
                 and g.nodes[g.edge_dst[e]].layer == i]] = True
        k2 = host_vector(norms.kappa2_fast(case.spec, case.params, case.T), case.spec)
        tally.exact(bool((counts[:, ~rec] <= 1).all() and (k2[~rec] == 0).all()))
    return tally


@register_check("discrepancy: Lemma 1 Eq. 10 as printed (ordered pairs e1 != e2) is exactly HALF "
                "the true kappa^(2) = 1/2 d^2 gamma^2/dp^2 - kappa^(1)", "path-sgd Lemma 1 Eq. 10")
def _check_eq10(ctx):
    tally = Tally()
    for case in ctx.cases(T=max(ctx.T, 3), enumerate_up_to=20_000, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        enum = _enumerated(ctx, case)
        true2 = enum["kappa"] - enum["kappa1"]
        lit = host_vector(norms.kappa2_lemma1_literal(case.spec, case.params, case.T), case.spec)
        # nonnegative sums; the difference kappa - kappa1 cancels at most the kappa1 part, so
        # measure against kappa (not kappa2) with the nonnegative-sum bound
        err = float(np.max(np.abs(2 * lit - true2) / np.maximum(enum["kappa"], 1e-300)))
        tally.add(err, 4 * _sum_tol(g.count_paths() + g.n_params, 2 * g.max_length))
    return tally


@register_check("discrepancy: Theorem 3 (path-sgd) Eq. 11 as printed (pairs with dh_u'/dh_v) is "
                "exactly a QUARTER of the true kappa^(2)", "path-sgd Theorem 3 Eq. 11")
def _check_eq11(ctx):
    tally = Tally()
    for case in ctx.cases(T=max(ctx.T, 3), enumerate_up_to=20_000, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        enum = _enumerated(ctx, case)
        lit = host_vector(norms.kappa2_theorem3_literal(case.spec, case.params, case.T),
                          case.spec)
        # (I - A)^{-1} by LU on a nilpotent, nonnegative A: relative error ~ n eps per entry
        err = float(np.max(np.abs(4 * lit - enum["kappa2"]) / np.maximum(enum["kappa"], 1e-300)))
        tally.add(err, 4 * _sum_tol(g.count_paths() + g.n_nodes ** 2, 2 * g.max_length))
    return tally


@register_check("discrepancy: Sec. 4.4 printed kappa^(2)(W_rec) matrix form = 1/4 true kappa^(2) "
                "only with h_t2 -> h_(t2-1); as printed it is proportional for no constant",
                "path-sgd Sec. 4.4")
def _check_matrix_form(ctx):
    tally = Tally()
    shown = False
    for case in ctx.cases(T=max(ctx.T, 3), enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        enum = _enumerated(ctx, case)
        shifted = host_vector(norms.kappa2_paper_matrix_form(
            case.spec, case.params, case.T, shift_h=True), case.spec)
        printed = host_vector(norms.kappa2_paper_matrix_form(
            case.spec, case.params, case.T), case.spec)
        err = float(np.max(np.abs(4 * shifted - enum["kappa2"])
                           / np.maximum(enum["kappa"], 1e-300)))
        tally.add(err, 4 * _sum_tol(g.count_paths() + g.n_params, 2 * g.max_length))
        nz = enum["kappa2"] > 0
        if min(case.spec.hidden) >= 2 and nz.any():
            ratio = printed[nz] / enum["kappa2"][nz]
            spread = (ratio.max() - ratio.min()) / max(abs(ratio).max(), 1e-300)
            # a proportional formula would give a ratio constant to ~1e-13
            tally.require(spread > 1e-6, count=False)
            shown = True
    if not shown:
        tally.note = "no instance with H >= 2 for the non-proportionality part"
    return tally


def _rescaled(ctx, spec, params, alpha):
    return plants.rescaled_under_test(ctx.plant, spec, params, alpha)


@register_check("feasible node-wise rescaling (alpha in [0.25, 4], b^i scaled by alpha^i) "
                "leaves the function unchanged (relu and identity)", "path-sgd Theorem 1")
def _check_rescale_function(ctx):
    tally = Tally()
    for activation in ("relu", "identity"):
        for case in ctx.cases(activation):
            rng = case.rng
            alpha = rescale.random_alpha(case.spec, rng)
            q = _rescaled(ctx, case.spec, case.params, alpha)
            x = rng.standard_normal((case.T, 3, case.spec.n_in))
            y1, y2 = _forward(case.spec, case.params, x), _forward(case.spec, q, x)
            scale = max(_abs_scale(case.spec, case.params, x), _abs_scale(case.spec, q, x),
                        1e-300)
            # (T + d) layers of dot products of width <= H + n_in + 1 on both sides, and one
            # rounding per rescaled weight: error <= 2 (T+d)(H+n_in+2) eps * scale
            depth = (case.T + case.spec.layers) * (max(case.spec.hidden) + case.spec.n_in + 2)
            tally.add(float(np.max(np.abs(y1 - y2))) / scale, 4 * depth * EPS)
    return tally


@register_check("rescaling leaves every path value unchanged (and hence gamma^2)",
                "path-sgd Theorem 1; gsgd Sec. 3.1 (PSI)")
def _check_rescale_paths(ctx):
    tally = Tally()
    for case in ctx.cases(enumerate_up_to=ctx.max_paths, tally=tally):
        g = UnrolledGraph(case.spec, case.T, max_paths=ctx.max_paths)
        paths = g.bulk()
        alpha = rescale.random_alpha(case.spec, case.rng)
        q = _rescaled(ctx, case.spec, case.params, alpha)
        # each value is a product of <= L factors, each rescaled with 2 roundings: <= 3 L eps
        tally.add(_rel(paths.values(case.params), paths.values(q)), 4 * g.max_length * EPS)
    return tally


@register_check("Path-SGD step p - eta dL/dp / kappa commutes with rescaling (full kappa and "
                "kappa^(1)); kappa(T_a p) = kappa(p) / s^2", "path-sgd Theorem 2")
def _check_path_sgd_invariance(ctx):
    # every quantity is a product/quotient of O(T + d) rounded factors or a nonnegative sum:
    # relative error <= 1e-12 for the sizes verify runs (<= 1e4 terms)
    tally = Tally(tolerance=1e-12)
    from ..models import ElmanRNN
    for case in ctx.cases():
        spec, p = case.spec, case.params
        rng = case.rng
        alpha = rescale.random_alpha(spec, rng)
        s = host_vector(rescale.rescaling_factors(spec, alpha), spec)
        q = _rescaled(ctx, spec, p, alpha)
        x = rng.standard_normal((case.T, 3, spec.n_in))
        target = rng.standard_normal(_forward(spec, p, x).shape)

        def grad(params):
            model = ElmanRNN(spec, params)
            y, cache = model.forward(params, x)
            g, _ = model.backward(params, y - target, cache)
            return host_vector(g, spec)

        for second in (True, False):
            kp = _fast_kappa(ctx, spec, p, case.T, second_term=second)
            kq = _fast_kappa(ctx, spec, q, case.T, second_term=second)
            tally.add(_rel(kq * s ** 2, kp), count=second)
            eta = 0.01
            fp, fq = host_vector(p, spec), host_vector(q, spec)
            # parameters on no path (W_rec when T = 1) have kappa = 0 and gradient 0: no step
            p1 = fp - eta * np.divide(grad(p), kp, out=np.zeros_like(kp), where=kp > 0)
            q1 = fq - eta * np.divide(grad(q), kq, out=np.zeros_like(kq), where=kq > 0)
            tally.add(float(np.max(np.abs(q1 - s * p1) / (np.abs(s * fp) + np.abs(s * p1)
                                                            + 1e-300))), count=False)
    return tally


@register_check("plain SGD is NOT invariant to rescaling (the outputs after one step differ)",
                "path-sgd Sec. 3-4 (motivation)")
def _check_sgd_not_invariant(ctx):
    tally = Tally()
    from ..models import ElmanRNN
    best = 0.0
    for case in ctx.cases():
        spec, p = case.spec, case.params
        rng = case.rng
        alpha = rescale.random_alpha(spec, rng)
        q = rescale.rescale(spec, p, alpha)
        x = rng.standard_normal((case.T, 3, spec.n_in))
        target = rng.standard_normal(_forward(spec, p, x).shape)
        outs = []
        with np.errstate(over="ignore", invalid="ignore"):  # SGD may blow up on long unrolls
            for params in (p, q):
                model = ElmanRNN(spec, params)
                y, cache = model.forward(params, x)
                g, _ = model.backward(params, y - target, cache)
                new = {k: params[k] - 0.1 * g[k] for k in params}
                outs.append(_forward(spec, new, x) if all(
                    np.isfinite(v).all() for v in new.values()) else np.full(y.shape, np.inf))
            diff = float(np.max(np.abs(outs[0] - outs[1])))
        diff = np.inf if not np.isfinite(diff) else diff / max(_abs_scale(spec, p, x), 1e-300)
        best = max(best, diff)
        tally.instances += 1
    tally.require(best > 1e-6, best, count=False)
    tally.note = "error column: largest relative output difference (must be large)"
    return tally


@register_check("time-varying unit factors are not feasible with shared weights (least-squares "
                "residual > 0); time-constant ones are (spread exactly 0)",
                "path-sgd Theorem 1 (converse), Def. 2")
def _check_per_time(ctx):
    tally = Tally()
    for case in ctx.cases(T=max(ctx.T, 2)):
        spec, rng = case.spec, case.rng
        alpha = rescale.random_alpha(spec, rng)
        const = [np.tile(a, (case.T, 1)) for a in alpha]
        varying = [c * np.exp(rng.uniform(-0.5, 0.5, c.shape)) for c in const]
        r_const = rescale.per_time_rescaling(spec, case.params, case.T, const)
        r_vary = rescale.per_time_rescaling(spec, case.params, case.T, varying)
        scale = float(np.abs(host_vector(case.params, spec)).max())
        tally.exact(bool(np.all(r_const["spread"] == 0)) and r_vary["residual"] > 1e-8 * scale)
    return tally


@register_check("feasible rescalings of the unrolled graph form a family of dimension "
                "sum(H_i) (one factor per unit, constant in time)",
                "path-sgd Theorem 1 ('furthermore')")
def _check_dimension(ctx):
    tally = Tally()
    for spec in ctx.specs():
        for T in sorted({1, 2, ctx.T}):
            tally.exact(rescale.feasible_rescaling_dimension(spec, T) == sum(spec.hidden))
    return tally


@register_check("discrepancy: Fig. 1 caption says 'any nonzero alpha'; for ReLU alpha must be "
                "> 0 (alpha = -1 changes the function; identity nets are unchanged)",
                "path-sgd Theorem 1, Fig. 1")
def _check_negative_alpha(ctx):
    tally = Tally()
    changed = 0.0
    for activation in ("relu", "identity"):
        for case in ctx.cases(activation):
            alpha = [np.ones(w) for w in case.spec.hidden]
            alpha[0][0] = -1.0
            q = rescale.rescale(case.spec, case.params, alpha, check=False)
            x = case.rng.standard_normal((case.T, 8, case.spec.n_in))
            diff = float(np.max(np.abs(_forward(case.spec, case.params, x)
                                       - _forward(case.spec, q, x))))
            scale = max(_abs_scale(case.spec, case.params, x), 1e-300)
            if activation == "identity":
                depth = (case.T + case.spec.layers) * (max(case.spec.hidden)
                                                       + case.spec.n_in + 2)
                tally.add(diff / scale, 4 * depth * EPS)
            else:
                changed = max(changed, diff / scale)
    tally.require(changed > 1e-6, count=False)
    tally.note = f"relu: largest relative change {changed:.2e}"
    return tally


