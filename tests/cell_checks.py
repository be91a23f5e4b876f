"""Checks shared by the recurrent-cell test files (tests/test_mlstm.py, test_nru.py,
test_janet.py, test_elman_layernorm.py; the pattern comes from test_lstm.py and test_gru.py).

Each ``check_*`` function asserts one property of a model that has ``forward``, ``backward``,
``rop`` and ``hidden_gradients`` (rnnlab.models), in float64 on the active backend. What varies
between cells comes in as arguments: the model (build it with :func:`noisy_model`), the data
(:func:`make_data`, with a state maker for the cell's state structure), and, where a check needs
it, a model-specific piece such as the 1-layer "upper" model of
:func:`check_lower_hidden_gradients`. Model-specific tests (naive forward loops, hand-computed
steps, inits, option checks, paper facts) stay in the cell's own file.

Shapes: T steps, B batch, n_in inputs, H hidden (per layer), n_out outputs; time-major,
``x : (T, B, n_in)``. A state is a list with one entry per layer: a (B, H) array (Elman, GRU,
JANET) or a tuple whose first element is h (B, H): (h, c) for the LSTM and mLSTM, (h, m) for the
NRU. ``cache.h[l]`` is layer l's (T + 1, B, H) trajectory h_0..h_T and ``cache.final_state`` the
state after step T.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import pytest

from rnnlab import ConfigError, backend, gradcheck, losses, objective
from rnnlab.config import RunConfig
from rnnlab.models import make_model
from rnnlab.objective import Batch, gauss_newton_product
from rnnlab.params import flatten
from rnnlab.train import MemorySink, run

# gradcheck: float64 central differences resolve ~1e-9; a wrong term gives >= 1e-3
GRAD_TOL = 1e-6
EPS = 1e-5
# R-op, J^T H J and dLoss/dh by central differences: truncation ~eps^2 and round-off ~1e-11
# relative to entries of size ~1; a missing term is O(1e-2)
FD_RTOL = 1e-7
# forward against the naive loop: the same float64 arithmetic in a different order
FWD_RTOL = 1e-12
# adjoint test: two sums of the same products in different orders
DOT_RTOL = 1e-12
# hidden_gradients against d_state of a chunked backward, and a chunked forward against the
# whole one: the same products, summed in the same order except for the split, so agreement to
# rounding
SPLIT_RTOL = 1e-12
# the top layer's dL/dh_T against dy_T @ W_out: one product computed the same way twice, so
# agreement to a few ulps
LAST_STEP_RTOL = 1e-14
# truncated BPTT's chunked forward against one pass: per step the same arithmetic on the same
# numbers; 1e-14 leaves room for a GEMM blocked differently for a shorter sequence
CHUNK_TOL = 1e-14
LOSS = {"mse": losses.mse, "xent": losses.softmax_cross_entropy}


class Data(NamedTuple):
    """A batch drawn by :func:`make_data`, and the generator that drew it (checks draw their
    random directions from it, so a test's numbers depend only on its seeds)."""
    x: object        # (T, B, n_in)
    targets: object  # (B, n_out) or (T, B, n_out) floats (mse); (B,) or (T, B) ints (xent)
    mask: object     # (T, B) with the last step on, for outputs "masked"; else None
    state: object    # one entry per layer (see the module docstring), or None
    rng: np.random.Generator


# ----------------------------------------------------------------------------- building blocks
def dev(a):
    """``a`` as a float64 array on the active backend."""
    return backend.to_device(np.asarray(a, dtype=np.float64))


def host(a):
    """``a`` as a NumPy array."""
    return backend.to_host(a)


def parts(entry) -> tuple:
    """The arrays of one layer's state entry: ``(h,)`` for an array, the tuple itself else."""
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def h_part(entry):
    """The h of one layer's state entry (the entry itself, or its first element)."""
    return parts(entry)[0]


def noisy_model(kind, hidden, outputs, *, n_in=2, n_out=3, seed=0, noise=0.4, **options):
    """A float64 model built by name (``make_model(kind, ...)``), its weights moved off the
    initial point by ``noise`` standard normals so no gate or unit is symmetric and no
    parameter sits at an exact zero of the initialisation."""
    model = make_model(kind, n_in, n_out, outputs, seed=seed, dtype="float64", hidden=hidden,
                       **options)
    rng = np.random.default_rng(seed + 17)
    model.params = {k: dev(host(p) + noise * rng.standard_normal(p.shape))
                    for k, p in model.params.items()}
    return model


def array_state(rng, spec, B) -> list:
    """One (B, H) array per layer, entries N(0, 0.8^2): the Elman, GRU and JANET state."""
    return [dev(0.8 * rng.standard_normal((B, H))) for H in spec.hidden]


def hc_state(rng, spec, B) -> list:
    """One (h, c) pair of (B, H) arrays per layer, h ~ N(0, 1) and c ~ N(0, 0.5^2): the LSTM
    and mLSTM state."""
    return [(dev(rng.standard_normal((B, H))), dev(0.5 * rng.standard_normal((B, H))))
            for H in spec.hidden]


def make_data(model, T, B, seed, loss_name="mse", state: Callable | None = None) -> Data:
    """Inputs N(0, 1), targets for ``loss_name`` (N(0, 1) for "mse", uniform classes for
    "xent"), a mask with ~60% of the steps on and the last step always on (outputs "masked"),
    and ``state(rng, spec, B)`` (e.g. :func:`array_state`, :func:`hc_state`) or None, drawn
    in that order from ``default_rng(seed)``."""
    s = model.spec
    rng = np.random.default_rng(seed)
    x = dev(rng.standard_normal((T, B, s.n_in)))
    lead = (B,) if s.outputs == "last" else (T, B)
    if loss_name == "mse":
        targets = dev(rng.standard_normal(lead + (s.n_out,)))
    else:
        targets = backend.to_device(rng.integers(0, s.n_out, size=lead))
    mask = None
    if s.outputs == "masked":
        m = (rng.random((T, B)) < 0.6).astype(np.float64)
        m[-1] = 1.0
        mask = dev(m)
    return Data(x, targets, mask, None if state is None else state(rng, s, B), rng)


def moved(params, v, step):
    """params + step * v, entry by entry (a new mapping)."""
    return {k: params[k] + step * v[k] for k in params}


def central_jacobian(fn, params) -> np.ndarray:
    """The Jacobian of ``fn`` (params -> host array) by central differences with step EPS: one
    column per entry of ``flatten(params)``."""
    vec, unflatten = flatten(params)
    point = host(vec)
    cols = []
    for j in range(point.size):
        step = np.zeros_like(point)
        step[j] = EPS
        cols.append((fn(unflatten(dev(point + step))) - fn(unflatten(dev(point - step)))).ravel()
                    / (2 * EPS))
    return np.stack(cols, axis=1)


def output_hessian(loss, y, targets, mask) -> np.ndarray:
    """The Hessian of ``loss`` in the flattened outputs ``y``, by central differences of its
    gradient with step EPS."""
    y0 = host(y).ravel()
    cols = []
    for i in range(y0.size):
        step = np.zeros(y0.size)
        step[i] = EPS
        gp = loss.value_and_grad(dev((y0 + step).reshape(y.shape)), targets, mask)[1]
        gm = loss.value_and_grad(dev((y0 - step).reshape(y.shape)), targets, mask)[1]
        cols.append(host(gp - gm).ravel() / (2 * EPS))
    return np.stack(cols, axis=1)


def _random_like(entry, rng):
    """Standard normals with the structure and shapes of one layer's state entry."""
    if isinstance(entry, (tuple, list)):
        return tuple(dev(rng.standard_normal(a.shape)) for a in entry)
    return dev(rng.standard_normal(entry.shape))


def _named_state(state, names) -> dict:
    """A state as a flat mapping ``{f"{name}{layer}": array}`` (names: one letter per part)."""
    return {f"{name}{i}": a for i, entry in enumerate(state)
            for name, a in zip(names, parts(entry), strict=True)}


def _state_from_names(flat, like, names) -> list:
    """The inverse of :func:`_named_state`, with the structure of ``like``."""
    return [tuple(flat[f"{name}{i}"] for name in names) if isinstance(entry, (tuple, list))
            else flat[f"{names[0]}{i}"] for i, entry in enumerate(like)]


def _recorded_backward(model, dy, cache):
    """``model._backward(..., record=...)``: (grads, d_state, record). The cells either fill a
    list of one None per layer or extend the list they get; the last ``layers`` entries are
    the record either way."""
    layers = len(model.spec.hidden)
    record = [None] * layers
    grads, d_state = model._backward(model.params, dy, cache, record=record)
    return grads, d_state, record[-layers:]


def _later_d_state(model, x, state, dy, t):
    """d_state of the backward of chunk 2 (steps t+1..T) run from chunk 1's final state, for
    L = <dy, y> (outputs "last": dy belongs to the last step, in chunk 2; else dy[t:])."""
    _, first = model.forward(model.params, x[:t], state)
    _, second = model.forward(model.params, x[t:], first.final_state)
    rest = dy if model.spec.outputs == "last" else dy[t:]
    return model.backward(model.params, rest, second)[1]


# ----------------------------------------------------------------------------- forward
def check_forward(model, x, state, want, want_finals=None):
    """forward(params, x, state) returns a float64 array of the active backend equal to
    ``want`` (an independent naive loop's output) and, if given, a final state equal to
    ``want_finals`` part by part, to FWD_RTOL: the same float64 arithmetic in a different order.
    Returns ``(y, cache)`` for model-specific checks of the cache."""
    y, cache = model.forward(model.params, x, state)
    assert isinstance(y, backend.get_xp().ndarray) and y.dtype == np.float64
    np.testing.assert_allclose(host(y), want, rtol=FWD_RTOL, atol=FWD_RTOL)
    if want_finals is not None:
        for got, expected in zip(cache.final_state, want_finals, strict=True):
            for a, b in zip(parts(got), parts(expected), strict=True):
                np.testing.assert_allclose(host(a), b, rtol=FWD_RTOL, atol=FWD_RTOL)
    return y, cache


def check_chunks_equal_one_pass(model, x, state, split=4):
    """Truncated BPTT's forward: steps 1..split and split+1..T, the state carried from the first
    chunk's ``final_state``, give one pass's outputs (outputs "every") to CHUNK_TOL."""
    assert model.spec.outputs == "every"
    y, _ = model.forward(model.params, x, state)
    y1, c1 = model.forward(model.params, x[:split], state)
    y2, _ = model.forward(model.params, x[split:], c1.final_state)
    np.testing.assert_allclose(np.concatenate([host(y1), host(y2)]), host(y), rtol=CHUNK_TOL,
                               atol=CHUNK_TOL)


# ----------------------------------------------------------------------------- gradients
def check_param_gradients(model, data: Data, loss_name):
    """objective.loss_and_grads' parameter gradients equal central differences of
    objective.loss_value to GRAD_TOL (float64 resolves ~1e-9; a wrong term gives >= 1e-3), with
    no element skipped as a ReLU kink."""
    x, targets, mask, state, _ = data
    loss = LOSS[loss_name]
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets, loss, mask, state)
    report = gradcheck.check_gradients(
        lambda p: objective.loss_value(model, p, x, targets, loss, mask, state),
        model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)
    assert sum(report.kinks.values()) == 0, str(report)


def check_final_state_gradients(model, data: Data, names="h"):
    """A loss that continues past the chunk: L = mse(y) + sum over layers and state parts of
    <a, s_T> with random a. backward(d_final_state=[a per layer]) gives dL/dparams and, as
    d_state, dL/d(initial state); both equal central differences to GRAD_TOL with no kinks.
    ``names``: one letter per part of a state entry, for the report ("h" for array states,
    "hc" for (h, c), "hm" for (h, m)). Needs ``data.state``."""
    x, targets, mask, state, rng = data
    weights = [_random_like(entry, rng) for entry in state]
    xp = backend.get_xp()

    def total(params, st):
        y, cache = model.forward(params, x, st)
        value, _ = losses.mse.value_and_grad(y, targets, mask)
        extra = sum(float(xp.vdot(a, s)) for w, f in zip(weights, cache.final_state, strict=True)
                    for a, s in zip(parts(w), parts(f), strict=True))
        return float(value) + extra

    y, cache = model.forward(model.params, x, state)
    _, dy = losses.mse.value_and_grad(y, targets, mask)
    grads, d_state = model.backward(model.params, dy, cache, d_final_state=weights)
    report = gradcheck.check_gradients(lambda p: total(p, state), model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)
    assert sum(report.kinks.values()) == 0, str(report)
    report = gradcheck.check_gradients(
        lambda s: total(model.params, _state_from_names(s, state, names)),
        _named_state(state, names), _named_state(d_state, names))
    assert report.max_error < GRAD_TOL, str(report)
    assert sum(report.kinks.values()) == 0, str(report)


def check_hidden_gradients_split(model, data: Data):
    """hidden_gradients returns per layer a (T, B, H) dL/dh_t for L = <dy, y> (dy random).
    Split after each step t < T and run chunk 2 from chunk 1's final state (its outputs equal
    the whole pass's to SPLIT_RTOL): the top layer's dL/dh_t is the h part of chunk 2's d_state
    (checked by central differences in :func:`check_final_state_gradients`) plus, for outputs
    other than "last", the readout's dy_t @ W_out; it must equal entry t - 1 to SPLIT_RTOL.
    At t = T the top layer gets only dy_T @ W_out (LAST_STEP_RTOL). Recording changes nothing:
    ``_backward(record=...)`` gives backward()'s gradients and d_state bit for bit, and
    hidden_gradients' arrays. Returns ``(record, cache, dy)`` for model-specific follow-ups."""
    x, _, _, state, rng = data
    T, B = x.shape[:2]
    last_only = model.spec.outputs == "last"
    y, cache = model.forward(model.params, x, state)
    dy = dev(rng.standard_normal(y.shape))
    record = model.hidden_gradients(model.params, dy, cache)
    assert [tuple(r.shape) for r in record] == [(T, B, H) for H in model.spec.hidden]
    grads, d_state = model.backward(model.params, dy, cache)
    again, d_again, recorded = _recorded_backward(model, dy, cache)
    assert set(again) == set(grads)
    for k in grads:
        np.testing.assert_array_equal(grads[k], again[k])
    for entry, entry_again in zip(d_state, d_again, strict=True):
        for a, b in zip(parts(entry), parts(entry_again), strict=True):
            np.testing.assert_array_equal(a, b)
    for g, r in zip(record, recorded, strict=True):
        np.testing.assert_array_equal(g, r)
    w_out = host(model.params["out.W"])
    dy_host = host(dy)
    for t in range(1, T):
        _, first = model.forward(model.params, x[:t], state)
        y2, _ = model.forward(model.params, x[t:], first.final_state)
        np.testing.assert_allclose(host(y2), host(y if last_only else y[t:]), rtol=SPLIT_RTOL,
                                   atol=SPLIT_RTOL)
        want = host(h_part(_later_d_state(model, x, state, dy, t)[-1]))
        if not last_only:
            want = want + dy_host[t - 1] @ w_out
        np.testing.assert_allclose(host(record[-1][t - 1]), want, rtol=SPLIT_RTOL,
                                   atol=SPLIT_RTOL * np.abs(want).max())
    last = dy_host if last_only else dy_host[T - 1]
    np.testing.assert_allclose(host(record[-1][T - 1]), last @ w_out, rtol=LAST_STEP_RTOL)
    return record, cache, dy


def check_lower_hidden_gradients(model, upper, data: Data):
    """2 layers, L = <dy, y> (dy random). The lower layer's dL/dh_t^1 is the sum of two paths:
    * through layer 2's input at step t with h^1 at the other steps held fixed: the central
      difference gradient of L with respect to the input of ``upper`` (layer 2 and the
      readout as a 1-layer model, checked to reproduce L), fed h_1^1..h_T^1 as data, and
    * through layer 1's own later steps with layer 2's state at t held fixed: the h part of
      d_state[0] of a backward over steps t+1..T (zero at t = T);
    hidden_gradients must report it to FD_RTOL; the top layer's dL/dh_T is dy_T @ W_out."""
    x, _, _, state, rng = data
    T = x.shape[0]
    assert len(model.spec.hidden) == 2
    y, cache = model.forward(model.params, x, state)
    dy = dev(rng.standard_normal(y.shape))
    got = [host(g) for g in model.hidden_gradients(model.params, dy, cache)]
    dy_host = host(dy)
    last = dy_host if model.spec.outputs == "last" else dy_host[-1]
    np.testing.assert_allclose(got[1][T - 1], last @ host(model.params["out.W"]),
                               rtol=LAST_STEP_RTOL)
    xp = backend.get_xp()

    def loss(inputs):
        return float(xp.vdot(dy, upper.forward(upper.params, inputs["h"], [state[1]])[0]))

    h1 = cache.h[0][1:].copy()
    assert loss({"h": h1}) == pytest.approx(float(xp.vdot(dy, y)), rel=1e-14)
    want = central_jacobian(lambda p: np.array([loss(p)]), {"h": h1}).reshape(h1.shape)
    for t in range(1, T):
        want[t - 1] += host(h_part(_later_d_state(model, x, state, dy, t)[0]))
    # central differences of L ~ 1 carry round-off ~1e-11 on every entry, however small the
    # entry (the gradient can vanish towards t = 1): the tolerance is relative to the largest
    assert np.abs(want).max() > 0.1  # a gradient that is there to get wrong
    np.testing.assert_allclose(got[0], want, rtol=FD_RTOL, atol=FD_RTOL * np.abs(want).max())


# ----------------------------------------------------------------------------- R-op
def check_rop_finite_differences(model, data: Data, *, unit_direction=False, more=None):
    """rop(params, v, cache) for a random direction v equals central differences of the forward
    along v, for the outputs and every layer's h_0..h_T (R h_0 = 0, the state being data), to
    FD_RTOL relative to max(1, the largest entry). ``unit_direction``: scale v to norm 1
    (the truncation error grows with the cube of the step eps ||v||). ``more(model, v, cache)``:
    further R-op trajectories, a mapping from the cache attribute holding the forward
    trajectory (e.g. "m") to the list of R-op arrays per layer."""
    x, _, _, state, rng = data
    v = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
    if unit_direction:
        norm = math.sqrt(sum(float((a * a).sum()) for a in v.values()))
        v = {k: a / norm for k, a in v.items()}
    v = {k: dev(a) for k, a in v.items()}
    y, cache = model.forward(model.params, x, state)
    r_y, r_h = model.rop(model.params, v, cache)
    assert r_y.shape == y.shape and isinstance(r_y, backend.get_xp().ndarray)
    y_p, c_p = model.forward(moved(model.params, v, EPS), x, state)
    y_m, c_m = model.forward(moved(model.params, v, -EPS), x, state)
    fd = host(y_p - y_m) / (2 * EPS)
    np.testing.assert_allclose(host(r_y), fd, rtol=FD_RTOL,
                               atol=FD_RTOL * max(1.0, np.abs(fd).max()))
    trajectories = {"h": r_h, **({} if more is None else more(model, v, cache))}
    for name, r_list in trajectories.items():
        for r, plus, minus in zip(r_list, getattr(c_p, name), getattr(c_m, name), strict=True):
            fd_r = host(plus - minus) / (2 * EPS)
            assert r.shape == plus.shape, name
            np.testing.assert_array_equal(host(r[0]), 0.0)
            np.testing.assert_allclose(host(r), fd_r, rtol=FD_RTOL,
                                       atol=FD_RTOL * max(1.0, np.abs(fd_r).max()))


def check_rop_adjoint(model, data: Data):
    """The dot test: <J v, u> = <v, J^T u> for random u and v, with J v from rop and J^T u from
    backward, to DOT_RTOL relative to sum |R y * u| (two sums of the same products in
    different orders); catches transposition and accumulation bugs in either."""
    x, _, _, state, rng = data
    y, cache = model.forward(model.params, x, state)
    u = dev(rng.standard_normal(y.shape))
    v = {k: dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    r_y, _ = model.rop(model.params, v, cache)
    jt_u, _ = model.backward(model.params, u, cache)
    xp = backend.get_xp()
    lhs = float(xp.vdot(r_y, u))
    rhs = sum(float(xp.vdot(v[k], jt_u[k])) for k in v)
    assert abs(lhs - rhs) <= DOT_RTOL * float(xp.abs(r_y * u).sum()), (lhs, rhs)


# ----------------------------------------------------------------------------- Gauss-Newton
def check_gauss_newton(model, data: Data, loss_name, structural=0.7):
    """gauss_newton_product's G v = J^T H J v, and with structural=s (form "hidden")
    G v + s J_h^T J_h v, where J_h is the Jacobian of every layer's h_1..h_T; J, J_h and the
    output Hessian H are formed from central differences, so the products agree to FD_RTOL
    relative to their largest entry. The structural term must not be negligible (> 1% of the
    largest entry of G v), or its check would prove nothing."""
    x, targets, mask, state, rng = data
    batch = Batch(x, targets, mask, state)
    loss = LOSS[loss_name]
    jac = central_jacobian(lambda p: host(model.forward(p, x, state)[0]), model.params)
    jac_h = central_jacobian(lambda p: np.concatenate(
        [host(h[1:]).ravel() for h in model.forward(p, x, state)[1].h]), model.params)
    y, _ = model.forward(model.params, x, state)
    formed = jac.T @ output_hessian(loss, y, targets, mask) @ jac
    vec, unflatten = flatten(model.params)
    v_host = rng.standard_normal(int(vec.size))
    v = unflatten(dev(v_host))
    got = host(flatten(gauss_newton_product(model, model.params, batch, v, loss))[0])
    want = formed @ v_host
    np.testing.assert_allclose(got, want, rtol=FD_RTOL, atol=FD_RTOL * np.abs(want).max())
    got_s = host(flatten(gauss_newton_product(
        model, model.params, batch, v, loss, structural=structural,
        structural_form="hidden"))[0])
    want_s = want + structural * (jac_h.T @ (jac_h @ v_host))
    np.testing.assert_allclose(got_s, want_s, rtol=FD_RTOL,
                               atol=FD_RTOL * np.abs(want_s).max())
    assert np.abs(want_s - want).max() > 1e-2 * np.abs(want).max()  # the term is not negligible


def check_refuses_matching_form(model, data: Data, match="use structural_form 'hidden'"):
    """Structural damping in Martens & Sutskever's "matching" form is defined for the Elman RNN
    only: gauss_newton_product refuses it with a ConfigError matching ``match``."""
    x, targets, mask, state, rng = data
    v = {k: dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    with pytest.raises(ConfigError, match=match):
        gauss_newton_product(model, model.params, Batch(x, targets, mask, state), v,
                             losses.mse, structural=0.1, structural_form="matching")


# ----------------------------------------------------------------------------- training
def run_config(model: dict, optimizer: dict, steps, *, clip=None, T=8, batch=4, eval_size=8,
               eval_every=2) -> RunConfig:
    """A float64 run on the adding problem of length T with ``model`` and ``optimizer``
    (``{"name": ..., **options}``); ``clip`` None keeps the trainer's default."""
    train = {"steps": steps, "batch": batch, "eval_size": eval_size, "test_size": 0,
             "eval_every": eval_every, "dtype": "float64"}
    if clip is not None:
        train["clip"] = clip
    return RunConfig.from_dict({"task": {"name": "adding", "T": T}, "model": model,
                                "optimizer": optimizer, "train": train})


def check_trains_through_run(config: RunConfig, *, n_evals=None, falls_below=None):
    """rnnlab.train.run finishes all of ``config``'s steps with every held-out MSE finite (at
    least one evaluation; exactly ``n_evals`` if given); with ``falls_below`` the last
    evaluation is below that fraction of the first. Returns the run's result."""
    steps = config.train["steps"]
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished" and result.step == steps
    evals = [r["mse"] for r in result.history if r["kind"] == "eval"]
    assert evals and all(np.isfinite(evals)), evals
    if n_evals is not None:
        assert len(evals) == n_evals, evals
    if falls_below is not None:
        assert evals[-1] < falls_below * evals[0], evals
    return result
