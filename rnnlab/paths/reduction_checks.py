"""Reduction-graph and basis-path claims for ``rnnlab verify`` (``path-space-rnn-gsgd.md``
Definition 3, Theorems 1-3 (gsgd), Algorithm 1, App. B.4 and C).

Importing this module registers its checks in :data:`rnnlab.paths.checks.CHECKS`; the planted
bugs that target them are in :mod:`rnnlab.paths.plants`. Every theorem check is exact: counting
vectors are integers, combinations are verified with Python ints, ranks by exact rational
elimination (:mod:`rnnlab.paths.exact`), and the Theorem 2 (gsgd) forward passes run in
:class:`fractions.Fraction`; only the extra float64 comparison of Theorem 2 (gsgd) (the library's
own forward on the two weight settings) has a tolerance.

The ``*_report`` functions do the work for one network and return plain dicts of facts, so tests
can run the same code on Hypothesis-drawn architectures.
"""
from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction

import numpy as np

from ..params import unflatten
from . import exact
from .basis import BasisPaths, algorithm1_masks, forward_exact, rank_facts
from .checks import EPS, Tally, register_check
from .plants import basis_under_test, reduction_graph_under_test
from .reduction import ReductionGraph, sample_unrolled_paths
from .unrolled import UnrolledGraph

ENUMERATE_LIMIT = 4000   # enumerate every unrolled path up to this many, else sample
N_SAMPLE = 300           # sampled unrolled paths per (network, T) above the limit


# ----------------------------------------------------------------------------- instances
def check_specs(layers=(1, 2), widths=(2, 3)):
    """The architectures the reduction checks run on: every (layers, width, bias) with
    (n_in, n_out) = (2, 2) and (3, 1) (so H > n_out and the "mod" indices are exercised), plus
    one unequal-width stack (w, w + 1, ...) per (layers >= 2, width)."""
    from ..models import ElmanSpec
    out = []
    for L in layers:
        for w in widths:
            for bias in (False, True):
                for n_in, n_out in ((2, 2), (3, 1)):
                    out.append(ElmanSpec(n_in, (w,) * L, n_out, "relu", bias, "every"))
            if L >= 2:
                out.append(ElmanSpec(2, tuple(w + (i % 2) for i in range(L)), 2, "relu", True,
                                     "every"))
    return out


def random_rationals(rng, n: int) -> list:
    """``n`` nonzero rationals p/q with |p| in 1..9, q in 1..4 (exact, reproducible)."""
    num = rng.integers(1, 10, n) * rng.choice((-1, 1), n)
    den = rng.integers(1, 5, n)
    return [Fraction(int(a), int(b)) for a, b in zip(num, den)]


# ----------------------------------------------------------------------------- reports
def reduction_report(spec) -> dict:
    """Definition 3 facts for one network: enumeration vs DP count, every path valid, 0/1
    counting vectors, flow conservation."""
    g = ReductionGraph(spec)
    C = g.counting_matrix()
    return {
        "paths": len(g.paths),
        "dp_count": g.count_paths(),
        "distinct": len(set(g.paths)) == len(g.paths),
        "all_valid": all(g.is_path(p) for p in g.paths),
        "zero_one": bool(C.max(initial=0) <= 1),
        "conservation": bool((g.conservation_matrix() @ C.T == 0).all()),
    }


def _unrolled_paths(spec, T, seed=0):
    """All unrolled paths (<= ENUMERATE_LIMIT) or N_SAMPLE uniform samples; plus whether all."""
    ug = UnrolledGraph(spec, T, max_paths=max(ENUMERATE_LIMIT, 1))
    if ug.count_paths() <= ENUMERATE_LIMIT:
        return ug, list(ug.iter_paths()), True
    return ug, sample_unrolled_paths(ug, N_SAMPLE, seed=seed), False


@functools.lru_cache(maxsize=32)
def _reduction_space(spec, plant=None) -> exact.RowSpace:
    """The exact row space of the reduction counting vectors (cached per network)."""
    g = reduction_graph_under_test(spec, plant)
    space = exact.RowSpace()
    space.add_all(g.counting_vector(p).tolist() for p in g.paths)
    return space


def theorem1_report(spec, T: int, seed: int = 0, plant=None, rational: bool = True) -> dict:
    """Theorem 1 (gsgd) for one network and one T: every unrolled path's counting vector as an
    integer combination of reduction-path counting vectors, verified exactly.

    Returns a dict: ``paths`` checked, ``vectors`` (distinct counting vectors among them, each
    checked once), ``all_paths`` (enumerated rather than sampled),
    ``exact`` (every combination reproduces c exactly), ``integral`` (every coefficient an
    int), ``in_span`` (every c in the rational row span of the reduction matrix, by independent
    elimination; None if ``rational`` is False), ``max_coeff``, ``max_terms``, ``failures``
    (readable descriptions of the first failing paths).
    """
    g = reduction_graph_under_test(spec, plant)
    ug, paths, everything = _unrolled_paths(spec, T, seed)
    space = None
    if rational:
        # the reduction graph does not depend on which steps emit outputs: share the cache
        space = _reduction_space(dataclasses.replace(spec, outputs="every"), plant)
    ok_exact = ok_int = ok_span = True
    max_coeff = max_terms = 0
    failures = []
    distinct = {}
    for path in paths:   # many paths share a counting vector: check each vector once
        distinct.setdefault(tuple(ug.counting_vector(path).tolist()), path)
    for key, path in distinct.items():
        c = np.array(key, dtype=np.int64)
        try:
            x = g.combination(c)
            good = g.check_combination(x, c)
        except AssertionError:
            x, good = {}, False
        integral = all(isinstance(k, int) for k in x.values())
        span = space.contains(c.tolist()) if space is not None else True
        if not (good and integral and span) and len(failures) < 3:
            failures.append(ug.describe_path(path))
        ok_exact &= good
        ok_int &= integral
        ok_span &= span
        if x:
            max_coeff = max(max_coeff, max(abs(k) for k in x.values()))
            max_terms = max(max_terms, len(x))
    return {"paths": len(paths), "vectors": len(distinct), "all_paths": everything,
            "exact": ok_exact,
            "integral": ok_int, "in_span": ok_span if rational else None,
            "max_coeff": max_coeff, "max_terms": max_terms, "failures": failures}


def subset_report(spec, T: int) -> dict:
    """Whether every reduction-path counting vector is the counting vector of some unrolled path
    of length T (the paper's P_r subset of P); only for fully enumerable graphs."""
    g = ReductionGraph(spec)
    ug = UnrolledGraph(spec, T, max_paths=max(ENUMERATE_LIMIT, 1))
    if ug.count_paths() > ENUMERATE_LIMIT:
        return {"checked": False}
    unrolled = {tuple(ug.counting_vector(p).tolist()) for p in ug.iter_paths()}
    missing = [p for p in g.paths if tuple(g.counting_vector(p).tolist()) not in unrolled]
    return {"checked": True, "subset": not missing, "missing": len(missing),
            "missing_recurrent": all(any(g.edges[q].recurrent for q in p) for p in missing)}


def basis_report(spec, T_values=(1, 2, 3), seed: int = 0, plant=None, skeleton=None) -> dict:
    """Theorem 3 (gsgd) and the basis count for one network, all exact.

    Returns a dict: ``count``, ``expected`` (= #weights - #hidden nodes), ``basis_rank``,
    ``joint_rank`` (basis + all reduction paths), ``kernel_ok`` (the basis map kills exactly the
    node-rescaling directions: B K^T = 0 and rank K = N_h), ``exponents_ok``, ``reduction_ok`` /
    ``unrolled_ok`` (every reduction / unrolled path, for T in ``T_values``, is an integer
    combination of basis paths, verified exactly), ``unrolled_paths`` (how many were checked).
    """
    bp = basis_under_test(spec, plant, skeleton)
    facts = rank_facts(bp)
    g = bp.graph
    red_ok = all(bp.check(bp.coefficients(c), c) for c in g.counting_matrix())
    unrolled_ok, n_unrolled = True, 0
    for T in T_values:
        ug, paths, _ = _unrolled_paths(spec, T, seed + T)
        for key in {tuple(ug.counting_vector(p).tolist()) for p in paths}:
            c = np.array(key, dtype=np.int64)
            unrolled_ok &= bp.check(bp.coefficients(c), c)
        n_unrolled += len(paths)
    return {"count": len(bp), "expected": bp.expected_count,
            "n_weights": g.n_params, "n_hidden": g.n_hidden, **facts,
            "exponents_ok": bp.check_exponents(), "reduction_ok": red_ok,
            "unrolled_ok": unrolled_ok, "unrolled_paths": n_unrolled}


def _positive_rescaling(bp: BasisPaths, w, w2):
    """The node factors alpha with w2 = T_alpha(w) read off the skeleton out-weights
    (w2_{s_out(v)} = w_{s_out(v)} alpha_dst / alpha_v, alpha = 1 on inputs, bias, outputs), and
    whether w2 equals that rescaling of w exactly on every edge."""
    g, ch = bp.graph, bp.chains
    alpha = {}
    for v in sorted(g.hidden_nodes, key=lambda n: -n.layer):   # top layer first
        o = ch.out_edge[v]
        dst = g.edges[o].dst
        a_dst = alpha.get(dst, 1)
        alpha[v] = a_dst * w[o] / w2[o]
    same = all(w2[e.param] == w[e.param] * alpha.get(e.dst, 1) / alpha.get(e.src, 1)
               for e in g.edges)
    return alpha, same


@functools.lru_cache(maxsize=256)
def theorem2_report(spec, seed: int, T: int = 3, B: int = 4, plant=None) -> dict:
    """Theorem 2 (gsgd) for one network: two different weight settings with the same basis-path
    values and the same skeleton out-weight signs have identical activation patterns and outputs;
    one flipped sign (basis values kept) changes them.

    Weights and inputs are random rationals; the second setting is solved from the basis values
    and random magnitudes for the skeleton out-weights (:meth:`BasisPaths.weights_from_values`);
    forward passes are exact (:func:`forward_exact`).

    Returns a dict of booleans ``values_equal``, ``weights_differ``, ``positive_rescaling``
    (w2 = T_alpha(w) exactly with all alpha > 0), ``patterns_equal``, ``outputs_equal``;
    for the sign flips (one hidden node v at a time, :meth:`BasisPaths.flip_node`, basis values
    kept; in a single layer this is flipping the sign of v's selected W^o entry):
    ``flip_values_equal``,
    ``flip_patterns_ok`` (the pattern changes whenever the flipped node has a nonzero
    pre-activation somewhere: at the first such (t, b) its z changes sign),
    ``flip_outputs_ok`` (the output changes whenever the flipped node is in the top layer and has
    a nonzero pre-activation: at that first step y changes by W_out[:, v] z_v != 0),
    ``flips_effective`` (how many flips had a nonzero pre-activation); and the float64 comparison
    ``float_error`` / ``float_tol`` of the library forward on the two settings.
    """
    rng = np.random.default_rng(seed)
    bp = basis_under_test(spec, plant)
    g = bp.graph
    w = random_rationals(rng, g.n_params)
    x = [[random_rationals(rng, spec.n_in) for _ in range(B)] for _ in range(T)]
    values = bp.values(w)
    # new skeleton out-weights: same signs, magnitudes times a random factor != 1 (so w2 != w)
    factors = [abs(f) if abs(f) != 1 else Fraction(2) for f in random_rationals(rng, len(bp.free))]
    free = {o: w[o] * f for o, f in zip(bp.free, factors)}
    w2 = bp.weights_from_values(values, free)
    alpha, rescaled = _positive_rescaling(bp, w, w2)
    f1, f2 = forward_exact(spec, w, x), forward_exact(spec, w2, x)
    flip_values = flip_patterns = flip_outputs = True
    effective = 0
    for v in g.hidden_nodes:
        w3 = bp.weights_from_values(values, bp.flip_node(free, v))
        f3 = forward_exact(spec, w3, x)
        flip_values &= bp.values(w3) == values
        if any(z != 0 for z in f1.node_pre(v.layer, v.unit)):
            effective += 1
            flip_patterns &= f3.pattern != f1.pattern
            if v.layer == spec.layers:
                flip_outputs &= f3.y != f1.y
    err, tol = _float_comparison(spec, w, w2, x)
    return {"values_equal": bp.values(w2) == values, "weights_differ": w2 != w,
            "positive_rescaling": rescaled and all(a > 0 for a in alpha.values()),
            "patterns_equal": f1.pattern == f2.pattern, "outputs_equal": f1.y == f2.y,
            "flip_values_equal": flip_values, "flip_patterns_ok": flip_patterns,
            "flip_outputs_ok": flip_outputs, "flips_effective": effective,
            "float_error": err, "float_tol": tol}


def _float_comparison(spec, w, w2, x):
    """Relative max-difference of the library's float64 forward on w and w2 (outputs at every
    step), and its round-off bound."""
    from .. import backend
    from ..models import ElmanRNN
    every = dataclasses.replace(spec, outputs="every")
    xs = np.array([[[float(v) for v in row] for row in step] for step in x])
    outs, scales = [], []
    for weights in (w, w2):
        p = {k: backend.to_device(v, dtype="float64") for k, v in
             unflatten(np.array([float(v) for v in weights]), every, host=True).items()}
        y, _ = ElmanRNN(every, p).forward(p, backend.to_device(xs, dtype="float64"))
        outs.append(backend.to_host(y))
        ident = dataclasses.replace(every, activation="identity")
        pa = {k: abs(v) for k, v in p.items()}
        ya, _ = ElmanRNN(ident, pa).forward(pa, backend.to_device(abs(xs), dtype="float64"))
        scales.append(float(np.max(np.abs(backend.to_host(ya)))))
    scale = max(max(scales), 1e-300)
    # Each forward: (T + d) layers of dot products of width <= H + n_in + 1 (+ bias), relative to
    # the |w|-network on |x| (a bound on every partial sum); plus one rounding per weight when the
    # exact rationals are converted: <= 4 (T + d)(H + n_in + 2) eps * scale for the difference.
    depth = (len(x) + spec.layers) * (max(spec.hidden) + spec.n_in + 2)
    return float(np.max(np.abs(outs[0] - outs[1]))) / scale, 4 * depth * EPS


def stacked_sign_report(spec, seed: int, T: int = 3, B: int = 4, tries: int = 10) -> dict:
    """The stacked-RNN discrepancy in Theorem 2 (gsgd): flip the sign of a hidden node of a layer
    < d (:meth:`BasisPaths.flip_node`, basis values kept). W^o and every basis value stay the same;
    the output changes for some node and some of ``tries`` random weight/input draws (an existence
    claim: a counterexample to "basis values + signs of W^o determine the output").
    """
    bp = BasisPaths(spec)
    g = bp.graph
    out_w = [e.param for e in g.edges if e.name == "out.W"]
    lower = [v for v in g.hidden_nodes if v.layer < spec.layers]
    keeps, found = True, None
    for k in range(tries):
        rng = np.random.default_rng([seed, k])
        w = random_rationals(rng, g.n_params)
        x = [[random_rationals(rng, spec.n_in) for _ in range(B)] for _ in range(T)]
        values = bp.values(w)
        free = {o: w[o] for o in bp.free}
        y1 = forward_exact(spec, w, x).y
        for v in lower:
            w3 = bp.weights_from_values(values, bp.flip_node(free, v))
            keeps &= bp.values(w3) == values and all(w3[p] == w[p] for p in out_w)
            if found is None and forward_exact(spec, w3, x).y != y1:
                found = (k, str(v))
        if found is not None:
            break
    return {"lower_nodes": len(lower), "keeps_values_and_Wo": keeps,
            "output_changed": found is not None, "example": found}


def algorithm1_report(spec) -> dict:
    """Algorithm 1 as printed vs fixed on (W^1_in, W^o)-shaped masks of a one-layer net of this
    width: the printed reading raises IndexError iff H > n_out, and equals the fix otherwise."""
    H = spec.hidden[-1]
    shapes = ((H, spec.n_in), (spec.n_out, H))
    fixed = algorithm1_masks(*shapes)
    try:
        printed = algorithm1_masks(*shapes, reading="printed")
        raised = False
    except IndexError:
        printed, raised = None, True
    same = printed is not None and all(np.array_equal(a, b) for a, b in zip(fixed, printed))
    one_per_column = bool((fixed[1].sum(axis=0) == 1).all())
    return {"H_gt_K": H > spec.n_out, "printed_raised": raised, "same_as_fixed": same,
            "fixed_one_per_column": one_per_column}


def paper_examples() -> dict:
    """The paper's two worked examples, reproduced exactly.

    * Section 3.1, Eq. (4): v_p1 = v_p2 v_p3 v_p4 / v_p5^2 on n_in = 2, h = 2, K = 2 (nodes
      N1, N2 inputs; N3, N4 hidden; N5, N6 outputs), with p3 ending at N5^{O,(2)} (printed:
      N5^{O,(1)}, not reachable after N3^{H,(2)}).
    * App. C.1 (Figure 5: n_in = 2, h = 1, K = 2, weights (w1..w5) = flatten order): the path
      N1 -> N3 -> N3 -> N3 -> N3 -> N4 has C_p = (1, 0, 3, 1, 0) = 1 (1,0,0,1,0) + 3 (1,0,1,1,0)
      + 1 (1,0,0,1,0) - 4 (1,0,0,1,0), exactly the combination :meth:`combination` returns.
    """
    from ..models import ElmanSpec
    from .unrolled import param_index
    rng = np.random.default_rng(0)
    # Eq. (4): hidden N3 is unit 0, N5/N6 outputs 0/1, N1/N2 inputs 0/1.
    spec = ElmanSpec(2, (2,), 2, "relu", False, "every")
    w = random_rationals(rng, 4 + 4 + 4)

    def W(name, *idx):
        return w[param_index(spec, name, idx)]

    w23, w13 = W("layer1.W_in", 0, 1), W("layer1.W_in", 0, 0)
    w33 = W("layer1.W_rec", 0, 0)
    w35, w36 = W("out.W", 0, 0), W("out.W", 1, 0)
    v1, v2, v3, v4, v5 = w23 * w33 * w36, w23 * w35, w13 * w33 * w35, w13 * w36, w13 * w35
    eq4 = v1 == v2 * v3 * v4 / v5 ** 2
    # p3 as printed would end at an output of time 1 after visiting N3 at time 2: not a path.
    ug = UnrolledGraph(spec, 2)
    p3_printed_is_path = any(ug.describe_path(p) == "x[t=1,0] -> h1[t=1,0] -> h1[t=2,0] -> "
                             "y[t=1,0]" for p in ug.iter_paths())
    p3_fixed_is_path = any(ug.describe_path(p) == "x[t=1,0] -> h1[t=1,0] -> h1[t=2,0] -> "
                           "y[t=2,0]" for p in ug.iter_paths())
    # App. C.1
    spec5 = ElmanSpec(2, (1,), 2, "relu", False, "last")
    g = ReductionGraph(spec5)
    c = np.array([1, 0, 3, 1, 0])
    x = g.combination(c)
    paper = {(1, 0, 0, 1, 0): 1 + 1 - 4, (1, 0, 1, 1, 0): 3}
    ours = {tuple(g.counting_vector(g.paths[r]).tolist()): k for r, k in x.items()}
    return {"eq4": eq4, "p3_printed_is_path": p3_printed_is_path,
            "p3_fixed_is_path": p3_fixed_is_path, "c1_matches": ours == paper,
            "c1_exact": g.check_combination(x, c)}


# ----------------------------------------------------------------------------- the checks
def _fail_note(tally, text):
    if not tally.note:
        tally.note = text


@register_check("reduction graph (Def. 3): enumerated paths = DP count, each starts at an "
                "input/bias node, ends at an output, crosses <= 1 recurrent edge; counting "
                "vectors are 0/1 and conserve flow at hidden nodes", "gsgd Def. 3, App. C.1")
def _check_reduction(ctx):
    tally = Tally()
    for spec in check_specs(ctx.layers, ctx.widths):
        r = reduction_report(spec)
        tally.exact(r["paths"] == r["dp_count"] and r["distinct"] and r["all_valid"]
                    and r["zero_one"] and r["conservation"])
    return tally


@register_check("Theorem 1 (gsgd): every unrolled path's counting vector is an INTEGER "
                "combination of reduction-path counting vectors (explicit coefficients, A x = c "
                "checked in ints; c also in their rational span by exact elimination), "
                "T = 1, 2, T", "gsgd Thm 1, App. C.1")
def _check_theorem1(ctx):
    tally = Tally()
    sampled = 0
    for spec in check_specs(ctx.layers, ctx.widths):
        for outputs in ("every", "last"):
            s = dataclasses.replace(spec, outputs=outputs)
            for T in sorted({1, 2, ctx.T}):
                r = theorem1_report(s, T, seed=T, plant=ctx.plant)
                sampled += not r["all_paths"]
                ok = r["exact"] and r["integral"] and r["in_span"]
                tally.exact(ok)
                if not ok:
                    _fail_note(tally, f"{s.hidden} T={T}: {r['failures'][:1]}")
    if tally.passed:
        tally.note = (f"all paths enumerated up to {ENUMERATE_LIMIT}; {sampled} (network, T) "
                      f"pairs used {N_SAMPLE} uniform samples")
    return tally


@register_check("P_r subset of P: every reduction path is an unrolled path when T >= 2; for "
                "T = 1 exactly the recurrent ones are missing", "gsgd Sec. 3.2")
def _check_subset(ctx):
    tally = Tally()
    for spec in check_specs(ctx.layers, ctx.widths):
        for outputs in ("every", "last"):
            s = dataclasses.replace(spec, outputs=outputs)
            for T in (1, 2):
                r = subset_report(s, T)
                if r["checked"]:
                    tally.exact(r["subset"] if T >= 2 else
                                (r["missing"] > 0 and r["missing_recurrent"]))
    return tally


@register_check("Theorem 3 (gsgd) count: the Skeleton Method (Alg. 1 with the index fix, stacked "
                "per App. B.4) selects #weights - #hidden nodes paths (biases are weights, the "
                "bias node is not a hidden node)", "gsgd Thm 3, Alg. 1, App. B.4")
def _check_count(ctx):
    tally = Tally()
    for spec in check_specs(ctx.layers, ctx.widths):
        try:
            bp = basis_under_test(spec, ctx.plant)
            tally.exact(len(bp) == bp.expected_count
                        and bp.expected_count == bp.graph.n_params - sum(spec.hidden))
        except (IndexError, ValueError) as exc:
            tally.exact(False)
            _fail_note(tally, f"{spec.hidden} -> {spec.n_out}: {type(exc).__name__}: {exc}")
    return tally


@register_check("Theorem 3 (gsgd): basis paths are independent (exact rank = count), span every "
                "reduction path (rank [basis; reduction] = count), every reduction and unrolled "
                "path (T = 1..T) is an INTEGER combination of them, and the basis map's kernel is "
                "exactly the node rescalings of Theorem 1 (path-sgd)",
                "gsgd Thm 3, Def. 2; path-sgd Thm 1")
def _check_theorem3(ctx):
    tally = Tally()
    for spec in check_specs(ctx.layers, ctx.widths):
        try:
            r = basis_report(spec, T_values=tuple(range(1, ctx.T + 1)), plant=ctx.plant)
        except (IndexError, ValueError) as exc:
            tally.exact(False)
            _fail_note(tally, f"{spec.hidden} -> {spec.n_out}: {type(exc).__name__}: {exc}")
            continue
        ok = (r["basis_rank"] == r["count"] == r["joint_rank"] == r["expected"]
              and r["kernel_ok"] and r["conservation_rank"] == r["n_hidden"]
              and r["reduction_ok"] and r["unrolled_ok"] and r["exponents_ok"])
        tally.exact(ok)
        if not ok:
            _fail_note(tally, f"{spec.hidden}: rank {r['basis_rank']}, joint {r['joint_rank']}, "
                              f"expected {r['expected']}")
    return tally


@register_check("Theorem 2 (gsgd): a second, different weight setting solved from the basis-path "
                "values and same-sign skeleton out-weights has identical ReLU activation patterns "
                "and outputs (exact rational forward; it is a positive node rescaling, exactly)",
                "gsgd Thm 2, App. C.2")
def _check_theorem2(ctx):
    tally = Tally()
    for r in _theorem2_reports(ctx, tally):
        tally.exact(r["values_equal"] and r["weights_differ"] and r["positive_rescaling"]
                    and r["patterns_equal"] and r["outputs_equal"])
        # float64 library forward on both settings, bound justified in the report
        tally.add(r["float_error"], r["float_tol"], count=False)
    return tally


def _theorem2_reports(ctx, tally):
    """:func:`theorem2_report` for every instance; one that raises (a planted wrong mask can make
    the skeleton invalid) is recorded in ``tally`` as a failed instance."""
    for spec in check_specs(ctx.layers, ctx.widths):
        for k in range(ctx.instances):
            for seed in ctx.seeds:
                try:
                    yield theorem2_report(spec, seed=1000 * seed + k, T=ctx.T, plant=ctx.plant)
                except (IndexError, ValueError) as exc:
                    tally.exact(False)
                    _fail_note(tally, f"{type(exc).__name__}: {exc}")


@register_check("Theorem 2 (gsgd) needs the signs: flipping one node (alpha_v = -1: the signs of "
                "the skeleton out-weights at v; all basis values kept) changes the activation "
                "pattern, and the output if v is in the top layer (whenever v's pre-activation "
                "is ever nonzero)",
                "gsgd Thm 2")
def _check_theorem2_signs(ctx):
    tally = Tally()
    for r in _theorem2_reports(ctx, tally):
        tally.exact(r["flip_values_equal"] and r["flip_patterns_ok"] and r["flip_outputs_ok"]
                    and r["flips_effective"] > 0)
    return tally


@register_check("discrepancy: for stacked RNNs the signs of W^o's selected entries are NOT "
                "enough (flipping a lower-layer node keeps every path value and W^o but changes "
                "the output); every hidden node's skeleton out-weight sign is needed",
                "gsgd Thm 2, App. B.4")
def _check_stacked_signs(ctx):
    tally = Tally()
    for spec in check_specs(ctx.layers, ctx.widths):
        if spec.layers < 2:
            continue
        for k in range(ctx.instances):
            r = stacked_sign_report(spec, seed=k, T=ctx.T)
            tally.exact(r["keeps_values_and_Wo"] and r["output_changed"])
    if tally.instances == 0:
        tally.note = "needs layers >= 2"
    return tally


@register_check("discrepancy: Alg. 1 as printed (M^o[j][j % n_out], j over hidden units) raises "
                "IndexError whenever H > n_out and equals the fix M^o[j % n_out][j] otherwise; "
                "the fix gives one skeleton out-edge per hidden unit", "gsgd Alg. 1")
def _check_algorithm1(ctx):
    tally = Tally()
    seen = set()
    for spec in check_specs(ctx.layers, ctx.widths):
        key = (spec.n_in, spec.hidden[-1], spec.n_out)
        if key in seen:
            continue
        seen.add(key)
        r = algorithm1_report(spec)
        tally.exact(r["fixed_one_per_column"] and (
            r["printed_raised"] if r["H_gt_K"] else r["same_as_fixed"]))
    return tally


@register_check("paper examples: Eq. 4 holds exactly (with p3 ending at N5^(2); the printed "
                "N5^(1) is not a path) and App. C.1's C_p = (1,0,3,1,0) combination is reproduced",
                "gsgd Sec. 3.1 Eq. 4, App. C.1")
def _check_examples(ctx):
    tally = Tally()
    r = paper_examples()
    tally.exact(r["eq4"] and r["p3_fixed_is_path"] and not r["p3_printed_is_path"]
                and r["c1_matches"] and r["c1_exact"])
    return tally
