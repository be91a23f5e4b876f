"""The GRU (rnnlab.models.gru) in float64: forward against an independent naive loop, BPTT
against central differences (parameters, initial state, d_final_state), the R-op against finite
differences and the adjoint test, Gauss-Newton products against J^T H J (with structural damping
on h), training through ``run()`` with Adam and Hessian-free, ``hidden_gradients`` (split
sequence, dLoss/dh_T by hand), the feature-major steps against the batch-major reference steps,
chunked weight gradients and the declared arrays per unit. Helpers, generic checks and
tolerances are those of tests/test_lstm.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, backend, gradcheck, losses, objective
from rnnlab.models import make_model
from rnnlab.models import gru as gru_module
from rnnlab.models.lstm import Scratch
from rnnlab.objective import Batch, gauss_newton_product
from rnnlab.params import flatten
from rnnlab.train import MemorySink, run

from test_lstm import (DOT_RTOL, EPS, FD_RTOL, FWD_RTOL, GRAD_TOL, LOSS, SAME_RTOL, _config,
                       _dev, _jacobian, _model, _moved, _output_hessian, check_arrays_per_unit,
                       check_chunked_products, check_hidden_gradients_split)


def _gru(hidden, outputs, **kw):
    return _model(hidden, outputs, kind="gru", **kw)


def _data(model, T, B, seed, loss_name="mse"):
    s = model.spec
    rng = np.random.default_rng(seed)
    x = _dev(rng.standard_normal((T, B, s.n_in)))
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
    state = [_dev(0.8 * rng.standard_normal((B, H))) for H in s.hidden]
    return x, targets, mask, state, rng


def _naive_forward(params, x, hidden, outputs, state):
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    for layer, H in enumerate(hidden, start=1):
        w_in, w_rec = p[f"layer{layer}.W_in"], p[f"layer{layer}.W_rec"]
        b = p.get(f"layer{layer}.b", np.zeros(3 * H))
        R, Z, N = (slice(k * H, (k + 1) * H) for k in range(3))
        h = backend.to_host(state[layer - 1])
        out = []
        for t in range(below.shape[0]):
            r = sig(below[t] @ w_in[R].T + b[R] + h @ w_rec[R].T)
            z = sig(below[t] @ w_in[Z].T + b[Z] + h @ w_rec[Z].T)
            n = np.tanh(below[t] @ w_in[N].T + b[N] + r * (h @ w_rec[N].T))
            h = (1 - z) * n + z * h
            out.append(h)
        below = np.stack(out)
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return y[-1] if outputs == "last" else y


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_a_naive_loop(xp, outputs, hidden, bias):
    model = _gru(hidden, outputs, bias=bias, seed=len(hidden))
    x, _, _, state, _ = _data(model, 5, 3, seed=1)
    y, _ = model.forward(model.params, x, state)
    assert isinstance(y, xp.ndarray)
    np.testing.assert_allclose(backend.to_host(y),
                               _naive_forward(model.params, x, hidden, outputs, state),
                               rtol=FWD_RTOL, atol=FWD_RTOL)


@pytest.mark.parametrize("hidden,outputs,bias", [
    ([3], "every", True), ([3], "last", True), ([3], "masked", True),
    ([3, 2], "every", True), ([2, 3], "last", False), ([3, 2], "masked", True)])
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_param_gradients(hidden, outputs, bias, loss_name):
    model = _gru(hidden, outputs, bias=bias, seed=3)
    x, targets, mask, state, _ = _data(model, 4, 2, seed=5, loss_name=loss_name)
    loss = LOSS[loss_name]
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets, loss, mask, state)
    report = gradcheck.check_gradients(
        lambda p: objective.loss_value(model, p, x, targets, loss, mask, state),
        model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)


@pytest.mark.parametrize("outputs", ["every", "last"])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, outputs):
    model = _gru([3, 2], outputs, seed=2)
    x, targets, mask, state, rng = _data(model, 4, 2, seed=7)
    weights = [_dev(rng.standard_normal((2, H))) for H in model.spec.hidden]
    xpm = backend.get_xp()

    def total(params, st):
        y, cache = model.forward(params, x, st)
        value, _ = losses.mse.value_and_grad(y, targets, mask)
        return float(value) + sum(float(xpm.vdot(a, h))
                                  for a, h in zip(weights, cache.final_state))

    y, cache = model.forward(model.params, x, state)
    _, dy = losses.mse.value_and_grad(y, targets, mask)
    grads, d_state = model.backward(model.params, dy, cache, d_final_state=weights)
    report = gradcheck.check_gradients(lambda p: total(p, state), model.params, grads)
    assert report.max_error < GRAD_TOL, str(report)
    names = [f"h{i}" for i in range(len(state))]
    report = gradcheck.check_gradients(
        lambda s: total(model.params, [s[n] for n in names]), dict(zip(names, state)),
        dict(zip(names, d_state)))
    assert report.max_error < GRAD_TOL, str(report)


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_rop_matches_finite_differences_and_the_adjoint(xp, outputs, hidden):
    model = _gru(hidden, outputs, seed=4)
    x, _, _, state, rng = _data(model, 5, 3, seed=8)
    v = {k: _dev(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    y, cache = model.forward(model.params, x, state)
    r_y, r_h = model.rop(model.params, v, cache)
    y_p, c_p = model.forward(_moved(model.params, v, EPS), x, state)
    y_m, c_m = model.forward(_moved(model.params, v, -EPS), x, state)
    fd = backend.to_host(y_p - y_m) / (2 * EPS)
    np.testing.assert_allclose(backend.to_host(r_y), fd, rtol=FD_RTOL,
                               atol=FD_RTOL * max(1.0, np.abs(fd).max()))
    for rh, hp, hm in zip(r_h, c_p.h, c_m.h):
        fd_h = backend.to_host(hp - hm) / (2 * EPS)
        np.testing.assert_allclose(backend.to_host(rh), fd_h, rtol=FD_RTOL,
                                   atol=FD_RTOL * max(1.0, np.abs(fd_h).max()))
    u = _dev(rng.standard_normal(y.shape))
    jt_u, _ = model.backward(model.params, u, cache)
    lhs = float(xp.vdot(r_y, u))
    rhs = sum(float(xp.vdot(v[k], jt_u[k])) for k in v)
    assert abs(lhs - rhs) <= DOT_RTOL * float(xp.abs(r_y * u).sum()), (lhs, rhs)


@pytest.mark.parametrize("hidden,outputs,loss_name", [
    ([2], "every", "mse"), ([2, 2], "masked", "xent")])
def test_gauss_newton_product_equals_formed_jt_h_j(hidden, outputs, loss_name):
    model = _gru(hidden, outputs, n_in=2, n_out=2, seed=11)
    x, targets, mask, state, rng = _data(model, 3, 2, seed=12, loss_name=loss_name)
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
    np.testing.assert_allclose(got_s, want_s, rtol=FD_RTOL, atol=FD_RTOL * np.abs(want_s).max())
    with pytest.raises(ConfigError, match="use structural_form 'hidden'"):
        gauss_newton_product(model, model.params, batch, v, loss, structural=s,
                             structural_form="matching")


def test_init_and_options():
    H = 4
    model = make_model("gru", 3, 2, "last", seed=1, dtype="float64", hidden=H, layers=2)
    assert model.spec.kind == "gru" and model.spec.hidden == (H, H)
    assert tuple(model.params["layer2.W_rec"].shape) == (3 * H, H)
    w_rec = backend.to_host(model.params["layer1.W_rec"])
    for k in range(3):
        q = w_rec[k * H:(k + 1) * H]
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    np.testing.assert_array_equal(backend.to_host(model.params["layer1.b"]), 0.0)


@pytest.mark.parametrize("optimizer,clip", [
    ({"name": "adam"}, None),
    ({"name": "hf", "structural_form": "hidden", "cg_max": 5}, 0.0)], ids=["adam", "hf"])
def test_trains_through_run(optimizer, clip):
    config = _config(optimizer, 5, clip).with_overrides({"model.name": "gru"})
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 5
    assert all(np.isfinite(r["mse"]) for r in result.history if r["kind"] == "eval")


@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_hidden_gradients_equal_the_state_gradient_of_a_split_sequence(hidden):
    check_hidden_gradients_split("gru", hidden, _data)


def test_hidden_gradients_at_the_last_step_of_two_layers():
    """At t = T: dLoss/dh_T of the top layer is dy W_out; that of layer 1 is W_in^2 applied to
    dLoss/da_T^2 (a = W_in h^1 + b, the input side of all three gates), written out here from
    the GRU's equations on the cache's h."""
    model, x, state, dy, got = check_hidden_gradients_split("gru", [3, 2], _data)
    p = {k: backend.to_host(v) for k, v in model.params.items()}
    _, cache = model.forward(model.params, x, state)
    T, H = 5, 2
    h1, h_prev = backend.to_host(cache.h[0][T]), backend.to_host(cache.h[1][T - 1])
    a = h1 @ p["layer2.W_in"].T + p["layer2.b"]
    u = h_prev @ p["layer2.W_rec"].T
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    r, z = sig(a[:, :H] + u[:, :H]), sig(a[:, H:2 * H] + u[:, H:2 * H])
    n = np.tanh(a[:, 2 * H:] + r * u[:, 2 * H:])
    dh = backend.to_host(dy) @ p["out.W"]
    d_an = dh * (1 - z) * (1 - n * n)
    d_a = np.concatenate([d_an * u[:, 2 * H:] * r * (1 - r), dh * (h_prev - n) * z * (1 - z),
                          d_an], axis=1)
    np.testing.assert_allclose(backend.to_host(got[1][T - 1]), dh, rtol=SAME_RTOL)
    np.testing.assert_allclose(backend.to_host(got[0][T - 1]), d_a @ p["layer2.W_in"],
                               rtol=SAME_RTOL)


@pytest.mark.parametrize("hidden,outputs,bias", [([3, 2], "every", True),
                                                 ([2, 3], "last", False)])
def test_weight_gradients_over_chunks_of_steps(monkeypatch, hidden, outputs, bias):
    check_chunked_products("gru", monkeypatch, _data, hidden, outputs, bias)


def test_arrays_per_unit_match_the_traced_peak(monkeypatch):
    check_arrays_per_unit("gru", monkeypatch)


def test_feature_major_steps_match_the_batch_major_reference():
    """One step of gru_step_fm / gru_step_backward_fm / gru_step_rop_fm (rows z, r, then u_n
    and n, sigmoid rows halved, (features, B) blocks) against gru_step / gru_step_backward /
    gru_step_rop (PyTorch's order r z n, (B, 3H))."""
    rng = np.random.default_rng(4)
    H, B = 3, 2
    a, u, ra, ru = (rng.standard_normal((B, 3 * H)) for _ in range(4))
    h_prev, dh, r_h_prev = (rng.standard_normal((B, H)) for _ in range(3))
    gates, u_n, h = np.empty((B, 3 * H)), np.empty((B, H)), np.empty((B, H))
    gru_module.gru_step(a, u, h_prev, gates, u_n, h)
    d_a, d_u = np.empty((B, 3 * H)), np.empty((B, 3 * H))
    direct = gru_module.gru_step_backward(dh, gates, u_n, h_prev, d_a, d_u)
    r_h_ref = gru_module.gru_step_rop(ra, ru, r_h_prev, gates, u_n, h_prev)

    def block(m, k):  # gate block k (r z n = 0 1 2) of a (B, 3H) array, as (H, B)
        return m[:, k * H:(k + 1) * H].T

    ws = Scratch.make(4 * H, H, B, np.float64)
    s = a + u
    fm = np.concatenate([0.5 * block(s, 1), 0.5 * block(s, 0), block(u, 2), block(a, 2)])
    h_fm = np.empty((H, B))
    gru_module.gru_step_fm(fm, h_prev.T.copy(), h_fm, ws)
    want = np.concatenate([block(gates, 1), block(gates, 0), u_n.T, block(gates, 2)])
    np.testing.assert_allclose(fm, want, rtol=SAME_RTOL)
    np.testing.assert_allclose(h_fm, h.T, rtol=SAME_RTOL)
    dq, d_an, dh_fm = np.empty((3 * H, B)), np.empty((H, B)), dh.T.copy()
    gru_module.gru_step_backward_fm(dh_fm, fm, h_prev.T.copy(), dq, d_an, ws)
    np.testing.assert_allclose(dq, np.concatenate([block(d_u, 1), block(d_u, 0), block(d_u, 2)]),
                               rtol=SAME_RTOL)
    np.testing.assert_allclose(d_an, block(d_a, 2), rtol=SAME_RTOL)
    np.testing.assert_allclose(dh_fm, direct.T, rtol=SAME_RTOL)
    rs = ra + ru
    rq = np.concatenate([block(rs, 1), block(rs, 0), block(ru, 2)])
    r_h = np.empty((H, B))
    gru_module.gru_step_rop_fm(rq, block(ra, 2).copy(), r_h_prev.T.copy(), fm,
                               h_prev.T.copy(), r_h, ws)
    np.testing.assert_allclose(r_h, r_h_ref.T, rtol=SAME_RTOL)
