"""The LSTM (rnnlab.models.lstm) in float64: forward against an independent naive loop, BPTT
against central differences (parameters, initial state, d_final_state), the R-op against finite
differences of the forward and the adjoint test, Gauss-Newton products against J^T H J formed
from central differences (with and without structural damping on h), the initialisations, and
training through ``run()`` with Adam and Hessian-free, resumed bit-identically. Also:
``hidden_gradients`` against the state gradient of a split sequence and against dLoss/dh_T
derived by hand, the feature-major step functions against the batch-major reference steps, the
weight gradients summed over chunks of steps against one chunk, and the declared arrays per
unit against the traced peak memory. The generic checks (``kind``) are reused by test_gru.py.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rnnlab import ConfigError, backend, gradcheck, losses, objective
from rnnlab.config import RunConfig
from rnnlab.models import LSTM, make_model
from rnnlab.models import lstm as lstm_module
from rnnlab.models.lstm import ChunkedProducts
from rnnlab.objective import Batch, gauss_newton_product
from rnnlab.params import flatten
from rnnlab.train import FileSink, MemorySink, run

# gradcheck: float64 central differences resolve ~1e-9; a wrong term gives >= 1e-3
GRAD_TOL = 1e-6
EPS = 1e-5
# R-op and J^T H J by central differences: truncation ~eps^2 and round-off ~1e-11 relative to
# entries of size ~1; a missing term is O(1e-2)
FD_RTOL = 1e-7
# forward against the naive loop: the same float64 arithmetic in a different order
FWD_RTOL = 1e-12
# adjoint test: two sums of the same products in different orders
DOT_RTOL = 1e-12
# the same float64 sums computed in another grouping (split sequences, chunks of steps, the
# reference steps): round-off only, ~1e-15 relative; a wrong or missing term is O(1)
SAME_RTOL = 1e-11
LOSS = {"mse": losses.mse, "xent": losses.softmax_cross_entropy}


def _dev(a):
    return backend.to_device(np.asarray(a, dtype=np.float64))


def _model(hidden, outputs, *, n_in=2, n_out=3, seed=0, noise=0.4, kind="lstm", **options):
    """A float64 LSTM built by name, its weights moved off the initial point by ``noise`` so no
    gate is symmetric."""
    model = make_model(kind, n_in, n_out, outputs, seed=seed, dtype="float64", hidden=hidden,
                       **options)
    rng = np.random.default_rng(seed + 17)
    model.params = {k: _dev(backend.to_host(p) + noise * rng.standard_normal(p.shape))
                    for k, p in model.params.items()}
    return model


def _data(model, T, B, seed, loss_name="mse", with_state=False):
    s = model.spec
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, s.n_in))
    lead = (B,) if s.outputs == "last" else (T, B)
    if loss_name == "mse":
        targets = _dev(rng.standard_normal(lead + (s.n_out,)))
    else:
        targets = backend.to_device(rng.integers(0, s.n_out, size=lead))
    mask = None
    if s.outputs == "masked":
        m = (rng.random((T, B)) < 0.6).astype(np.float64)
        m[-1] = 1.0
        mask = _dev(m)
    state = None
    if with_state:
        state = [(_dev(rng.standard_normal((B, H))), _dev(0.5 * rng.standard_normal((B, H))))
                 for H in s.hidden]
    return _dev(x), targets, mask, state, rng


# ----------------------------------------------------------------------------- forward
def _naive_forward(params, x, hidden, outputs, state=None):
    """An independent loop: per gate block, per step, sigmoid as 1 / (1 + exp(-z))."""
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    T, B, _ = below.shape
    finals = []
    for layer, H in enumerate(hidden, start=1):
        w_in, w_rec = p[f"layer{layer}.W_in"], p[f"layer{layer}.W_rec"]
        b = p.get(f"layer{layer}.b", np.zeros(4 * H))
        blocks = [slice(k * H, (k + 1) * H) for k in range(4)]
        if state is None:
            h, c = np.zeros((B, H)), np.zeros((B, H))
        else:
            h, c = (backend.to_host(a) for a in state[layer - 1])
        out = []
        for t in range(T):
            z = [below[t] @ w_in[blk].T + h @ w_rec[blk].T + b[blk] for blk in blocks]
            i, f, g, o = sig(z[0]), sig(z[1]), np.tanh(z[2]), sig(z[3])
            c = f * c + i * g
            h = o * np.tanh(c)
            out.append(h)
        finals.append((h, c))
        below = np.stack(out)
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return (y[-1] if outputs == "last" else y), finals


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_a_naive_loop(xp, outputs, hidden, bias):
    model = _model(hidden, outputs, bias=bias, seed=len(hidden))
    x, _, _, state, _ = _data(model, 5, 3, seed=1, with_state=True)
    y, cache = model.forward(model.params, x, state)
    assert isinstance(y, xp.ndarray) and y.dtype == np.float64
    want, finals = _naive_forward(model.params, x, hidden, outputs, state)
    np.testing.assert_allclose(backend.to_host(y), want, rtol=FWD_RTOL, atol=FWD_RTOL)
    for (h, c), (h_want, c_want) in zip(cache.final_state, finals):
        np.testing.assert_allclose(backend.to_host(h), h_want, rtol=FWD_RTOL, atol=FWD_RTOL)
        np.testing.assert_allclose(backend.to_host(c), c_want, rtol=FWD_RTOL, atol=FWD_RTOL)


def test_a_hand_computed_step():
    """One unit, one step, x = 1, all weights 0 except biases: c = i g, h = o tanh(c)."""
    model = make_model("lstm", 1, 1, "last", dtype="float64", hidden=1)
    params = {k: xp_zero(p) for k, p in model.params.items()}
    params["layer1.b"] = _dev([0.3, -0.2, 0.5, 0.7])
    params["out.W"] = _dev([[1.0]])
    y, cache = model.forward(params, _dev(np.ones((1, 1, 1))))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    c = sig(0.3) * np.tanh(0.5)
    assert float(y[0, 0]) == pytest.approx(sig(0.7) * np.tanh(c), rel=1e-14)
    assert float(cache.c[0][1, 0, 0]) == pytest.approx(c, rel=1e-14)


def xp_zero(p):
    return backend.get_xp().zeros_like(p)


def test_chunks_carrying_state_equal_one_pass():
    """Truncated BPTT's forward: two chunks with the (h, c) state carried equal one pass."""
    model = _model([3, 2], "every")
    x, _, _, state, _ = _data(model, 6, 2, seed=3, with_state=True)
    y, _ = model.forward(model.params, x, state)
    y1, c1 = model.forward(model.params, x[:4], state)
    y2, _ = model.forward(model.params, x[4:], c1.final_state)
    np.testing.assert_allclose(np.concatenate([y1, y2]), y, rtol=1e-14, atol=1e-14)


# ----------------------------------------------------------------------------- gradients
CASES = [  # (hidden, outputs, options)
    ([3], "every", {}),
    ([3], "last", {}),
    ([3], "masked", {}),
    ([3, 2], "every", {"forget_bias": -0.5}),
    ([3, 2], "last", {"init": "chrono", "chrono_T": 10}),
    ([2, 3], "masked", {"bias": False}),
]


@pytest.mark.parametrize("hidden,outputs,options", CASES)
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_param_gradients(hidden, outputs, options, loss_name):
    model = _model(hidden, outputs, **options)
    x, targets, mask, state, _ = _data(model, 4, 2, seed=5, loss_name=loss_name,
                                       with_state=True)
    loss = LOSS[loss_name]
    value, grads, _ = objective.loss_and_grads(model, model.params, x, targets, loss, mask,
                                               state)
    report = gradcheck.check_gradients(
        lambda p: objective.loss_value(model, p, x, targets, loss, mask, state),
        model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)
    assert sum(report.kinks.values()) == 0


@pytest.mark.parametrize("outputs", ["every", "last"])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, outputs):
    """A loss that continues past the chunk: L = loss(y) + <a, h_T> + <b, c_T> per layer.
    backward(d_final_state=[(a, b)]) gives dL/dparams and dL/d(h_0, c_0)."""
    model = _model([3, 2], outputs, seed=2)
    x, targets, mask, state, rng = _data(model, 4, 2, seed=7, with_state=True)
    weights = [(_dev(rng.standard_normal((2, H))), _dev(rng.standard_normal((2, H))))
               for H in model.spec.hidden]
    xpm = backend.get_xp()

    def total(params, st):
        y, cache = model.forward(params, x, st)
        value, _ = losses.mse.value_and_grad(y, targets, mask)
        extra = sum(float(xpm.vdot(a, h)) + float(xpm.vdot(b, c))
                    for (a, b), (h, c) in zip(weights, cache.final_state))
        return float(value) + extra

    y, cache = model.forward(model.params, x, state)
    _, dy = losses.mse.value_and_grad(y, targets, mask)
    grads, d_state = model.backward(model.params, dy, cache, d_final_state=weights)
    report = gradcheck.check_gradients(lambda p: total(p, state), model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)
    flat_state = {f"{part}{i}": arr for i, pair in enumerate(state) for part, arr in
                  zip("hc", pair)}
    flat_d = {f"{part}{i}": arr for i, pair in enumerate(d_state) for part, arr in
              zip("hc", pair)}

    def of_state(s):
        return total(model.params, [(s[f"h{i}"], s[f"c{i}"]) for i in range(len(state))])

    report = gradcheck.check_gradients(of_state, flat_state, flat_d)
    assert report.max_error < GRAD_TOL, str(report)


# ----------------------------------------------------------------------------- R-op
def _moved(params, v, step):
    return {k: params[k] + step * v[k] for k in params}


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_rop_matches_finite_differences(xp, outputs, hidden):
    model = _model(hidden, outputs, seed=4)
    x, _, _, state, rng = _data(model, 5, 3, seed=8, with_state=True)
    v = {k: _dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    y, cache = model.forward(model.params, x, state)
    r_y, r_h = model.rop(model.params, v, cache)
    assert r_y.shape == y.shape and isinstance(r_y, xp.ndarray)
    y_p, c_p = model.forward(_moved(model.params, v, EPS), x, state)
    y_m, c_m = model.forward(_moved(model.params, v, -EPS), x, state)
    fd = backend.to_host(y_p - y_m) / (2 * EPS)
    np.testing.assert_allclose(backend.to_host(r_y), fd, rtol=FD_RTOL,
                               atol=FD_RTOL * max(1.0, np.abs(fd).max()))
    for rh, hp, hm in zip(r_h, c_p.h, c_m.h):
        fd_h = backend.to_host(hp - hm) / (2 * EPS)
        assert rh.shape == hp.shape
        np.testing.assert_array_equal(backend.to_host(rh[0]), 0.0)
        np.testing.assert_allclose(backend.to_host(rh), fd_h, rtol=FD_RTOL,
                                   atol=FD_RTOL * max(1.0, np.abs(fd_h).max()))


@pytest.mark.parametrize("hidden,outputs,options", CASES)
def test_rop_adjoint_dot_test(hidden, outputs, options):
    model = _model(hidden, outputs, seed=6, **options)
    x, _, _, state, rng = _data(model, 5, 3, seed=9, with_state=True)
    y, cache = model.forward(model.params, x, state)
    u = _dev(rng.standard_normal(y.shape))
    v = {k: _dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    r_y, _ = model.rop(model.params, v, cache)
    jt_u, _ = model.backward(model.params, u, cache)
    lhs = float(np.vdot(r_y, u))
    rhs = sum(float(np.vdot(v[k], jt_u[k])) for k in v)
    assert abs(lhs - rhs) <= DOT_RTOL * float(np.abs(r_y * u).sum()), (lhs, rhs)


# ----------------------------------------------------------------------------- Gauss-Newton
def _jacobian(fn, params):
    vec, unflatten = flatten(params)
    host = backend.to_host(vec)
    cols = []
    for j in range(host.size):
        step = np.zeros_like(host)
        step[j] = EPS
        cols.append((fn(unflatten(_dev(host + step))) - fn(unflatten(_dev(host - step)))).ravel()
                    / (2 * EPS))
    return np.stack(cols, axis=1)


def _output_hessian(loss, y, targets, mask):
    y0 = backend.to_host(y).ravel()
    cols = []
    for i in range(y0.size):
        step = np.zeros(y0.size)
        step[i] = EPS
        gp = loss.value_and_grad(_dev((y0 + step).reshape(y.shape)), targets, mask)[1]
        gm = loss.value_and_grad(_dev((y0 - step).reshape(y.shape)), targets, mask)[1]
        cols.append(backend.to_host(gp - gm).ravel() / (2 * EPS))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("hidden,outputs,loss_name", [
    ([2], "every", "mse"), ([2], "last", "xent"), ([2, 2], "masked", "xent")])
def test_gauss_newton_product_equals_formed_jt_h_j(xp, hidden, outputs, loss_name):
    """G v = J^T H J v, and with structural=s (form "hidden") G v + s J_h^T J_h v, where J_h is
    the Jacobian of every layer's h_1..h_T; J, J_h and H from central differences."""
    model = _model(hidden, outputs, n_in=2, n_out=2, seed=11)
    x, targets, mask, state, rng = _data(model, 3, 2, seed=12, loss_name=loss_name,
                                         with_state=True)
    batch = Batch(x, targets, mask, state)
    loss = LOSS[loss_name]
    jac = _jacobian(lambda p: backend.to_host(model.forward(p, x, state)[0]), model.params)
    jac_h = _jacobian(lambda p: np.concatenate(
        [backend.to_host(h[1:]).ravel() for h in model.forward(p, x, state)[1].h]), model.params)
    y, _ = model.forward(model.params, x, state)
    formed = jac.T @ _output_hessian(loss, y, targets, mask) @ jac
    vec, unflatten = flatten(model.params)
    v_host = rng.standard_normal(int(vec.size))
    v = unflatten(_dev(v_host))
    got = backend.to_host(flatten(gauss_newton_product(model, model.params, batch, v, loss))[0])
    want = formed @ v_host
    np.testing.assert_allclose(got, want, rtol=FD_RTOL, atol=FD_RTOL * np.abs(want).max())
    s = 0.7
    got_s = backend.to_host(flatten(gauss_newton_product(
        model, model.params, batch, v, loss, structural=s, structural_form="hidden"))[0])
    want_s = want + s * (jac_h.T @ (jac_h @ v_host))
    np.testing.assert_allclose(got_s, want_s, rtol=FD_RTOL,
                               atol=FD_RTOL * np.abs(want_s).max())
    assert np.abs(want_s - want).max() > 1e-2 * np.abs(want).max()  # the term is not negligible


def test_structural_damping_refuses_the_matching_form():
    model = _model([2], "every")
    x, targets, _, _, rng = _data(model, 3, 2, seed=1)
    v = {k: _dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    with pytest.raises(ConfigError, match="use structural_form 'hidden'"):
        gauss_newton_product(model, model.params, Batch(x, targets, None, None), v,
                             losses.mse, structural=0.1, structural_form="matching")


# ----------------------------------------------------------------------------- inits
def test_chrono_init_bias_ranges():
    T_max, H = 50, 64
    model = make_model("lstm", 3, 2, "last", seed=3, dtype="float64", hidden=[H, H],
                       init="chrono", chrono_T=T_max)
    for i in (1, 2):
        b = backend.to_host(model.params[f"layer{i}.b"])
        b_i, b_f, b_g, b_o = b[:H], b[H:2 * H], b[2 * H:3 * H], b[3 * H:]
        assert b_f.min() >= 0.0 and b_f.max() <= np.log(T_max - 1)
        # exp(b_f) ~ U[1, T_max - 1]: 64 draws reach both ends' fifths (fails with p ~ 1e-6)
        span = T_max - 2
        u = np.exp(b_f)
        assert u.min() < 1 + 0.2 * span and u.max() > T_max - 1 - 0.2 * span
        np.testing.assert_array_equal(b_i, -b_f)
        np.testing.assert_array_equal(b_g, 0.0)
        np.testing.assert_array_equal(b_o, 0.0)
    assert not np.array_equal(backend.to_host(model.params["layer1.b"]),
                              backend.to_host(model.params["layer2.b"]))


def test_orthogonal_init_and_forget_bias():
    H = 5
    model = make_model("lstm", 3, 2, "every", seed=1, dtype="float64", hidden=H,
                       forget_bias=2.0)
    b = backend.to_host(model.params["layer1.b"])
    np.testing.assert_array_equal(b[H:2 * H], 2.0)
    np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
    w_rec = backend.to_host(model.params["layer1.W_rec"])
    assert w_rec.shape == (4 * H, H)
    for k in range(4):  # each gate's recurrent block is orthogonal
        q = w_rec[k * H:(k + 1) * H]
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    again = make_model("lstm", 3, 2, "every", seed=1, dtype="float64", hidden=H,
                       forget_bias=2.0)
    for k in model.params:  # seeded
        np.testing.assert_array_equal(model.params[k], again.params[k])


def test_options_are_checked():
    with pytest.raises(ConfigError, match="chrono_T"):
        make_model("lstm", 2, 1, "last", hidden=3, init="chrono")
    with pytest.raises(ConfigError, match="layers"):
        make_model("lstm", 2, 1, "last", hidden=[3, 2], layers=3)
    with pytest.raises(Exception, match="no option 'activation'"):
        make_model("lstm", 2, 1, "last", activation="relu")
    model = make_model("lstm", 2, 1, "last", hidden=4, layers=2)
    assert model.spec.hidden == (4, 4) and model.spec.kind == "lstm"
    assert LSTM.spec_for(2, 1, "last", hidden=4, layers=2).param_shapes() == {
        k: tuple(p.shape) for k, p in model.params.items()}


# ----------------------------------------------------------------------------- training
def _config(optimizer, steps, clip=None):
    train = {"steps": steps, "batch": 4, "eval_size": 8, "test_size": 0, "eval_every": 2,
             "dtype": "float64"}
    if clip is not None:
        train["clip"] = clip
    return RunConfig.from_dict({"task": {"name": "adding", "T": 8},
                                "model": {"name": "lstm", "hidden": 6},
                                "optimizer": optimizer, "train": train})


@pytest.mark.parametrize("optimizer,clip", [
    ({"name": "adam"}, None),
    ({"name": "hf", "structural_form": "hidden", "cg_max": 5}, 0.0)], ids=["adam", "hf"])
def test_trains_through_run(optimizer, clip):
    result = run(_config(optimizer, 5, clip), MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 5
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert evals and all(np.isfinite(r["mse"]) for r in evals)


def test_hf_takes_the_hidden_form_by_default_and_refuses_matching():
    result = run(_config({"name": "hf", "cg_max": 3}, 2, 0.0), MemorySink(), progress=False)
    assert result.status == "finished"  # structural_form "auto" -> the LSTM's "hidden"
    with pytest.raises(ConfigError, match="use structural_form 'hidden'"):
        run(_config({"name": "hf", "cg_max": 3, "structural_form": "matching"}, 2, 0.0),
            MemorySink(), progress=False)


def test_resumes_bit_identically(tmp_path):
    opt = {"name": "adam"}
    straight = run(_config(opt, 6), MemorySink(), progress=False)
    sink = FileSink(str(tmp_path / "run"))
    run(_config(opt, 3), sink, progress=False)
    resumed = run(_config(opt, 3).with_overrides({"train.steps": 6}), sink, resume=True,
                  progress=False)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


# ----------------------------------------------------------------------------- generic checks
def _h_part(kind, state_grad):
    """The h part of one layer's state gradient: (dh, dc) for the LSTM, dh for the GRU."""
    return state_grad[0] if kind == "lstm" else state_grad


def check_hidden_gradients_split(kind, hidden, data):
    """Outputs "last": dLoss/dh_t of the top layer, from ``hidden_gradients`` of the whole
    sequence, equals the h part of the d_state that BPTT of the steps after t returns when the
    sequence is split at t (that d_state is checked by central differences); at t = T it is
    dy W_out. ``data(model, T, B, seed)`` returns (x, targets, mask, state, rng)."""
    model = _model(hidden, "last", kind=kind, seed=21)
    T = 5
    x, targets, mask, state, _ = data(model, T, 2, 22)
    p = model.params
    y, cache = model.forward(p, x, state)
    _, dy = losses.mse.value_and_grad(y, targets, mask)
    got = model.hidden_gradients(p, dy, cache)
    assert [tuple(g.shape) for g in got] == [(T, 2, H) for H in model.spec.hidden]
    top = backend.to_host(got[-1])
    for t in range(1, T):
        _, first = model.forward(p, x[:t], state)
        y2, second = model.forward(p, x[t:], first.final_state)
        np.testing.assert_allclose(backend.to_host(y2), backend.to_host(y), rtol=SAME_RTOL)
        _, d_state = model.backward(p, dy, second)
        np.testing.assert_allclose(top[t - 1], backend.to_host(_h_part(kind, d_state[-1])),
                                   rtol=SAME_RTOL, atol=SAME_RTOL * np.abs(top).max())
    np.testing.assert_allclose(top[T - 1], backend.to_host(dy @ p["out.W"]), rtol=SAME_RTOL)
    grads, _ = model.backward(p, dy, cache)  # recording does not change what BPTT returns
    again, _ = model._backward(p, dy, cache, record=[])
    for k in grads:
        np.testing.assert_array_equal(backend.to_host(grads[k]), backend.to_host(again[k]))
    return model, x, state, dy, got


def check_chunked_products(kind, monkeypatch, data, hidden, outputs, bias):
    """BPTT with the weight gradients summed over chunks of 1 and 2 steps (T = 5: a partial
    last chunk) equals BPTT with one chunk, for the gradients, d_state, hidden_gradients and
    with d_hidden; and the chunked gradients pass the finite-difference check."""
    model = _model(hidden, outputs, kind=kind, seed=31, bias=bias)
    x, targets, mask, state, rng = data(model, 5, 2, 32)
    p = model.params
    y, cache = model.forward(p, x, state)
    _, dy = losses.mse.value_and_grad(y, targets, mask)
    d_hidden = [_dev(rng.standard_normal((5, 2, H))) for H in model.spec.hidden]

    def bptt():
        grads, d_state = model.backward(p, dy, cache, d_hidden=d_hidden)
        flat = [backend.to_host(a) for pair in d_state
                for a in (pair if isinstance(pair, tuple) else (pair,))]
        return ({k: backend.to_host(v) for k, v in grads.items()}, flat,
                [backend.to_host(h) for h in model.hidden_gradients(p, dy, cache)])

    want = bptt()
    for columns in (2, 4):  # B = 2: chunks of 1 step, and of 2, 2, 1 steps
        monkeypatch.setattr(ChunkedProducts, "columns_per_gemm", columns)
        got = bptt()
        for k in want[0]:
            np.testing.assert_allclose(got[0][k], want[0][k], rtol=SAME_RTOL,
                                       atol=SAME_RTOL * np.abs(want[0][k]).max(), err_msg=k)
        for a, b in zip(got[1] + got[2], want[1] + want[2]):
            np.testing.assert_allclose(a, b, rtol=SAME_RTOL, atol=SAME_RTOL * np.abs(b).max())
    _, grads, _ = objective.loss_and_grads(model, p, x, targets, losses.mse, mask, state)
    report = gradcheck.check_gradients(
        lambda q: objective.loss_value(model, q, x, targets, losses.mse, mask, state), p, grads)
    assert report.max_error < GRAD_TOL, str(report)


def check_arrays_per_unit(kind, monkeypatch):
    """The spec's train_arrays_per_unit / eval_arrays_per_unit (what rnnlab.train.memory sizes
    runs from) against the peak of the memory NumPy allocates (tracemalloc traces it) in a
    forward (evaluation) and a forward + BPTT (training), in units of one (T, B, H) array.
    Chunks of one step make ChunkedProducts' buffers (bounded in bytes, not per unit)
    negligible; T B = 4096 columns make the weight-sized arrays small next to a unit."""
    monkeypatch.setattr(ChunkedProducts, "columns_per_gemm", 1)
    T, B, H = 256, 16, 32
    model = make_model(kind, 2, 1, "every", dtype="float64", hidden=H)
    x = np.random.default_rng(0).standard_normal((T, B, 2))
    unit = T * B * H * 8
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y, cache = model.forward(model.params, x)
        evaluation = (tracemalloc.get_traced_memory()[1] - base) / unit
        model.backward(model.params, np.ones_like(y), cache)
        training = (tracemalloc.get_traced_memory()[1] - base) / unit
    finally:
        tracemalloc.stop()
    # the inputs (n_in; counted apart by rnnlab.train.memory), outputs and weights add ~4% to
    # the measured units; training's count also covers what one layer does not allocate (the
    # gradient from the layer above in a stack, structural damping's d_hidden): it may be up to
    # ~20% higher. A count off by one array is off by 15-20% at these sizes.
    assert 0.95 * evaluation <= model.spec.eval_arrays_per_unit <= 1.05 * evaluation
    assert 0.95 * training <= model.spec.train_arrays_per_unit <= 1.25 * training


# ----------------------------------------------------------------------------- this model's
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_hidden_gradients_equal_the_state_gradient_of_a_split_sequence(hidden):
    check_hidden_gradients_split("lstm", hidden, lambda m, T, B, seed: _data(
        m, T, B, seed, with_state=True))


def test_hidden_gradients_at_the_last_step_of_two_layers():
    """At t = T nothing comes from later steps: dLoss/dh_T of the top layer is dy W_out, and
    that of layer 1 is W_in^2 applied to dLoss/dz_T^2, written out here from the LSTM's
    equations on the cache's h and c (no d_final_state, so dLoss/dc_T = 0)."""
    model, x, state, dy, got = check_hidden_gradients_split(
        "lstm", [3, 2], lambda m, T, B, seed: _data(m, T, B, seed, with_state=True))
    p = {k: backend.to_host(v) for k, v in model.params.items()}
    _, cache = model.forward(model.params, x, state)
    T, H = 5, 2
    h1, h2_prev = backend.to_host(cache.h[0][T]), backend.to_host(cache.h[1][T - 1])
    c_prev = backend.to_host(cache.c[1][T - 1])
    z = h1 @ p["layer2.W_in"].T + h2_prev @ p["layer2.W_rec"].T + p["layer2.b"]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
    tanh_c = np.tanh(f * c_prev + i * g)
    dh = backend.to_host(dy) @ p["out.W"]
    dc = dh * o * (1 - tanh_c ** 2)
    dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                         dh * tanh_c * o * (1 - o)], axis=1)
    np.testing.assert_allclose(backend.to_host(got[1][T - 1]), dh, rtol=SAME_RTOL)
    np.testing.assert_allclose(backend.to_host(got[0][T - 1]), dz @ p["layer2.W_in"],
                               rtol=SAME_RTOL)


@pytest.mark.parametrize("hidden,outputs,bias", [([3, 2], "every", True),
                                                 ([2, 3], "last", False)])
def test_weight_gradients_over_chunks_of_steps(monkeypatch, hidden, outputs, bias):
    check_chunked_products("lstm", monkeypatch, lambda m, T, B, seed: _data(
        m, T, B, seed, with_state=True), hidden, outputs, bias)


def test_arrays_per_unit_match_the_traced_peak(monkeypatch):
    check_arrays_per_unit("lstm", monkeypatch)


def test_feature_major_steps_match_the_batch_major_reference():
    """One step of lstm_step_fm / lstm_step_backward_fm / lstm_step_rop_fm (the model's
    layout: rows o, i, f, g, sigmoid rows halved, (features, B) blocks) against lstm_step /
    lstm_step_backward / lstm_step_rop (PyTorch's order, (B, 4H))."""
    rng = np.random.default_rng(3)
    H, B = 3, 2
    z, rz = rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H))
    c_prev, dh, dc, r_c = (rng.standard_normal((B, H)) for _ in range(4))
    gates, c, tanh_c, h = np.empty((B, 4 * H)), np.empty((B, H)), np.empty((B, H)), \
        np.empty((B, H))
    lstm_module.lstm_step(z, c_prev, gates, c, tanh_c, h)
    dz, dc_ref = np.empty((B, 4 * H)), dc.copy()
    lstm_module.lstm_step_backward(dh, dc_ref, gates, c_prev, tanh_c, dz)
    r_h_ref, r_c_ref = lstm_module.lstm_step_rop(rz, r_c, gates, c_prev, tanh_c)

    def fm(a):  # (B, 4H) in the order i f g o -> (4H, B) in the order o i f g
        return np.concatenate([a[:, k * H:(k + 1) * H].T for k in lstm_module.ORDER])

    ws = lstm_module.Scratch.make(5 * H, H, B, np.float64)
    a = np.empty((5 * H, B))
    a[:4 * H] = fm(z)
    a[:3 * H] *= 0.5
    c_fm, h_fm = np.empty((H, B)), np.empty((H, B))
    lstm_module.lstm_step_fm(a, c_prev.T.copy(), c_fm, h_fm, ws)
    np.testing.assert_allclose(a[:4 * H], fm(gates), rtol=SAME_RTOL)
    np.testing.assert_allclose(a[4 * H:], tanh_c.T, rtol=SAME_RTOL)
    np.testing.assert_allclose(c_fm, c.T, rtol=SAME_RTOL)
    np.testing.assert_allclose(h_fm, h.T, rtol=SAME_RTOL)
    dz_fm, dc_fm = np.empty((4 * H, B)), dc.T.copy()
    lstm_module.lstm_step_backward_fm(dh.T.copy(), dc_fm, a, c_prev.T.copy(), dz_fm, ws)
    np.testing.assert_allclose(dz_fm, fm(dz), rtol=SAME_RTOL)
    np.testing.assert_allclose(dc_fm, dc_ref.T, rtol=SAME_RTOL)
    rz_fm, r_c_fm, r_h_fm = fm(rz), r_c.T.copy(), np.empty((H, B))
    lstm_module.lstm_step_rop_fm(rz_fm, r_c_fm, a, c_prev.T.copy(), r_h_fm, ws)
    np.testing.assert_allclose(r_c_fm, r_c_ref.T, rtol=SAME_RTOL)
    np.testing.assert_allclose(r_h_fm, r_h_ref.T, rtol=SAME_RTOL)
