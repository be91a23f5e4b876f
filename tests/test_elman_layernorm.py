"""The Elman RNN's layer normalisation (option ``layer_norm``) and its ``hidden_gradients``, in
float64: the forward against an independent naive loop, BPTT against central differences (relu,
tanh and identity; 1 and 2 layers; every outputs mode; the initial state and d_final_state),
the R-op against finite differences and the adjoint test, Gauss-Newton products against
J^T H J with structural damping on h, the refusals (structural damping's "matching" form, path
geometry, Path-SGD, G-SGD, PSGD's Kronecker blocks), the layout and initialisation, training
through ``run()``, and hidden_gradients (with and without layer norm) against the gradients of a
split sequence. The generic checks and their tolerances are those of tests/cell_checks.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import cell_checks as cc
from rnnlab import ConfigError, backend, losses, objective
from rnnlab.models import ElmanRNN, ElmanSpec, make_model
from rnnlab.models.elman import LN_EPS
from rnnlab.objective import Batch
from rnnlab.optim.gsgd import GSGD
from rnnlab.optim.path_sgd import PathSGD
from rnnlab.paths.support import require_elman
from rnnlab.train import MemorySink, run

from test_paths_support import ENTRY_POINTS, _params

ACTS = ["relu", "tanh", "identity"]
_dev = cc.dev


def _ln(hidden, outputs, activation="relu", layer_norm=True, **kw):
    """A float64 Elman RNN (layer-normalised by default) with noisy orthogonal-init weights,
    gains around 1 and shifts around 0."""
    return cc.noisy_model("elman", hidden, outputs, activation=activation,
                          layer_norm=layer_norm, init="orthogonal", **kw)


def _data(model, T, B, seed, loss_name="mse"):
    return cc.make_data(model, T, B, seed, loss_name, cc.array_state)


# ----------------------------------------------------------------------------- forward
def _naive_forward(params, x, spec, state):
    """An independent loop: per sequence and step, the mean and the biased variance written
    out with np.mean, then h = act(g * n + beta)."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z}
    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    T, B, _ = below.shape
    for layer, H in enumerate(spec.hidden, start=1):
        w_in, w_rec, g = p[f"layer{layer}.W_in"], p[f"layer{layer}.W_rec"], p[f"layer{layer}.g"]
        beta = p.get(f"layer{layer}.beta", np.zeros(H))
        h = backend.to_host(state[layer - 1])
        out = np.zeros((T, B, H))
        for t in range(T):
            for b in range(B):
                a = w_in @ below[t, b] + w_rec @ h[b]
                n = (a - np.mean(a)) / np.sqrt(np.mean((a - np.mean(a)) ** 2) + LN_EPS)
                out[t, b] = act[spec.activation](g * n + beta)
            h = out[t]
        below = out
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return y[-1] if spec.outputs == "last" else y


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden,bias", [([3], True), ([3, 4], True), ([4, 3], False)],
                         ids=["1layer", "2layers", "nobias"])
def test_forward_matches_a_naive_loop(xp, activation, outputs, hidden, bias):
    model = _ln(hidden, outputs, activation, bias=bias, seed=len(hidden))
    x, _, _, state, _ = _data(model, 4, 3, seed=1)
    _, cache = cc.check_forward(model, x, state,
                                _naive_forward(model.params, x, model.spec, state))
    # normalised: mean 0 and variance var(a) / (var(a) + eps) = 1 - eps * rstd^2
    norm, rstd = backend.to_host(cache.norm[0]), backend.to_host(cache.rstd[0])[..., 0]
    np.testing.assert_allclose(norm.mean(axis=-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(norm.var(axis=-1), 1 - LN_EPS * rstd ** 2, rtol=1e-13)


def test_a_hand_computed_step():
    """Two units, one step, h_0 = 0, W_in x = (1, 3): mean 2, variance 1, so
    n = (-1, 1) / sqrt(1 + eps) and h = relu(g * n + beta)."""
    model = make_model("elman", 1, 1, "last", dtype="float64", hidden=2, layer_norm=True)
    params = dict(model.params)
    params["layer1.W_in"] = _dev([[1.0], [3.0]])
    params["layer1.g"] = _dev([2.0, 0.5])
    params["layer1.beta"] = _dev([3.0, -1.0])
    params["out.W"] = _dev([[1.0, 10.0]])
    params["out.b"] = _dev([0.0])
    y, cache = model.forward(params, _dev(np.ones((1, 1, 1))))
    n = np.array([-1.0, 1.0]) / np.sqrt(1 + LN_EPS)
    h = np.maximum(np.array([2.0, 0.5]) * n + np.array([3.0, -1.0]), 0)
    np.testing.assert_allclose(backend.to_host(cache.h[0][1, 0]), h, rtol=1e-15)
    assert float(y[0, 0]) == pytest.approx(h[0] + 10 * h[1], rel=1e-15)


def test_layout_init_and_the_default_path():
    """layer_norm swaps each layer's b for a gain (ones) and, with bias, a shift (zeros); the
    same seed draws the same weights; without layer_norm nothing differs from before."""
    plain = make_model("elman", 2, 3, "every", seed=4, dtype="float64", hidden=[3, 4],
                       init="orthogonal")
    normed = make_model("elman", 2, 3, "every", seed=4, dtype="float64", hidden=[3, 4],
                        init="orthogonal", layer_norm=True)
    assert list(normed.params) == ["layer1.W_in", "layer1.W_rec", "layer1.g", "layer1.beta",
                                   "layer2.W_in", "layer2.W_rec", "layer2.g", "layer2.beta",
                                   "out.W", "out.b"]
    assert list(plain.params) == ["layer1.W_in", "layer1.W_rec", "layer1.b", "layer2.W_in",
                                  "layer2.W_rec", "layer2.b", "out.W", "out.b"]
    for k in plain.params:
        if not k.endswith(".b") or k == "out.b":
            np.testing.assert_array_equal(plain.params[k], normed.params[k])
    for i in (1, 2):
        np.testing.assert_array_equal(normed.params[f"layer{i}.g"], 1.0)
        np.testing.assert_array_equal(normed.params[f"layer{i}.beta"], 0.0)
    assert "layer_norm" not in plain.spec.to_dict() and normed.spec.to_dict()["layer_norm"]
    assert "layer_norm" not in repr(plain) and "layer_norm=True" in repr(normed)
    nobias = ElmanSpec(2, (3,), 1, "tanh", False, "last", True)
    assert list(nobias.param_shapes()) == ["layer1.W_in", "layer1.W_rec", "layer1.g", "out.W"]
    assert (plain.structural_form, normed.structural_form) == ("matching", "hidden")
    assert ((plain.spec.train_arrays_per_unit, plain.spec.eval_arrays_per_unit),
            (normed.spec.train_arrays_per_unit, normed.spec.eval_arrays_per_unit)) == \
        ((4, 2), (5, 3))


def test_bad_layer_norm_settings_are_refused():
    with pytest.raises(ConfigError, match=r"layer_norm needs hidden layers of at least 2 units"):
        make_model("elman", 2, 1, "last", hidden=[3, 1], layer_norm=True)
    with pytest.raises(ConfigError, match="layer_norm must be"):
        ElmanSpec(2, (3,), 1, layer_norm="yes")
    model = _ln([3], "last")
    plain = _ln([3], "last", layer_norm=False)
    x, _, _, _, _ = _data(model, 2, 2, seed=0)
    _, cache = plain.forward(plain.params, x)
    with pytest.raises(ConfigError, match="normalised pre-activations"):
        model.rop(model.params, model.params, cache)


# ----------------------------------------------------------------------------- gradients
CASES = [  # (hidden, outputs, activation, options)
    ([3], "every", "relu", {}),
    ([3], "last", "tanh", {}),
    ([3], "masked", "identity", {}),
    ([3, 4], "every", "tanh", {}),
    ([4, 3], "last", "relu", {}),
    ([3, 3], "masked", "tanh", {"bias": False}),
]


@pytest.mark.parametrize("hidden,outputs,activation,options", CASES)
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_param_gradients(hidden, outputs, activation, options, loss_name):
    model = _ln(hidden, outputs, activation, **options)
    cc.check_param_gradients(model, _data(model, 4, 2, seed=5, loss_name=loss_name), loss_name)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, activation):
    """L = loss(y) + <a, h_T> per layer: backward(d_final_state=[a]) gives dL/dparams and
    dL/dh_0."""
    model = _ln([3, 4], "every", activation, seed=2)
    cc.check_final_state_gradients(model, _data(model, 4, 2, seed=7))


# ----------------------------------------------------------------------------- R-op
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("outputs", ["every", "last"])
def test_rop_matches_finite_differences(xp, activation, outputs):
    model = _ln([3, 4], outputs, activation, seed=4)
    cc.check_rop_finite_differences(model, _data(model, 4, 3, seed=8))


@pytest.mark.parametrize("hidden,outputs,activation,options", CASES)
def test_rop_adjoint_dot_test(hidden, outputs, activation, options):
    model = _ln(hidden, outputs, activation, seed=6, **options)
    cc.check_rop_adjoint(model, _data(model, 5, 3, seed=9))


# ----------------------------------------------------------------------------- Gauss-Newton
@pytest.mark.parametrize("hidden,outputs,activation,loss_name", [
    ([3], "every", "tanh", "mse"), ([3], "last", "relu", "xent"),
    ([3, 3], "masked", "tanh", "xent")])
def test_gauss_newton_product_equals_formed_jt_h_j(xp, hidden, outputs, activation, loss_name):
    model = _ln(hidden, outputs, activation, n_in=2, n_out=2, seed=11)
    cc.check_gauss_newton(model, _data(model, 3, 2, seed=12, loss_name=loss_name), loss_name)


# ----------------------------------------------------------------------------- refusals
def test_structural_damping_refuses_the_matching_form():
    model = _ln([3], "every", "tanh")
    assert model.structural_form == "hidden"
    cc.check_refuses_matching_form(model, _data(model, 3, 2, seed=1),
                                   match="not defined with layer_norm = true; use "
                                         "structural_form 'hidden'")


LN_SPEC = ElmanSpec(2, (2,), 1, "relu", True, "every", True)


@pytest.mark.parametrize("name,call", ENTRY_POINTS, ids=[n for n, _ in ENTRY_POINTS])
def test_path_geometry_refuses_a_layer_normalised_model(name, call):
    for given in (LN_SPEC, ElmanRNN(LN_SPEC, {k: _dev(np.ones(s)) for k, s in
                                              LN_SPEC.param_shapes().items()})):
        with pytest.raises(ConfigError, match=r"needs the un-normalised Elman RNN; got "
                                              r"layer_norm = true") as info:
            call(given, _params(ElmanSpec(2, (2,), 1, "relu", True, "every")))
        assert name.split(".")[0] in str(info.value)
    assert require_elman(ElmanSpec(2, (2,), 1), what="test").layer_norm is False


def _train_config(optimizer, steps=2, **model):
    return cc.run_config({"name": "elman", "hidden": 4, "layer_norm": True, **model}, optimizer,
                         steps, clip=0.0, T=6, eval_every=1)


@pytest.mark.parametrize("optimizer,match", [
    ({"name": "path-sgd"}, r"optimizer 'path-sgd'.*: path geometry needs the un-normalised"),
    ({"name": "path-adam"}, r"optimizer 'path-adam'.*: path geometry needs the un-normalised"),
    ({"name": "gsgd"}, r"path geometry needs the un-normalised Elman RNN; got layer_norm"),
    ({"name": "psgd", "preconditioner": "kron"},
     r"optimizer 'psgd': the stacked \[W_in \| W_rec \| b\] Kronecker blocks .*layer_norm = "
     r"true")], ids=["path-sgd", "path-adam", "gsgd", "psgd-kron"])
def test_homogeneity_based_optimizers_refuse_a_layer_normalised_model(optimizer, match):
    with pytest.raises(ConfigError, match=match):
        run(_train_config(optimizer), MemorySink(), progress=False)


def test_the_optimizers_refuse_before_moving_anything():
    model = _ln([3], "last")
    x, targets, _, _, _ = _data(model, 3, 2, seed=3)
    _, grads, _ = objective.loss_and_grads(model, model.params, x, targets, losses.mse)
    before = {k: p.copy() for k, p in model.params.items()}
    with pytest.raises(ConfigError, match="layer_norm"):
        PathSGD().step(model.params, grads, model=model, batch=Batch(x, targets, None, None))
    with pytest.raises(ConfigError, match="layer_norm"):
        GSGD(skeleton_init=False).step(model.params, grads, model=model)
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])


def test_psgd_dense_still_runs_on_a_layer_normalised_model():
    cc.check_trains_through_run(_train_config({"name": "psgd", "preconditioner": "dense"}))


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("optimizer,model", [
    ({"name": "adam"}, {"activation": "relu", "init": "orthogonal"}),
    ({"name": "adam"}, {"activation": "tanh", "init": "identity", "layers": 2}),
    ({"name": "hf", "cg_max": 3}, {"activation": "tanh"})], ids=["adam-orth", "adam-id", "hf"])
def test_trains_through_run(optimizer, model):
    """RNN-orth and RNN-id with layer norm train with Adam; Hessian-free's structural_form
    "auto" takes the normalised model's "hidden" (its "matching" default would be refused)."""
    cc.check_trains_through_run(_train_config(optimizer, 4, **model))


# ----------------------------------------------------------------------------- hidden gradients
HG_CASES = [  # (activation, layer_norm, hidden, B): H >= 24 B runs BPTT's weights-first GEMM
    ("relu", False, [3], 3), ("tanh", False, [3, 2], 3), ("identity", False, [3, 2], 3),
    ("relu", False, [25], 1), ("tanh", True, [3], 3), ("relu", True, [4, 3], 3),
    ("identity", True, [3, 4], 3)]


@pytest.mark.parametrize("activation,layer_norm,hidden,B", HG_CASES)
@pytest.mark.parametrize("outputs", ["last", "every"])
def test_hidden_gradients_equal_the_state_gradient_of_a_split_sequence(activation, layer_norm,
                                                                       hidden, B, outputs):
    """The top layer's dL/dh_t against a split sequence's d_state (checked by central
    differences above and in tests/test_gradients.py), for both outputs modes."""
    model = _ln(hidden, outputs, activation, layer_norm=layer_norm, seed=9)
    cc.check_hidden_gradients_split(model, _data(model, 5, B, seed=10))


@pytest.mark.parametrize("activation,layer_norm", [("tanh", False), ("relu", True)])
def test_hidden_gradients_of_the_lower_layer_sum_its_two_paths(activation, layer_norm):
    """The path through layer 2 is taken by a 1-layer model made of layer 2 and the readout.
    (Layer 2 has 3 units: a normalised 2-unit layer is n = +-1 whatever its input, so almost
    no gradient would cross it.)"""
    model = _ln([3, 3], "last", activation, layer_norm=layer_norm, seed=13)
    s = model.spec
    upper = ElmanRNN(ElmanSpec(s.hidden[0], (s.hidden[1],), s.n_out, s.activation, s.bias,
                               "last", s.layer_norm),
                     {k.replace("layer2.", "layer1."): p for k, p in model.params.items()
                      if not k.startswith("layer1.")})
    cc.check_lower_hidden_gradients(model, upper, _data(model, 4, 2, seed=14))
