"""The mLSTM (rnnlab.models.mlstm) in float64, both cell forms ("chainer", "matlab"), 1 and 2
layers: forward against an independent naive loop written with the paper's factorised
transition W_m diag(W_mx x) W_mh (Eq. 3) and against hand-computed steps, BPTT against central
differences (parameters, initial state, d_final_state), the R-op against finite differences and
the adjoint test, Gauss-Newton products against J^T H J formed from central differences (with
and without structural damping on h), hidden_gradients against chunked backward passes and
finite differences, options refused, and training through ``run()`` with Adam and
Hessian-free. The generic checks and their tolerances are those of tests/cell_checks.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import cell_checks as cc
from rnnlab import ConfigError, backend
from rnnlab.models import MODELS, MLSTM, make_model

FORMS = ["chainer", "matlab"]
_dev = cc.dev


def _model(hidden, outputs, **kw):
    """A float64 mLSTM built by name, its weights moved off the initial point by noise so no
    gate is symmetric and every bias (b_h of the matlab form included) is nonzero."""
    return cc.noisy_model("mlstm", hidden, outputs, **kw)


def _data(model, T, B, seed, loss_name="mse", with_state=False):
    return cc.make_data(model, T, B, seed, loss_name, cc.hc_state if with_state else None)


# ----------------------------------------------------------------------------- forward
def _naive_forward(params, x, spec, state=None):
    """An independent loop: per sequence, per step, the transition matrix
    W_m[blk] diag(W_mx x_t) W_mh formed explicitly (Eq. 3), sigmoid as 1 / (1 + exp(-z))."""
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    T, B, _ = below.shape
    finals = []
    for layer, H in enumerate(spec.hidden, start=1):
        w_x, w_mx = p[f"layer{layer}.W_x"], p[f"layer{layer}.W_mx"]
        w_mh, w_m = p[f"layer{layer}.W_mh"], p[f"layer{layer}.W_m"]
        b = p.get(f"layer{layer}.b", np.zeros(4 * H))
        blocks = [slice(k * H, (k + 1) * H) for k in range(4)]
        if state is None:
            hb, cb = np.zeros((B, H)), np.zeros((B, H))
        else:
            hb, cb = (backend.to_host(a).copy() for a in state[layer - 1])
        out = np.zeros((T, B, H))
        for n in range(B):
            h, c = hb[n], cb[n]
            for t in range(T):
                xt = below[t, n]
                w_hh = [w_m[blk] @ np.diag(w_mx @ xt) @ w_mh for blk in blocks]
                z = [w_x[blk] @ xt + w_hh[k] @ h for k, blk in enumerate(blocks)]
                if spec.form == "chainer":
                    i, f, g, o = (sig(z[0] + b[blocks[0]]), sig(z[1] + b[blocks[1]]),
                                  np.tanh(z[2] + b[blocks[2]]), sig(z[3] + b[blocks[3]]))
                    c = f * c + i * g
                    h = o * np.tanh(c)
                else:
                    i, f, o = (sig(z[0] + b[blocks[0]]), sig(z[1] + b[blocks[1]]),
                               sig(z[3] + b[blocks[3]]))
                    c = f * c + i * z[2]
                    h = np.tanh(o * c + b[blocks[2]])
                out[t, n] = h
            hb[n], cb[n] = h, c
        finals.append((hb, cb))
        below = out
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return (y[-1] if spec.outputs == "last" else y), finals


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden,intermediate", [([3], None), ([3, 2], None), ([3, 2], [4, 1])],
                         ids=["1layer", "2layers", "2layers-n_m"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_a_naive_loop(xp, form, outputs, hidden, intermediate, bias):
    model = _model(hidden, outputs, bias=bias, seed=len(hidden), form=form,
                   intermediate=intermediate)
    x, _, _, state, _ = _data(model, 5, 3, seed=1, with_state=True)
    cc.check_forward(model, x, state, *_naive_forward(model.params, x, model.spec, state))


@pytest.mark.parametrize("form", FORMS)
def test_two_hand_computed_steps(form):
    """One unit, x = 1 twice, W_x = 0: step 1 has m = 0 (h_0 = 0), so z = b; step 2 has
    m = (W_mx x)(W_mh h_1) and z = b + W_m m."""
    model = make_model("mlstm", 1, 1, "last", dtype="float64", hidden=1, form=form)
    params = {k: backend.get_xp().zeros_like(p) for k, p in model.params.items()}
    b = np.array([0.3, -0.2, 0.5, 0.7])
    w_m = np.array([0.9, -0.4, 1.1, 0.6])
    params["layer1.b"] = _dev(b)
    params["layer1.W_mx"] = _dev([[1.5]])
    params["layer1.W_mh"] = _dev([[-0.8]])
    params["layer1.W_m"] = _dev(w_m[:, None])
    params["out.W"] = _dev([[1.0]])
    y, cache = model.forward(params, _dev(np.ones((2, 1, 1))))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c = 0.0, 0.0
    for _ in range(2):
        z = b + w_m * (1.5 * -0.8 * h)
        if form == "chainer":
            c = sig(z[1]) * c + sig(z[0]) * np.tanh(z[2])
            h = sig(z[3]) * np.tanh(c)
        else:  # linear cell input z[g] - b[g], b[g] is b_h inside the output tanh
            c = sig(z[1]) * c + sig(z[0]) * (z[2] - b[2])
            h = np.tanh(sig(z[3]) * c + b[2])
    assert float(y[0, 0]) == pytest.approx(h, rel=1e-14)
    assert float(cache.c[0][2, 0, 0]) == pytest.approx(c, rel=1e-14)


@pytest.mark.parametrize("form", FORMS)
def test_chunks_carrying_state_equal_one_pass(form):
    model = _model([3, 2], "every", form=form)
    x, _, _, state, _ = _data(model, 6, 2, seed=3, with_state=True)
    cc.check_chunks_equal_one_pass(model, x, state)


# ----------------------------------------------------------------------------- gradients
CASES = [  # (hidden, outputs, options)
    ([3], "every", {}),
    ([3], "last", {}),
    ([3], "masked", {"intermediate": 2}),
    ([3, 2], "every", {"forget_bias": -0.5}),
    ([3, 2], "last", {"intermediate": [4, 1]}),
    ([2, 3], "masked", {"bias": False}),
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hidden,outputs,options", CASES)
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_param_gradients(form, hidden, outputs, options, loss_name):
    model = _model(hidden, outputs, form=form, **options)
    cc.check_param_gradients(model, _data(model, 4, 2, seed=5, loss_name=loss_name,
                                          with_state=True), loss_name)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("outputs", ["every", "last"])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, form, outputs):
    """d_final_state = [(a, b)] per layer for L = loss(y) + <a, h_T> + <b, c_T>."""
    model = _model([3, 2], outputs, seed=2, form=form)
    cc.check_final_state_gradients(model, _data(model, 4, 2, seed=7, with_state=True), "hc")


# ----------------------------------------------------------------------------- hidden grads
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_hidden_gradients_of_the_top_layer_equal_chunked_d_state(form, hidden):
    model = _model(hidden, "last", seed=3, form=form)
    cc.check_hidden_gradients_split(model, _data(model, 5, 2, seed=4, with_state=True))


def _upper_model(model):
    """The top layer and readout of a 2-layer model as a 1-layer model over h^1."""
    s = model.spec
    upper = make_model("mlstm", s.hidden[0], s.n_out, s.outputs, dtype="float64",
                       hidden=s.hidden[1], intermediate=s.intermediate[1], form=s.form,
                       bias=s.bias)
    upper.params = {k: model.params[k.replace("layer1.", "layer2.")] for k in upper.params}
    return upper


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("outputs", ["every", "last"])
def test_hidden_gradients_per_layer(form, outputs):
    """Layer 1's dL/dh_t sums the path through layer 2 (central differences of the upper layer
    run as a 1-layer model on input h^1) and its own later steps (a chunked backward)."""
    model = _model([3, 2], outputs, seed=5, form=form, intermediate=[2, 3])
    cc.check_lower_hidden_gradients(model, _upper_model(model),
                                    _data(model, 4, 2, seed=6, with_state=True))


# ----------------------------------------------------------------------------- R-op
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_rop_matches_finite_differences(xp, form, outputs, hidden):
    model = _model(hidden, outputs, seed=4, form=form)
    cc.check_rop_finite_differences(model, _data(model, 5, 3, seed=8, with_state=True))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hidden,outputs,options", CASES)
def test_rop_adjoint_dot_test(form, hidden, outputs, options):
    model = _model(hidden, outputs, seed=6, form=form, **options)
    cc.check_rop_adjoint(model, _data(model, 5, 3, seed=9, with_state=True))


# ----------------------------------------------------------------------------- Gauss-Newton
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("hidden,outputs,loss_name", [
    ([2], "every", "mse"), ([2], "last", "xent"), ([2, 2], "masked", "xent")])
def test_gauss_newton_product_equals_formed_jt_h_j(xp, form, hidden, outputs, loss_name):
    model = _model(hidden, outputs, n_in=2, n_out=2, seed=11, form=form)
    cc.check_gauss_newton(model, _data(model, 3, 2, seed=12, loss_name=loss_name,
                                       with_state=True), loss_name)


def test_structural_damping_refuses_the_matching_form():
    model = _model([2], "every")
    assert MLSTM.structural_form == "hidden"
    cc.check_refuses_matching_form(model, _data(model, 3, 2, seed=1))


# ----------------------------------------------------------------------------- init, options
def test_init_forget_bias_orthogonal_and_glorot_blocks():
    H = 5
    model = make_model("mlstm", 3, 2, "every", seed=1, dtype="float64", hidden=[H, H],
                       intermediate=[H, 3], forget_bias=2.0)
    p = {k: backend.to_host(a) for k, a in model.params.items()}
    for i in (1, 2):
        b = p[f"layer{i}.b"]
        np.testing.assert_array_equal(b[H:2 * H], 2.0)
        np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
    # layer 1: n_m = H, W_mh and every gate block of W_m orthogonal
    q = p["layer1.W_mh"]
    np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    for k in range(4):
        q = p["layer1.W_m"][k * H:(k + 1) * H]
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    # layer 2: n_m = 3 != H, Glorot-uniform within its bound
    for name, shape in (("layer2.W_mh", (3, H)), ("layer2.W_m", (4 * H, 3))):
        w = p[name]
        assert w.shape == shape
        fan_out, fan_in = (3, H) if name.endswith("W_mh") else (H, 3)
        assert np.abs(w).max() <= np.sqrt(6.0 / (fan_in + fan_out))
    again = make_model("mlstm", 3, 2, "every", seed=1, dtype="float64", hidden=[H, H],
                       intermediate=[H, 3], forget_bias=2.0)
    for k in model.params:  # seeded
        np.testing.assert_array_equal(model.params[k], again.params[k])


def test_spec_shapes_and_memory_counts():
    model = make_model("mlstm", 2, 1, "last", hidden=4, layers=2)
    s = model.spec
    assert s.kind == "mlstm" and "mlstm" in MODELS
    assert s.hidden == (4, 4) and s.intermediate == (4, 4) and s.form == "chainer"
    assert MLSTM.spec_for(2, 1, "last", hidden=4, layers=2).param_shapes() == {
        k: tuple(p.shape) for k, p in model.params.items()}
    assert s.to_dict()["intermediate"] == [4, 4]
    # counted from the code at n_m = H (mlstm.py's MLSTMSpec comment); the matlab form keeps
    # no tanh(c); wider intermediates scale the m-sized arrays
    assert (s.train_arrays_per_unit, s.eval_arrays_per_unit) == (17, 10)
    m = MLSTM.spec_for(2, 1, "last", hidden=4, form="matlab")
    assert (m.train_arrays_per_unit, m.eval_arrays_per_unit) == (16, 9)
    wide = MLSTM.spec_for(2, 1, "last", hidden=4, intermediate=8)
    assert (wide.train_arrays_per_unit, wide.eval_arrays_per_unit) == (22, 13)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="intermediate must be an integer >= 1"):
        make_model("mlstm", 2, 1, "last", hidden=3, intermediate=0)
    with pytest.raises(ConfigError, match="intermediate must be an integer >= 1"):
        make_model("mlstm", 2, 1, "last", hidden=[3, 2], intermediate=[2, -1])
    with pytest.raises(ConfigError, match=r"intermediate must be one width or one per layer "
                                          r"\(2\)"):
        make_model("mlstm", 2, 1, "last", hidden=[3, 2], intermediate=[2, 2, 2])
    with pytest.raises(ConfigError, match="form must be one of chainer, matlab; got 'torch'"):
        make_model("mlstm", 2, 1, "last", hidden=3, form="torch")
    with pytest.raises(ConfigError, match="forget_bias must be a finite number"):
        make_model("mlstm", 2, 1, "last", hidden=3, forget_bias=float("nan"))
    with pytest.raises(ConfigError, match="layers"):
        make_model("mlstm", 2, 1, "last", hidden=[3, 2], layers=3)
    with pytest.raises(Exception, match="no option 'init'"):
        make_model("mlstm", 2, 1, "last", init="chrono")
    model = _model([2], "every")
    x, _, _, _, _ = _data(model, 3, 2, seed=1)
    with pytest.raises(ConfigError, match=r"state must hold one \(h, c\) pair per layer"):
        model.forward(model.params, x, [])
    with pytest.raises(ConfigError, match="cache must be the MLSTMCache"):
        model.backward(model.params, model.forward(model.params, x)[0], object())


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("optimizer,clip,steps", [
    ({"name": "adam", "lr": 0.01}, None, 20),
    ({"name": "hf", "cg_max": 10}, 0.0, 4)], ids=["adam", "hf"])
def test_trains_through_run(form, optimizer, clip, steps):
    """A few updates on a tiny adding problem lower the held-out MSE (Hessian-free with its
    default structural form, "auto" -> the mLSTM's "hidden")."""
    config = cc.run_config({"name": "mlstm", "hidden": 6, "form": form}, optimizer, steps,
                           clip=clip, T=6, batch=8, eval_size=16, eval_every=steps)
    cc.check_trains_through_run(config, n_evals=2, falls_below=0.9)
