"""The JANET (rnnlab.models.janet) in float64: forward against an independent naive loop and a
hand-computed step, BPTT against central differences (parameters, initial state,
d_final_state) over beta, the inits and the outputs modes, the R-op against finite differences
and the adjoint test, Gauss-Newton products against J^T H J (with structural damping on h),
hidden_gradients, the initialisations and option checks, and training through ``run()`` with
Adam and Hessian-free. The generic checks and their tolerances are those of
tests/cell_checks.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import cell_checks as cc
from rnnlab import ConfigError, backend
from rnnlab.models import JANET, JANETSpec, make_model
from rnnlab.train.memory import estimate_bytes

_dev = cc.dev


def _janet(hidden, outputs, **kw):
    return cc.noisy_model("janet", hidden, outputs, **kw)


def _data(model, T, B, seed, loss_name="mse"):
    return cc.make_data(model, T, B, seed, loss_name, cc.array_state)


# ----------------------------------------------------------------------------- forward
def _naive_forward(params, x, hidden, outputs, state, beta):
    """An independent loop: per gate block, per step, sigma as 1 / (1 + exp(-z)) and the input
    gate written as the paper writes it, 1 - sigma(s - beta)."""
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    finals = []
    for layer, H in enumerate(hidden, start=1):
        w_in, w_rec = p[f"layer{layer}.W_in"], p[f"layer{layer}.W_rec"]
        b = p.get(f"layer{layer}.b", np.zeros(2 * H))
        F, C = slice(0, H), slice(H, 2 * H)
        c = backend.to_host(state[layer - 1])
        out = []
        for t in range(below.shape[0]):
            s = below[t] @ w_in[F].T + c @ w_rec[F].T + b[F]
            cand = np.tanh(below[t] @ w_in[C].T + c @ w_rec[C].T + b[C])
            c = sig(s) * c + (1 - sig(s - beta)) * cand
            out.append(c)
        finals.append(c)
        below = np.stack(out)
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return (y[-1] if outputs == "last" else y), finals


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"beta": -0.7}],
                         ids=["default", "nobias", "beta"])
def test_forward_matches_a_naive_loop(xp, outputs, hidden, options):
    model = _janet(hidden, outputs, seed=len(hidden), **options)
    x, _, _, state, _ = _data(model, 5, 3, seed=1)
    cc.check_forward(model, x, state,
                     *_naive_forward(model.params, x, hidden, outputs, state, model.spec.beta))


def test_a_hand_computed_step():
    """One unit, one step, x = 1, all weights 0 except biases and W_out = 1:
    c_1 = sigma(b_f) c_0 + (1 - sigma(b_f - beta)) tanh(b_c)."""
    model = make_model("janet", 1, 1, "last", dtype="float64", hidden=1, beta=0.5)
    xpm = backend.get_xp()
    params = {k: xpm.zeros_like(p) for k, p in model.params.items()}
    params["layer1.b"] = _dev([0.3, -0.8])
    params["out.W"] = _dev([[1.0]])
    y, _ = model.forward(params, _dev(np.ones((1, 1, 1))), [_dev([[0.6]])])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    want = sig(0.3) * 0.6 + (1 - sig(0.3 - 0.5)) * np.tanh(-0.8)
    assert float(y[0, 0]) == pytest.approx(want, rel=1e-14)


def test_chunks_carrying_state_equal_one_pass():
    """Truncated BPTT's forward: two chunks with the state carried equal one pass."""
    model = _janet([3, 2], "every")
    x, _, _, state, _ = _data(model, 6, 2, seed=3)
    cc.check_chunks_equal_one_pass(model, x, state)


# ----------------------------------------------------------------------------- gradients
CASES = [  # (hidden, outputs, options)
    ([3], "every", {}),
    ([3], "last", {"beta": 2.5}),
    ([3], "masked", {}),
    ([3, 2], "every", {"forget_bias": -0.5, "beta": -1.0}),
    ([3, 2], "last", {"init": "chrono", "chrono_T": 10}),
    ([2, 3], "masked", {"bias": False}),
]


@pytest.mark.parametrize("hidden,outputs,options", CASES)
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_param_gradients(hidden, outputs, options, loss_name):
    model = _janet(hidden, outputs, **options)
    cc.check_param_gradients(model, _data(model, 4, 2, seed=5, loss_name=loss_name), loss_name)


@pytest.mark.parametrize("outputs", ["every", "last"])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, outputs):
    """L = loss(y) + <a, h_T> per layer: backward(d_final_state=[a]) gives dL/dparams and
    dL/dh_0."""
    model = _janet([3, 2], outputs, seed=2)
    cc.check_final_state_gradients(model, _data(model, 4, 2, seed=7))


# ----------------------------------------------------------------------------- R-op
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_rop_matches_finite_differences(xp, outputs, hidden):
    model = _janet(hidden, outputs, seed=4, beta=0.4)
    cc.check_rop_finite_differences(model, _data(model, 5, 3, seed=8))


@pytest.mark.parametrize("hidden,outputs,options", CASES)
def test_rop_adjoint_dot_test(hidden, outputs, options):
    model = _janet(hidden, outputs, seed=6, **options)
    cc.check_rop_adjoint(model, _data(model, 5, 3, seed=9))


# ----------------------------------------------------------------------------- Gauss-Newton
@pytest.mark.parametrize("hidden,outputs,loss_name", [
    ([2], "every", "mse"), ([2], "last", "xent"), ([2, 2], "masked", "xent")])
def test_gauss_newton_product_equals_formed_jt_h_j(xp, hidden, outputs, loss_name):
    model = _janet(hidden, outputs, n_in=2, n_out=2, seed=11)
    cc.check_gauss_newton(model, _data(model, 3, 2, seed=12, loss_name=loss_name), loss_name)


def test_structural_damping_refuses_the_matching_form():
    model = _janet([2], "every")
    assert model.structural_form == "hidden"
    cc.check_refuses_matching_form(model, _data(model, 3, 2, seed=1))


# ----------------------------------------------------------------------------- hidden gradients
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_hidden_gradients_equal_the_state_gradient_of_a_split_sequence(hidden):
    model = _janet(hidden, "last", seed=9)
    cc.check_hidden_gradients_split(model, _data(model, 5, 3, seed=10))


def test_hidden_gradients_of_the_lower_layer_sum_its_two_paths():
    """The second path is through a 1-layer JANET made of layer 2 and the readout."""
    model = _janet([3, 2], "last", seed=13)
    s = model.spec
    upper = JANET(JANETSpec(s.hidden[0], (s.hidden[1],), s.n_out, s.bias, "last", s.beta),
                  {k.replace("layer2.", "layer1."): p for k, p in model.params.items()
                   if not k.startswith("layer1.")})
    cc.check_lower_hidden_gradients(model, upper, _data(model, 4, 2, seed=14))


# ----------------------------------------------------------------------------- inits, options
def test_chrono_init_bias_ranges():
    T_max, H = 50, 64
    model = make_model("janet", 3, 2, "last", seed=3, dtype="float64", hidden=[H, H],
                       init="chrono", chrono_T=T_max)
    for i in (1, 2):
        b = backend.to_host(model.params[f"layer{i}.b"])
        b_f, b_c = b[:H], b[H:]
        assert b_f.min() >= 0.0 and b_f.max() <= np.log(T_max - 1)
        # exp(b_f) ~ U[1, T_max - 1]: 64 draws reach both ends' fifths (fails with p ~ 1e-6)
        span = T_max - 2
        u = np.exp(b_f)
        assert u.min() < 1 + 0.2 * span and u.max() > T_max - 1 - 0.2 * span
        np.testing.assert_array_equal(b_c, 0.0)
    assert not np.array_equal(backend.to_host(model.params["layer1.b"]),
                              backend.to_host(model.params["layer2.b"]))


def test_orthogonal_init_and_forget_bias():
    H = 5
    model = make_model("janet", 3, 2, "every", seed=1, dtype="float64", hidden=H,
                       forget_bias=2.0)
    assert model.spec.beta == 1.0  # the paper's value by default
    b = backend.to_host(model.params["layer1.b"])
    np.testing.assert_array_equal(b[:H], 2.0)
    np.testing.assert_array_equal(b[H:], 0.0)
    w_rec = backend.to_host(model.params["layer1.W_rec"])
    assert w_rec.shape == (2 * H, H)
    for k in range(2):  # each gate's recurrent block is orthogonal
        q = w_rec[k * H:(k + 1) * H]
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    again = make_model("janet", 3, 2, "every", seed=1, dtype="float64", hidden=H,
                       forget_bias=2.0)
    for k in model.params:  # seeded
        np.testing.assert_array_equal(model.params[k], again.params[k])


def test_options_are_checked():
    with pytest.raises(ConfigError, match="chrono_T"):
        make_model("janet", 2, 1, "last", hidden=3, init="chrono")
    with pytest.raises(ConfigError, match="bias = true"):
        make_model("janet", 2, 1, "last", hidden=3, init="chrono", chrono_T=5, bias=False)
    with pytest.raises(ConfigError, match="beta"):
        make_model("janet", 2, 1, "last", hidden=3, beta=float("nan"))
    with pytest.raises(ConfigError, match="layers"):
        make_model("janet", 2, 1, "last", hidden=[3, 2], layers=3)
    with pytest.raises(Exception, match="no option 'activation'"):
        make_model("janet", 2, 1, "last", activation="relu")
    model = make_model("janet", 2, 1, "last", hidden=4, layers=2, beta=0.5, dtype="float64")
    assert model.spec.hidden == (4, 4) and model.spec.kind == "janet"
    assert JANET.spec_for(2, 1, "last", hidden=4, layers=2).param_shapes() == {
        k: tuple(p.shape) for k, p in model.params.items()}
    assert model.spec.to_dict()["beta"] == 0.5
    x = _dev(np.zeros((3, 2, 2)))
    with pytest.raises(ConfigError, match=r"state\[0\]"):
        model.forward(model.params, x, [_dev(np.zeros((2, 3)))] * 2)


def test_memory_estimate_counts_the_gates():
    """The trainer's estimate grows with the arrays a JANET keeps per unit (7 in training, 4
    in evaluation: more than the Elman RNN's 4 and 2)."""
    config = _config({"name": "adam"}, 1)
    task = type("Task", (), {"T": 100})()
    janet = JANET.spec_for(1, 1, "last", hidden=50)
    elman = make_model("elman", 1, 1, "last", hidden=50).spec
    per = {name: estimate_bytes(config, task, spec) for name, spec in
           (("janet", janet), ("elman", elman))}
    assert per["janet"]["training batch"] > per["elman"]["training batch"]
    assert janet.train_arrays_per_unit == 7 and janet.eval_arrays_per_unit == 4


# ----------------------------------------------------------------------------- training
def _config(optimizer, steps, clip=None, **model):
    return cc.run_config({"name": "janet", "hidden": 6, **model}, optimizer, steps, clip=clip)


@pytest.mark.parametrize("optimizer,clip,model", [
    ({"name": "adam"}, None, {"init": "chrono", "chrono_T": 8}),
    ({"name": "hf", "cg_max": 5}, 0.0, {})], ids=["adam-chrono", "hf"])
def test_trains_through_run(optimizer, clip, model):
    """Adam, and Hessian-free whose structural_form "auto" takes the JANET's "hidden"."""
    cc.check_trains_through_run(_config(optimizer, 4, clip, **model))
