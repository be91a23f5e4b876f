"""Path-SGD and Path-Adam (``rnnlab.optim.path_sgd``) and the kappa core they use
(``rnnlab.paths.norms.kappa_device``, the faster kappa^(2)).

* **kappa.** The device core against references written out here (explicit loops over steps, the
  former double sum of outer products and matrix powers for kappa^(2), the library's BPTT on the
  squared network for kappa^(1)), against path enumeration and finite differences; per-step
  output weights (the steps a mask scores) against sums of last-step kappas of shorter networks.
* **Steps.** One Path-SGD step is p - lr g / (kappa + eps) with kappa from ``rnnlab.paths.norms``
  for 1-3 layers, biases on and off, outputs last / every / masked, kappa^(1) and kappa^(1) +
  kappa^(2), full and truncated BPTT, float64 and float32 parameters; Path-Adam is Adam on that
  direction. Invariance to node rescaling is in ``tests/test_invariance.py``.
* Bad input (models, options), step metrics, checkpoints, and training through ``run()``
  (registered for the test with ``OPTIMIZERS.temporarily``).

Shapes: T steps, B batch, n_in inputs, H hidden units, K = n_out outputs. All checks in float64
unless they say otherwise.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab import ElmanRNN, backend, losses, objective
from rnnlab.config import RunConfig
from rnnlab.errors import ConfigError
from rnnlab.models import ElmanSpec
from rnnlab.objective import Batch
from rnnlab.optim import OPTIMIZERS, Adam
from rnnlab.optim.path_sgd import PathAdam, PathSGD, scored_step_weights
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import fit_T, n_params, norms
from rnnlab.train import FileSink, MemorySink, checkpoint, run
from rnnlab.train.run import train_step

import strategies as S

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------- helpers
def _params(spec, seed, scale=0.8):
    rng = np.random.default_rng(seed)
    return unflatten(scale * rng.standard_normal(n_params(spec)), spec, host=True)


def _model(spec, seed, scale=0.8, dtype="float64"):
    host = _params(spec, seed, scale)
    return ElmanRNN(spec, {k: backend.to_device(v, dtype=dtype) for k, v in host.items()})


def _batch(spec, T, B, seed, dtype="float64", mask_steps=None):
    """Inputs, MSE targets and (for outputs other than "last") a 0/1 mask; ``mask_steps`` lists
    the steps (1-based) allowed to score, default: a random pattern with a scored step."""
    rng = np.random.default_rng(seed + 1000)
    x = rng.standard_normal((T, B, spec.n_in))
    if spec.outputs == "last":
        y, mask = rng.standard_normal((B, spec.n_out)), None
    else:
        y = rng.standard_normal((T, B, spec.n_out))
        mask = None
        if spec.outputs == "masked":
            mask = S.host_mask(T, B, rng)
            if mask_steps is not None:
                keep = np.zeros(T)
                keep[np.asarray(mask_steps) - 1] = 1
                mask *= keep[:, None]
                mask[np.asarray(mask_steps) - 1, 0] = 1
    dev = lambda a: None if a is None else backend.to_device(a, dtype=dtype)  # noqa: E731
    return Batch(dev(x), dev(y), dev(mask))


def _grads(model, params, batch):
    _, grads, _ = objective.batch_loss_and_grads(model, params, batch, losses.mse)
    return grads


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def _host(params):
    return {k: np.array(backend.to_host(v), dtype=np.float64) for k, v in params.items()}


def _scored_steps(batch):
    """The 1-based steps where the batch's mask scores anything (host)."""
    mask = backend.to_host(batch.mask)
    return [t + 1 for t in range(mask.shape[0]) if np.any(mask[t] != 0)]


def reference_kappa(spec, p, T, steps=None, second_term=True) -> dict:
    """kappa of the network with outputs scored at ``steps`` (1-based; default: what
    ``spec.outputs`` says), from ``rnnlab.paths.norms.kappa`` of shorter networks: g is a sum of
    one output step's g per scored step t, and the steps after t do not change that one, so
    kappa = sum_{t in steps} kappa(the network with outputs "last", T = t)."""
    if steps is None:
        steps = [T] if spec.outputs == "last" else list(range(1, T + 1))
    last = dataclasses.replace(spec, outputs="last")
    total = {k: np.zeros(s) for k, s in spec.param_shapes().items()}
    for t in steps:
        k = norms.kappa(last, p, t, second_term=second_term)
        for name in total:
            total[name] += k[name]
    return total


# --- references for the kappa core, written out with explicit loops (independent of it)
def _reference_pass(spec, p, T, w):
    """Forward and backward of g = sum_t w_t 1^T y~_t on the squared network (host loops).
    Returns h (d arrays (T + 1, H_i), h~_0 = 0) and delta (d arrays (T + 2, H_i), rows 1..T)."""
    sq = {k: np.asarray(v, dtype=np.float64) ** 2 for k, v in p.items()}
    h, below = [], np.ones((T + 1, spec.n_in))
    for i, width in enumerate(spec.hidden, start=1):
        hi = np.zeros((T + 1, width))
        for t in range(1, T + 1):
            hi[t] = sq[f"layer{i}.W_in"] @ below[t] + sq[f"layer{i}.W_rec"] @ hi[t - 1]
            if spec.bias:
                hi[t] += sq[f"layer{i}.b"]
        h.append(hi)
        below = hi
    delta = [np.zeros((T + 2, width)) for width in spec.hidden]
    top = sq["out.W"].T @ np.ones(spec.n_out)
    for i in range(spec.layers, 0, -1):
        for t in range(T, 0, -1):
            g = sq[f"layer{i}.W_rec"].T @ delta[i - 1][t + 1]
            if i == spec.layers:
                g += w[t - 1] * top
            else:
                g += sq[f"layer{i + 1}.W_in"].T @ delta[i][t]
            delta[i - 1][t] = g
    return sq, h, delta


def reference_kappa2(spec, p, T, w, form="corrected") -> dict:
    """The W_rec term as the double sums read: outer products and matrix powers (the former
    ``kappa2_fast`` for ``form="corrected"``; Section 4.4 as printed for "paper", and with h_{t2-1}
    for "paper_shifted")."""
    sq, h, delta = _reference_pass(spec, p, T, w)
    out = {k: np.zeros(s) for k, s in spec.param_shapes().items()}
    for i in range(1, spec.layers + 1):
        W = sq[f"layer{i}.W_rec"]
        hi, di = h[i - 1], delta[i - 1]
        total, power = np.zeros_like(W), np.eye(W.shape[0])
        for n in range(0, T - 2):
            if form == "corrected":
                inner = sum((np.outer(di[s + n + 2], hi[s]) for s in range(1, T - 1 - n)),
                            np.zeros_like(W))
            else:
                lag = 1 if form == "paper_shifted" else 0
                inner = sum((np.outer(di[n + t2 + 1], hi[t2 - lag]) for t2 in range(2, T - n)),
                            np.zeros_like(W))
            total += power.T * inner
            power = power @ W
        out[f"layer{i}.W_rec"] = (4.0 if form == "corrected" else 1.0) * W * total
    return out


def reference_kappa1_bptt(spec, p, T, w) -> dict:
    """kappa^(1) = grad_{p~} g by the library's BPTT (ElmanRNN.backward) on the squared network
    with dg/dy_t = w_t: the former ``kappa1_fast``."""
    every = dataclasses.replace(spec, outputs="every")
    sq = {k: backend.to_device(np.asarray(v, dtype=np.float64) ** 2) for k, v in p.items()}
    model = ElmanRNN(every, sq)
    y, cache = model.forward(sq, backend.to_device(np.ones((T, 1, spec.n_in))))
    dy = backend.to_device(np.asarray(w, dtype=np.float64)[:, None, None]
                           * np.ones((T, 1, spec.n_out)))
    grads, _ = model.backward(sq, dy, cache)
    return _host(grads)


def rel_err(a, b) -> float:
    """max |a - b| / max(|a|, |b|) entry by entry (0 where both are 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = np.maximum(np.abs(a), np.abs(b))
    return float(np.max(np.where(den > 0, np.abs(a - b) / np.where(den > 0, den, 1), 0),
                        initial=0.0))


@st.composite
def kappa_problems(draw, max_T=8):
    """(spec, T, params, w): relu, 1-3 layers of widths 1-5, in/out 1-3, T 1-max_T, bias on/off,
    outputs of every mode, and per-step 0/1 weights with at least one 1."""
    arch = draw(S.architectures(activation=st.just("relu")))
    spec = ElmanSpec(**arch)
    T = draw(st.integers(1, max_T))
    w = np.array(draw(st.lists(st.sampled_from((0.0, 1.0)), min_size=T, max_size=T)))
    w[draw(st.integers(0, T - 1))] = 1.0
    return spec, T, _params(spec, draw(S.seeds)), w


# ----------------------------------------------------------------------------- the kappa core
@given(kappa_problems())
def test_kappa2_fast_equals_the_double_sum(problem):
    spec, T, p, _ = problem
    w = np.ones(T) if spec.outputs != "last" else np.eye(T)[T - 1]
    fast = host_vector(norms.kappa2_fast(spec, p, T), spec)
    slow = host_vector(reference_kappa2(spec, p, T, w), spec)
    # the same nonnegative float64 terms summed in another order: relative error <= (terms per
    # sum + pass depth) eps, < 1e3 eps at T <= 8, H <= 5, 3 layers
    assert rel_err(fast, slow) <= 1e3 * EPS


@pytest.mark.slow
@settings(max_examples=300)
@given(kappa_problems(max_T=12))
def test_kappa2_fast_equals_the_double_sum_exhaustive(problem):
    test_kappa2_fast_equals_the_double_sum.hypothesis.inner_test(problem)


@given(kappa_problems())
def test_paper_forms_equal_their_literal_double_sums(problem):
    spec, T, p, _ = problem
    w = np.ones(T) if spec.outputs != "last" else np.eye(T)[T - 1]
    for shift, form in ((False, "paper"), (True, "paper_shifted")):
        fast = host_vector(norms.kappa2_paper_matrix_form(spec, p, T, shift_h=shift), spec)
        slow = host_vector(reference_kappa2(spec, p, T, w, form), spec)
        assert rel_err(fast, slow) <= 1e3 * EPS   # as above: nonnegative sums, reordered


@given(kappa_problems(max_T=5))
def test_kappa_core_equals_enumeration(problem):
    spec, T, p, _ = problem
    T = max(fit_T(spec, T, 20_000), 1)
    enum = norms.kappa_enumeration(spec, p, T, max_paths=20_000)
    k = host_vector(norms.kappa(spec, p, T), spec)
    k1 = host_vector(norms.kappa1_fast(spec, p, T), spec)
    # <= 20 000 nonnegative path terms against a pass of depth T + d: <= 1e5 eps relative
    assert rel_err(k, host_vector(enum.kappa, spec)) <= 1e5 * EPS
    assert rel_err(k1, host_vector(enum.kappa1, spec)) <= 1e5 * EPS


def test_kappa2_fast_equals_finite_differences_at_H_T_of_a_few():
    spec = ElmanSpec(2, (3, 2), 1, "relu", True, "every")
    p = _params(spec, 3, scale=0.6)
    T = 6
    fd = host_vector(norms.kappa_finite_difference(spec, p, T), spec)
    k = host_vector(norms.kappa(spec, p, T), spec)
    # Richardson-extrapolated second differences at h = 1e-3: truncation O(h^4) times the 6th
    # derivative, and round-off eps gamma^2 / h^2 ~ 1e-10 relative at these values
    np.testing.assert_allclose(k, fd, rtol=1e-7, atol=1e-9 * np.abs(k).max())
    k2 = host_vector(norms.kappa2_fast(spec, p, T), spec)
    assert np.abs(k2).max() > 1e-3 * np.abs(k).max()   # the second term is really tested


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=kappa_problems())
def test_kappa_core_on_the_device_equals_the_references(xp, problem):
    spec, T, p, w = problem
    dev = {k: backend.to_device(v) for k, v in p.items()}
    before = _host(dev)
    for weights, w_host in ((backend.to_device(w), w), (None, None)):
        if w_host is None:
            w_host = np.eye(T)[T - 1] if spec.outputs == "last" else np.ones(T)
        k = norms.kappa_device(spec, dev, T, second_term=True, step_weights=weights)
        assert list(k) == list(spec.param_shapes())
        assert all(type(v) is xp.ndarray and v.dtype == np.float64 for v in k.values())
        k1 = norms.kappa_device(spec, dev, T, second_term=False, step_weights=weights)
        want1 = host_vector(reference_kappa1_bptt(spec, p, T, w_host), spec)
        want2 = host_vector(reference_kappa2(spec, p, T, w_host), spec)
        # kappa^(1): two linear passes of depth T + d over nonnegative values, reordered
        assert rel_err(host_vector(k1, spec), want1) <= 1e3 * EPS
        assert rel_err(host_vector(k, spec), want1 + want2) <= 1e3 * EPS
    for name in before:   # the parameters are read, never written
        np.testing.assert_array_equal(backend.to_host(dev[name]), before[name])


@given(kappa_problems())
def test_scored_steps_give_the_sum_of_last_step_kappas(problem):
    spec, T, p, w = problem
    steps = [t + 1 for t in range(T) if w[t]]
    for second in (False, True):
        k = norms.kappa_device(spec, p, T, second_term=second, step_weights=w)
        want = reference_kappa(spec, p, T, steps, second_term=second)
        # two computations of nonnegative sums over the same paths
        assert rel_err(host_vector(k, spec), host_vector(want, spec)) <= 1e3 * EPS


def test_scored_step_weights_come_from_the_mask_on_the_device(xp):
    mask = np.zeros((5, 3))
    mask[1, 2] = mask[3, 0] = mask[3, 1] = 1
    w = scored_step_weights(backend.to_device(mask, dtype="float32"), 5)
    assert type(w) is xp.ndarray and w.dtype == np.float64
    np.testing.assert_array_equal(backend.to_host(w), [0, 1, 0, 1, 0])


def test_kappa_core_refuses_bad_step_weights():
    spec = ElmanSpec(1, (2,), 1, "relu", True, "every")
    p = _params(spec, 0)
    with pytest.raises(ConfigError, match=r"step_weights must have shape \(4,\)"):
        norms.kappa_device(spec, p, 4, step_weights=np.ones(3))
    with pytest.raises(ConfigError, match="step_weights must be 'last', 'every'"):
        norms.kappa_device(spec, p, 4, step_weights="first")


# --- the log-depth scan of the squared pass (norms._linear_scan) against step-by-step loops
def _naive_recursion(M, U, reverse):
    """x_t = x_{t-1} M + u_t (x_{-1} = 0), or from the end with ``reverse``, one row at a time."""
    x, prev = np.zeros_like(U), np.zeros(U.shape[1])
    for t in (range(U.shape[0] - 1, -1, -1) if reverse else range(U.shape[0])):
        prev = prev @ M + U[t]
        x[t] = prev
    return x


@pytest.mark.parametrize("n", list(range(1, 19)) + [31, 32, 33, 40, 63, 64, 65])
def test_linear_scan_equals_the_step_by_step_recursion_at_every_depth(xp, n):
    rng = np.random.default_rng(n)
    for H in (1, 3):
        W = rng.random((H, H)) * (1.6 / H)         # spectral radius up to ~1.6: growing states
        for transpose in (False, True):
            M = W.T if transpose else W
            for reverse in (False, True):
                for kind in ("rows", "constant", "first"):
                    u = rng.random(H) + 0.1
                    if kind == "rows":   # some zero rows, as 0/1 step weights give
                        U = rng.random((n, H)) * (rng.random((n, 1)) < 0.7)
                    elif kind == "constant":
                        U = np.tile(u, (n, 1))
                    else:
                        U = np.zeros((n, H))
                        U[n - 1 if reverse else 0] = u
                    want = _naive_recursion(M, U, reverse)
                    start = U if kind == "rows" else np.full((n, H), np.nan)   # nan: ignored
                    for L in range(n.bit_length() + 1):   # past the deepest: clamped
                        powers = norms._Powers(backend.to_device(W))
                        x = backend.to_device(start.copy())
                        out = norms._linear_scan(
                            x, powers, transpose=transpose, reverse=reverse, kind=kind,
                            u=None if kind == "rows" else backend.to_device(u), levels=L)
                        assert out is x
                        # the same nonnegative terms in another order: <= ~(n + H) eps relative
                        assert rel_err(backend.to_host(x), want) <= 1e-13, (H, transpose,
                                                                              reverse, kind, L)
                        # no power beyond what n needs: W^(2^l) with 2^l <= n / 2 (overflow)
                        assert len(powers._p) <= max(1, (n // 2).bit_length())


def test_scan_depth_is_in_range_and_zero_where_it_cannot_pay():
    for n in (1, 2, 3, 7, 50, 100, 1000):
        for H in (1, 10, 100, 256, 1024):
            L = norms._scan_levels(n, H)
            assert 0 <= L <= n.bit_length() - 1
    assert norms._scan_levels(1, 100) == 0
    # the H^3 squarings cost more than the steps they save (NumPy cost table)
    assert norms._scan_levels(50, 1024) == 0
    assert norms._scan_levels(1000, 32) > 0


def _kappa1_sequential(spec, p, T, w):
    """kappa^(1) = d g / d p~ with g = sum_t w_t 1^T y~_t, from the step-by-step host loops of
    ``_reference_pass``: each parameter's sum over the steps of (downstream delta) x (upstream
    value), entry by entry as the chain rule reads (the former, sequential pass)."""
    sq, h, delta = _reference_pass(spec, p, T, w)
    k = {name: np.zeros(shape) for name, shape in spec.param_shapes().items()}
    for i in range(1, spec.layers + 1):
        below = np.ones((T + 1, spec.n_in)) if i == 1 else h[i - 2]
        for t in range(1, T + 1):
            d = delta[i - 1][t]
            k[f"layer{i}.W_in"] += np.outer(d, below[t])
            k[f"layer{i}.W_rec"] += np.outer(d, h[i - 1][t - 1])
            if spec.bias:
                k[f"layer{i}.b"] += d
    for t in range(1, T + 1):
        k["out.W"] += w[t - 1] * np.outer(np.ones(spec.n_out), h[-1][t])
        if spec.bias:
            k["out.b"] += w[t - 1]
    return k


SCAN_TS = (1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 32, 33, 40)


@pytest.mark.parametrize("layers,bias", [(n, b) for n in (1, 2, 3) for b in (False, True)])
def test_scanned_kappa_equals_the_sequential_pass(xp, layers, bias):
    """kappa_device (the pass by log-depth scans, at every depth) against the step-by-step
    reference and against the former loop (depth 0), T = 1..40, outputs last / every / per-step
    weights, spectral radius of W~_rec above 1 in some layers."""
    rng = np.random.default_rng(10 * layers + bias)
    hidden = tuple(int(v) for v in rng.integers(2, 5, layers))
    for T in SCAN_TS:
        for outputs, weights in (("last", None), ("every", None), ("every", "binary"),
                                 ("masked", "positive")):
            spec = ElmanSpec(2, hidden, 2, "relu", bias, outputs)
            p = _params(spec, int(rng.integers(2**31)), scale=0.7)
            if weights is None:
                w, arg = (np.eye(T)[T - 1] if outputs == "last" else np.ones(T)), None
            else:
                w = (rng.random(T) < 0.5).astype(float) if weights == "binary" \
                    else rng.random(T) * 2
                w[rng.integers(T)] = 1.0
                arg = backend.to_device(w)
            want1 = host_vector(_kappa1_sequential(spec, p, T, w), spec)
            got = {}
            for L in range(T.bit_length()):
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(norms, "_scan_levels", lambda n, H, chains=2, L=L: L)
                    k1 = norms.kappa_device(spec, p, T, second_term=False, step_weights=arg)
                    k = norms.kappa_device(spec, p, T, second_term=True, step_weights=arg)
                got[L] = host_vector(k1, spec), host_vector(k, spec)
                assert rel_err(got[L][0], want1) <= 1e-13, (T, outputs, weights, L)
                assert rel_err(got[L][0], got[0][0]) <= 1e-13, (T, outputs, weights, L)
                assert rel_err(got[L][1], got[0][1]) <= 1e-13, (T, outputs, weights, L)
            default = host_vector(norms.kappa_device(spec, p, T, step_weights=arg), spec)
            assert rel_err(default, got[0][1]) <= 1e-13


def test_scanned_kappa_with_growing_squared_network():
    """Spectral radius of W~ well above 1 (states ~ rho^T), T = 40: the scan's powers
    W~^(2^l) <= W~^32 stay finite wherever the states are, and agree to round-off."""
    spec = ElmanSpec(1, (4, 3), 1, "relu", True, "every")
    p = _params(spec, 5, scale=1.0)
    p["layer1.W_rec"] = np.abs(p["layer1.W_rec"]) + 0.6
    rho = max(abs(np.linalg.eigvals(np.asarray(p[f"layer{i}.W_rec"]) ** 2)).max()
              for i in (1, 2))
    assert rho > 2
    T = 40
    want = host_vector(_kappa1_sequential(spec, p, T, np.ones(T)), spec)
    assert np.all(np.isfinite(want)) and want.max() > 1e12
    for L in range(T.bit_length()):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(norms, "_scan_levels", lambda n, H, chains=2, L=L: L)
            got = host_vector(norms.kappa_device(spec, p, T, second_term=False), spec)
        assert rel_err(got, want) <= 1e-13, L


# ----------------------------------------------------------------------------- Path-SGD steps
CASES = [(layers, bias, outputs) for layers in (1, 2, 3) for bias in (False, True)
         for outputs in ("last", "every", "masked")]


@pytest.mark.parametrize("second", [False, True], ids=["kappa1", "kappa1+kappa2"])
@pytest.mark.parametrize("layers,bias,outputs", CASES)
def test_one_step_is_p_minus_lr_g_over_kappa(xp, layers, bias, outputs, second):
    T, B, lr, eps = 5, 3, 0.07, 1e-30
    spec = ElmanSpec(2, (3, 2, 3)[:layers], 2, "relu", bias, outputs)
    model = _model(spec, seed=layers + 10 * bias)
    # masked: the mask scores only steps 2 and 4, so kappa must be that of those steps
    batch = _batch(spec, T, B, seed=1, mask_steps=(2, 4) if outputs == "masked" else None)
    grads = _grads(model, model.params, batch)
    steps = _scored_steps(batch) if outputs == "masked" else None
    if outputs == "masked":
        assert steps == [2, 4]
    kappa = reference_kappa(spec, _host(model.params), T, steps, second_term=second)
    p0, g = _host(model.params), _host(grads)
    opt = PathSGD(lr=lr, second_term=second, kappa_eps=eps)
    metrics = opt.step(model.params, grads, model=model, batch=batch)
    for name in p0:
        want = p0[name] - lr * g[name] / (kappa[name] + eps)
        assert type(model.params[name]) is xp.ndarray
        # kappa agrees to ~1e3 eps (above); the step adds a few roundings of p
        np.testing.assert_allclose(backend.to_host(model.params[name]), want, rtol=1e-12,
                                   atol=1e-12 * np.abs(p0[name]).max())
    flat = host_vector(kappa, spec)
    assert set(metrics) == {"kappa_min", "kappa_max"}
    assert all(type(v) is float for v in metrics.values())
    # min and max of the same kappa, computed in another order
    np.testing.assert_allclose([metrics["kappa_min"], metrics["kappa_max"]],
                               [flat.min(), flat.max()], rtol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("outputs", ["last", "every", "masked"])
@pytest.mark.parametrize("second", [False, True], ids=["kappa1", "kappa1+kappa2"])
def test_truncated_bptt_uses_each_chunks_length_and_scored_steps(outputs, second, k):
    T, B, lr = 7, 2, 0.05
    spec = ElmanSpec(2, (3, 2), 1, "relu", True, outputs)
    model = _model(spec, seed=4)
    batch = _batch(spec, T, B, seed=2)
    ref = _copy(model.params)
    # the reference: each scored chunk's gradient, kappa of the chunk (its length; for a mask,
    # its scored steps; h~_0 = 0 whatever state is carried), the formula; with a carried state no
    # step where kappa(W_rec) = 0 (its only paths start at the state: every entry when k = 1)
    updates = 0
    for chunk in objective.truncated_bptt(model, ref, batch, losses.mse, k):
        if not chunk.scored:
            continue
        Tc = chunk.batch.T
        steps = _scored_steps(chunk.batch) if outputs == "masked" else None
        kap = reference_kappa(spec, _host(ref), Tc, steps, second_term=second)
        for name, p in ref.items():
            step = lr * chunk.grads[name] / (kap[name] + 1e-30)
            if chunk.batch.state is not None and name.endswith(".W_rec"):
                step = np.where(kap[name] > 0, step, 0.0)
            p -= step
        updates += 1
    if outputs == "masked":
        mask = backend.to_host(batch.mask)
        chunks = sum(bool(np.any(mask[a:a + k])) for a in range(0, T, k))
    else:
        chunks = 1 if outputs == "last" else -(-T // k)
    assert updates == chunks
    opt = PathSGD(lr=lr, second_term=second)
    before = _copy(model.params)
    train_step(model, model.params, opt, batch, losses.mse, truncate=k)
    assert opt.steps == updates
    for name in ref:
        # same arithmetic up to the ~1e3 eps of kappa, over <= 7 updates
        np.testing.assert_allclose(model.params[name], ref[name], rtol=1e-11,
                                   atol=1e-11 * np.abs(ref[name]).max())
    if k == 1:   # 1-step chunks: no path of the chunk uses W_rec, so it never moves (without
        # the kappa > 0 factor the steps from the carried state would be g / 1e-30)
        for name in ref:
            moved = not np.array_equal(model.params[name], before[name])
            assert moved == (not name.endswith(".W_rec")), name


def test_float32_parameters_get_the_float64_kappa_step():
    T, B, lr = 6, 4, 0.05
    spec = ElmanSpec(2, (4,), 1, "relu", True, "every")
    model = _model(spec, seed=5, dtype="float32")
    batch = _batch(spec, T, B, seed=5, dtype="float32")
    grads = _grads(model, model.params, batch)
    p0, g = _host(model.params), _host(grads)
    kappa = norms.kappa(spec, p0, T, second_term=False)
    PathSGD(lr=lr).step(model.params, grads, model=model, batch=batch)
    for name in p0:
        assert model.params[name].dtype == np.float32
        want = p0[name] - lr * g[name] / (kappa[name] + 1e-30)
        # one float32 rounding of the result (and kappa from the float32 weights, exact in f64)
        np.testing.assert_allclose(model.params[name], want, rtol=2e-7,
                                   atol=2e-7 * np.abs(want).max())


def _reference_adam(p0, directions, lr, b1, b2, eps):
    """Kingma & Ba (2015), Algorithm 1, as printed, over a list of direction dicts."""
    p = _copy(p0)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for t, d in enumerate(directions, start=1):
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * d[k]
            v[k] = b2 * v[k] + (1 - b2) * d[k] ** 2
            p[k] = p[k] - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v[k] / (1 - b2 ** t)) + eps)
    return p


@pytest.mark.parametrize("second", [False, True], ids=["kappa1", "kappa1+kappa2"])
def test_path_adam_is_adam_on_the_path_normalised_direction(xp, second):
    T, B, lr, eps = 5, 3, 0.01, 1e-8
    spec = ElmanSpec(2, (3, 2), 2, "relu", True, "masked")
    model = _model(spec, seed=7)
    opt = PathAdam(lr=lr, eps=eps, second_term=second)
    p0, directions = _host(model.params), []
    for step in range(3):
        batch = _batch(spec, T, B, seed=20 + step)
        grads = _grads(model, model.params, batch)
        kappa = reference_kappa(spec, _host(model.params), T, _scored_steps(batch), second)
        directions.append({k: backend.to_host(grads[k]) / (kappa[k] + 1e-30) for k in kappa})
        opt.step(model.params, grads, model=model, batch=batch)
    want = _reference_adam(p0, directions, lr, 0.9, 0.999, eps)
    assert set(opt.slots) == {"m", "v"}
    for name in want:
        # Adam's eps is folded into its bias correction in rnnlab (a reordering), kappa to 1e3 eps
        np.testing.assert_allclose(backend.to_host(model.params[name]), want[name], rtol=1e-10,
                                   atol=1e-12)


def test_path_adam_first_step_is_adams_first_step():
    # m^ / sqrt(v^) = d / |d| = sign(g) at step 1 whatever positive kappa divides g: the path
    # normalisation cancels (why Path-Adam is not rescaling-invariant; tests/test_invariance.py)
    T, B, lr = 5, 3, 0.01
    spec = ElmanSpec(2, (4, 3), 1, "relu", True, "last")
    model = _model(spec, seed=8)
    batch = _batch(spec, T, B, seed=8)
    grads = _grads(model, model.params, batch)
    p_adam, p_path = _copy(model.params), _copy(model.params)
    Adam(lr=lr, eps=1e-300).step(p_adam, _copy(grads))
    PathAdam(lr=lr, eps=1e-300).step(p_path, _copy(grads), model=model, batch=batch)
    for name in p_adam:
        # both are p - lr sign(g) up to a rounding of lr * d / |d|
        np.testing.assert_allclose(p_path[name], p_adam[name], rtol=1e-15, atol=4 * EPS * lr)
        assert not np.allclose(p_path[name], model.params[name])


# ----------------------------------------------------------------------------- bad input
@dataclasses.dataclass(frozen=True)
class _LSTMSpec:
    n_in: int = 2
    hidden: tuple = (3,)
    n_out: int = 1
    outputs: str = "last"
    kind = "lstm"


class _FakeLSTM:
    spec = _LSTMSpec()


@pytest.mark.parametrize("Opt", [PathSGD, PathAdam])
def test_non_relu_and_non_elman_models_are_refused_at_the_first_step(Opt):
    spec = ElmanSpec(2, (3,), 1, "tanh", True, "last")
    model = _model(spec, seed=9)
    batch = _batch(spec, 4, 2, seed=9)
    grads = _grads(model, model.params, batch)
    before = _copy(model.params)
    with pytest.raises(ConfigError, match=rf"optimizer '{Opt.name}'.*needs ReLU.*got activation "
                                          r"'tanh'"):
        Opt().step(model.params, grads, model=model, batch=batch)
    with pytest.raises(ConfigError, match=r"stacked Elman RNN \('elman'\); got model 'lstm' "
                                          rf"\(in optimizer '{Opt.name}'"):
        Opt().step(model.params, grads, model=_FakeLSTM(), batch=batch)
    with pytest.raises(ConfigError, match=r"neither a model nor a model spec"):
        Opt().step(model.params, grads, model=object(), batch=batch)
    with pytest.raises(ConfigError, match=r"needs \['batch', 'model'\] passed to step"):
        Opt().step(model.params, grads)
    for name in before:   # refused before anything moved
        np.testing.assert_array_equal(model.params[name], before[name])


@pytest.mark.parametrize("Opt", [PathSGD, PathAdam])
@pytest.mark.parametrize("options,message", [
    ({"lr": 0}, r"^lr must be a finite number > 0; got 0.0$"),
    ({"lr": "fast"}, r"^lr must be a finite number > 0; got 'fast'$"),
    ({"kappa_eps": 0.0}, r"^kappa_eps must be a finite number > 0; got 0.0$"),
    ({"kappa_eps": -1e-12}, r"^kappa_eps must be a finite number > 0"),
    ({"kappa_eps": float("inf")}, r"^kappa_eps must be a finite number > 0; got inf$"),
    ({"second_term": "yes"}, r"^second_term must be true or false; got 'yes'$"),
    ({"momentum": 0.9}, r"has no option 'momentum'; its options: lr, .*second_term, kappa_eps$"),
])
def test_bad_options_are_refused(Opt, options, message):
    with pytest.raises(ConfigError, match=message):
        Opt(**options)


def test_options_and_names():
    assert PathSGD.name == "path-sgd" and PathAdam.name == "path-adam"
    assert PathSGD.needs == PathAdam.needs == frozenset({"model", "batch"})
    assert PathSGD().hyperparameters == {"lr": 1e-8, "lr_units": "path", "second_term": False,
                                         "kappa_eps": 1e-30}
    assert PathAdam().hyperparameters == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                          "second_term": False, "kappa_eps": 1e-30}
    assert repr(PathSGD(lr=0.1)) == ("PathSGD(lr=0.1, lr_units='path', second_term=False, "
                                     "kappa_eps=1e-30)")


def test_a_parameter_on_no_path_takes_no_step():
    # T = 1: W_rec is on no path, kappa = 0 and g = 0 there; kappa_eps turns 0 / 0 into 0
    spec = ElmanSpec(2, (3,), 1, "relu", True, "every")
    model = _model(spec, seed=11)
    batch = _batch(spec, 1, 2, seed=11)
    grads = _grads(model, model.params, batch)
    before = _copy(model.params)
    metrics = PathSGD(lr=0.1).step(model.params, grads, model=model, batch=batch)
    assert metrics["kappa_min"] == 0.0
    np.testing.assert_array_equal(model.params["layer1.W_rec"], before["layer1.W_rec"])
    assert all(np.all(np.isfinite(p)) for p in model.params.values())


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("Opt", [PathSGD, PathAdam])
def test_checkpoint_round_trip_continues_bit_identically(tmp_path, Opt):
    spec = ElmanSpec(2, (3, 3), 2, "relu", True, "masked")
    model = _model(spec, seed=12)
    opt = Opt(lr=0.01, second_term=True)
    p = _copy(model.params)
    for step in range(2):
        batch = _batch(spec, 5, 3, seed=30 + step)
        opt.step(p, _grads(model, p, batch), model=model, batch=batch)
    checkpoint.save(str(tmp_path / "c.npz"), {"optimizer": opt.state_dict()},
                    {"step": opt.steps, "config": {}})
    loaded, _ = checkpoint.load(str(tmp_path / "c.npz"))
    again = Opt(lr=0.01, second_term=True)
    again.load_state_dict(loaded["optimizer"])
    assert again.steps == 2
    q = _copy(p)
    for step in range(3):
        batch = _batch(spec, 5, 3, seed=40 + step)
        m1 = opt.step(p, _grads(model, p, batch), model=model, batch=batch)
        m2 = again.step(q, _grads(model, q, batch), model=model, batch=batch)
        assert m1 == m2
    for name in p:
        np.testing.assert_array_equal(p[name], q[name])
    for slot in opt.slots:
        for name in opt.slots[slot]:
            np.testing.assert_array_equal(opt.slots[slot][name], again.slots[slot][name])
    assert set(opt.slots) == (set() if Opt is PathSGD else {"m", "v"})


# ----------------------------------------------------------------------------- through run()
@pytest.fixture
def registered():
    """Path-SGD and Path-Adam under their registry names for the test (whether or not
    ``rnnlab/optim/__init__.py`` registers them already)."""
    with OPTIMIZERS.temporarily("path-sgd", PathSGD), \
            OPTIMIZERS.temporarily("path-adam", PathAdam):
        yield


def _config(optimizer, steps, **train):
    return RunConfig.from_dict({
        "task": {"name": "adding", "T": 12},
        "model": {"name": "elman", "hidden": [6, 5], "activation": "relu"},
        "optimizer": optimizer,
        "train": {"batch": 8, "steps": steps, "eval_every": 3, "eval_size": 16, "clip": 1.0,
                  "dtype": "float64", **train}})


@pytest.mark.parametrize("name", ["path-sgd", "path-adam"])
def test_trains_through_run_with_truncation_and_reports_kappa(registered, name):
    result = run(_config({"name": name, "lr": 1e-3, "second_term": True}, 6, truncate=5),
                 MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 6
    train = [r for r in result.history if r["kind"] == "train"]
    assert train and all(set(r["optimizer"]) == {"kappa_min", "kappa_max"} for r in train)
    assert all(0 <= r["optimizer"]["kappa_min"] <= r["optimizer"]["kappa_max"] for r in train)


@pytest.mark.parametrize("opt", [{"name": "path-adam", "lr": 1e-3},
                                 # lr_units="sgd": the scale fixed at step 1 is checkpointed
                                 {"name": "path-sgd", "lr": 1e-2, "lr_units": "sgd"}],
                         ids=["path-adam", "path-sgd-sgd-units"])
def test_a_resumed_run_is_bit_identical(registered, tmp_path, opt):
    straight = run(_config(opt, 6), MemorySink(), progress=False)
    sink = FileSink(str(tmp_path / "run"))
    run(_config(opt, 3), sink, progress=False)
    resumed = run(_config(opt, 3).with_overrides({"train.steps": 6}), sink, resume=True,
                  progress=False)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


def test_run_refuses_a_tanh_model_with_one_clear_error(registered):
    config = RunConfig.from_dict({
        "task": {"name": "adding", "T": 5}, "model": {"name": "elman", "hidden": 4,
                                                      "activation": "tanh"},
        "optimizer": {"name": "path-sgd"},
        "train": {"batch": 4, "steps": 2, "eval_every": 2, "eval_size": 8}})
    with pytest.raises(ConfigError, match=r"optimizer 'path-sgd'.*needs ReLU.*'tanh'"):
        run(config, MemorySink(), progress=False)


# ----------------------------------------------------------------------------- lr_units="sgd"
def test_sgd_units_give_the_first_step_sgds_norm_and_keep_path_sgds_direction(xp):
    """lr_units="sgd": step = lr * c * g / kappa with c = ||g|| / ||g / kappa|| fixed at the
    first update; so the first step's norm is SGD's (lr ||g||), its direction Path-SGD's, and
    the second step uses the same c (not recomputed from the new gradient)."""
    T, B, lr = 5, 3, 0.07
    spec = ElmanSpec(2, (3, 2), 2, "relu", True, "last")
    model = _model(spec, seed=1)
    batch = _batch(spec, T, B, seed=2)
    path, scaled = PathSGD(lr=lr), PathSGD(lr=lr, lr_units="sgd")
    p0 = _host(model.params)
    grads = _grads(model, model.params, batch)
    g = _host(grads)
    assert all(np.abs(v).max() > 0 for v in g.values())  # every unit alive: a real test of c
    plain = {k: backend.to_device(v.copy()) for k, v in p0.items()}
    path.step(plain, {k: backend.to_device(v.copy()) for k, v in g.items()}, model=model,
              batch=batch)
    metrics = scaled.step(model.params, grads, model=model, batch=batch)
    step = host_vector({k: p0[k] - backend.to_host(model.params[k]) for k in p0}, spec)
    path_step = host_vector({k: p0[k] - backend.to_host(plain[k]) for k in p0}, spec)
    g_norm = np.linalg.norm(host_vector(g, spec))
    np.testing.assert_allclose(np.linalg.norm(step), lr * g_norm, rtol=1e-10)
    c = metrics["lr_scale"]
    np.testing.assert_allclose(step, c * path_step, rtol=1e-9, atol=1e-15)
    assert c == scaled.state["lr_scale"] and c != 1.0
    # a second update on another batch reuses c
    grads2 = _grads(model, model.params, _batch(spec, T, B, seed=3))
    assert scaled.step(model.params, grads2, model=model,
                       batch=_batch(spec, T, B, seed=3))["lr_scale"] == c
