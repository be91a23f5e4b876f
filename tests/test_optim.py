"""Optimizers against hand-written reference updates, checkpoints of their state, gradient
clipping, and messages for bad hyperparameters."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import SGD, Adam, ConfigError, backend, clip_grad_norm, make_optimizer
from rnnlab.optim import OPTIMIZERS, Optimizer

# the references repeat the same float64 arithmetic in another arrangement: round-off only
RTOL = 1e-12


def _grad_sequence(steps, seed=0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)} for _ in range(steps)]


def _initial():
    rng = np.random.default_rng(100)
    return {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(4)}


def _run(opt, grads_seq, params=None):
    """Apply ``opt`` over ``grads_seq`` on the active backend; return host params after each."""
    params = {k: backend.to_device(v) for k, v in (params or _initial()).items()}
    history = []
    for grads in grads_seq:
        opt.step(params, {k: backend.to_device(v) for k, v in grads.items()})
        history.append({k: backend.to_host(v).copy() for k, v in params.items()})
    return params, history


def _reference_sgd(lr, momentum, nesterov, grads_seq):
    p = _initial()
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    out = []
    for g in grads_seq:
        for k in p:
            if momentum == 0:
                p[k] = p[k] - lr * g[k]
            else:
                vel[k] = momentum * vel[k] + g[k]
                step = g[k] + momentum * vel[k] if nesterov else vel[k]
                p[k] = p[k] - lr * step
        out.append({k: v.copy() for k, v in p.items()})
    return out


def _reference_adam(lr, b1, b2, eps, grads_seq):
    """Kingma & Ba (2015), Algorithm 1, as printed."""
    p = _initial()
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    out = []
    for t, g in enumerate(grads_seq, start=1):
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = v[k] / (1 - b2 ** t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append({k: a.copy() for k, a in p.items()})
    return out


def _assert_history(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for k in w:
            np.testing.assert_allclose(g[k], w[k], rtol=RTOL, atol=RTOL)


# ----------------------------------------------------------------------------- updates
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.5, True),
                                               (0.9, True)])
def test_sgd_matches_reference(xp, momentum, nesterov):
    grads = _grad_sequence(5)
    params, history = _run(SGD(lr=0.1, momentum=momentum, nesterov=nesterov), grads)
    assert all(isinstance(v, xp.ndarray) and v.dtype == np.float64 for v in params.values())
    _assert_history(history, _reference_sgd(0.1, momentum, nesterov, grads))


def test_sgd_hand_computed():
    # lr 0.5, momentum 0.5, g = 1 every step, p0 = 0:
    # v1 = 1, p1 = -0.5;  v2 = 1.5, p2 = -1.25;  Nesterov: p1 = -0.5(1 + 0.5) = -0.75,
    # p2 = -0.75 - 0.5(1 + 0.75) = -1.625
    for nesterov, want in ((False, [-0.5, -1.25]), (True, [-0.75, -1.625])):
        p = {"w": np.zeros(1)}
        opt = SGD(lr=0.5, momentum=0.5, nesterov=nesterov)
        got = []
        for _ in range(2):
            opt.step(p, {"w": np.ones(1)})
            got.append(float(p["w"][0]))
        assert got == want  # exact in binary


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_matches_reference(xp, eps):
    """eps = 0.1 makes its placement matter: the library's eps-inside-the-bias-correction form
    is algebraically identical to the textbook form, a different placement would not be."""
    grads = _grad_sequence(6, seed=1)
    _, history = _run(Adam(lr=0.01, beta1=0.8, beta2=0.95, eps=eps), grads)
    _assert_history(history, _reference_adam(0.01, 0.8, 0.95, eps, grads))


def test_adam_first_step_is_lr_times_sign():
    # at step 1, m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps) ~ lr * sign(g)
    p = {"w": np.zeros(3)}
    Adam(lr=0.01, eps=1e-12).step(p, {"w": np.array([2.0, -0.5, 1e-3])})
    np.testing.assert_allclose(p["w"], [-0.01, 0.01, -0.01], rtol=1e-8)  # eps / |g| <= 1e-9


def test_step_updates_in_place():
    w = np.ones(3)
    params = {"w": w}
    SGD(lr=0.5).step(params, {"w": np.ones(3)})
    assert params["w"] is w
    np.testing.assert_array_equal(w, 0.5)


def test_step_rejects_mismatched_keys():
    with pytest.raises(ConfigError, match=r"grads must have the keys of params \['a', 'b'\]"):
        SGD().step({"a": np.zeros(1), "b": np.zeros(1)}, {"b": np.zeros(1), "a": np.zeros(1)})


@pytest.mark.parametrize("make", [SGD, lambda: SGD(momentum=0.9), Adam],
                         ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("grad,message", [
    (np.ones(1), r"grads\['b'\] must have its parameter's shape \(4,\); got \(1,\)"),
    (np.ones((1, 4)), r"grads\['b'\] must have its parameter's shape \(4,\); got \(1, 4\)"),
    (np.ones(4, dtype=np.int64), r"grads\['b'\] must have a dtype of the parameter's kind "
                                 r"\(float64\); got int64"),
    (np.ones(4, dtype=complex), r"grads\['b'\] must have a dtype of the parameter's kind"),
], ids=["shape-1", "shape-1x4", "int64", "complex"])
def test_step_rejects_gradient_unlike_its_parameter(xp, make, grad, message):
    # without the check a (1,) gradient broadcast over the (4,) bias and an integer one was cast
    params = {"w": backend.to_device(np.ones((3, 2))), "b": backend.to_device(np.ones(4))}
    grads = {"w": backend.to_device(np.ones((3, 2))), "b": backend.to_device(grad)}
    opt = make()
    with pytest.raises(ConfigError, match=message):
        opt.step(params, grads)
    assert opt.steps == 0  # a refused step is not counted ...
    np.testing.assert_array_equal(backend.to_host(params["w"]), 1.0)  # ... and changes nothing


def test_step_rejects_non_array_gradient():
    params = {"b": np.zeros(4)}
    with pytest.raises(ConfigError, match=r"grads\['b'\] must be a numpy.ndarray like its "
                                          r"parameter; got list"):
        SGD().step(params, {"b": [1.0] * 4})
    with pytest.raises(ConfigError, match=r"grads\['b'\] must be a numpy.ndarray like its "
                                          r"parameter; got MaskedArray"):
        SGD().step(params, {"b": np.ma.masked_invalid(np.array([np.nan, 1.0, 1.0, 1.0]))})
    with pytest.raises(ConfigError, match=r"params\['b'\] must be an array \(it is updated in "
                                          r"place\); got list"):
        SGD().step({"b": [0.0] * 4}, {"b": np.ones(4)})


def test_step_accepts_other_float_precision():
    # same dtype kind: a float32 gradient updates a float64 parameter (and casts back in place)
    p = {"w": np.zeros(2)}
    SGD(lr=0.5).step(p, {"w": np.ones(2, dtype=np.float32)})
    np.testing.assert_array_equal(p["w"], [-0.5, -0.5])
    assert p["w"].dtype == np.float64


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1, momentum=0.9),
                                  lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
                                  lambda: Adam(lr=0.01, beta1=0.8, beta2=0.9)],
                         ids=["momentum", "nesterov", "adam"])
def test_state_dict_round_trip(xp, make):
    grads = _grad_sequence(6, seed=2)
    first = make()
    params, _ = _run(first, grads[:3])
    state = first.state_dict()
    assert state["steps"] == 3
    assert all(type(a) is np.ndarray for slot in state["slots"].values() for a in slot.values())
    resumed = make()
    resumed.load_state_dict(state)
    resumed_params = {k: v.copy() for k, v in params.items()}
    # continue both from the same point with the same gradients
    _, h1 = _run(first, grads[3:], params={k: backend.to_host(v) for k, v in params.items()})
    _, h2 = _run(resumed, grads[3:],
                 params={k: backend.to_host(v) for k, v in resumed_params.items()})
    for a, b in zip(h1, h2):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])  # bit-for-bit
    # and the result is what an uninterrupted run gives
    _, h_full = _run(make(), grads)
    for a, b in zip(h1, h_full[3:]):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_state_dict_is_a_snapshot():
    opt = SGD(lr=0.1, momentum=0.9)
    _run(opt, _grad_sequence(2))
    state = opt.state_dict()
    saved = {k: v.copy() for k, v in state["slots"]["velocity"].items()}
    _run(opt, _grad_sequence(2, seed=5))  # later steps must not change the saved state
    for k, v in saved.items():
        np.testing.assert_array_equal(state["slots"]["velocity"][k], v)
    other = SGD(lr=0.1, momentum=0.9)
    other.load_state_dict(state)
    _run(other, _grad_sequence(1, seed=6))  # nor may a restored optimizer write into it
    for k, v in saved.items():
        np.testing.assert_array_equal(state["slots"]["velocity"][k], v)


# ----------------------------------------------------------------------------- clipping
def test_clip_scales_to_max_norm(xp):
    grads = {"a": backend.to_device(np.array([3.0, 0.0])),
             "b": backend.to_device(np.array([[4.0]]))}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == 5.0 and isinstance(norm, float)  # sqrt(9 + 16), before clipping
    np.testing.assert_allclose(backend.to_host(grads["a"]), [0.6, 0.0], rtol=1e-15)  # 1 ulp
    np.testing.assert_allclose(backend.to_host(grads["b"]), [[0.8]], rtol=1e-15)  # 1 ulp
    assert clip_grad_norm(grads, None) == pytest.approx(1.0, rel=1e-15)  # sqrt of a sum: ulps


def test_clip_leaves_small_gradients_alone():
    a = np.array([0.3, -0.4])
    grads = {"a": a}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(0.5, rel=1e-15)  # ulps
    assert grads["a"] is a
    np.testing.assert_array_equal(a, [0.3, -0.4])


def test_clip_none_only_measures():
    grads = {"a": np.array([30.0, 40.0])}
    assert clip_grad_norm(grads, None) == 50.0
    np.testing.assert_array_equal(grads["a"], [30.0, 40.0])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_clip_reports_non_finite_norm(bad):
    grads = {"a": np.array([bad, 1.0]), "b": np.ones(2)}
    norm = clip_grad_norm(grads, 1.0)
    assert (math.isinf(norm) if math.isinf(bad) else math.isnan(norm))
    np.testing.assert_array_equal(grads["b"], [1.0, 1.0])  # left for the trainer to judge


@pytest.mark.parametrize("max_norm", [-1.0, 0, 0.0, -np.inf, np.inf, np.nan, True, "1.0"])
def test_clip_rejects_bad_max_norm(max_norm):
    # without the check -1.0 multiplied the gradients by -1 / norm (reversing the step)
    a = np.array([3.0, 4.0])
    with pytest.raises(ConfigError, match=r"max_norm must be a finite number > 0, or None to "
                                          r"only measure; got "):
        clip_grad_norm({"a": a}, max_norm)
    np.testing.assert_array_equal(a, [3.0, 4.0])


def test_clip_as_the_trainer_calls_it():
    # rnnlab.train.run calls clip_grad_norm(grads, clip or None): clip = 0 means "no clipping"
    for clip in (0, 0.0, None):
        grads = {"a": np.array([30.0, 40.0])}
        assert clip_grad_norm(grads, clip or None) == 50.0
        np.testing.assert_array_equal(grads["a"], [30.0, 40.0])
    grads = {"a": np.array([30.0, 40.0])}
    assert clip_grad_norm(grads, np.float64(5.0)) == 50.0  # a NumPy scalar is a number
    np.testing.assert_allclose(grads["a"], [3.0, 4.0], rtol=1e-15)  # 1 ulp


# ----------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("kwargs,message", [
    ({"lr": 0.0}, r"lr must be a finite number > 0; got 0.0"),
    ({"lr": -1}, r"lr must be a finite number > 0; got -1.0"),
    ({"lr": math.inf}, r"lr must be a finite number > 0; got inf"),
    ({"lr": "0.1"}, r"lr must be a finite number > 0; got '0.1'"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\); got 1.0"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 1\); got 1.5"),
    ({"momentum": -0.1}, r"momentum must be a finite number >= 0; got -0.1"),
    ({"nesterov": True}, r"nesterov=True needs momentum > 0"),
])
def test_sgd_bad_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SGD(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": 0}, r"lr must be a finite number > 0; got 0"),
    ({"beta1": 1.0}, r"beta1 must be in \[0, 1\); got 1.0"),
    ({"beta2": 1.2}, r"beta2 must be in \[0, 1\); got 1.2"),
    ({"beta1": -0.5}, r"beta1 must be a finite number >= 0; got -0.5"),
    ({"eps": 0.0}, r"eps must be a finite number > 0; got 0.0"),
])
def test_adam_bad_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Adam(**kwargs)


def test_make_optimizer():
    opt = make_optimizer("sgd", lr=0.2, momentum=0.5)
    assert isinstance(opt, SGD)
    assert opt.hyperparameters == {"lr": 0.2, "momentum": 0.5, "nesterov": False}
    assert repr(opt) == "SGD(lr=0.2, momentum=0.5, nesterov=False)"
    assert isinstance(make_optimizer("adam"), Adam)
    names = ", ".join(OPTIMIZERS.names())
    assert names.startswith("sgd, adam, path-sgd, path-adam, gsgd, hf")  # registry order
    with pytest.raises(ConfigError, match=rf"optimizer must be one of {names}; got 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ConfigError, match=r"optimizer 'sgd' has no option 'learning_rate'; "
                                          r"its options: lr, momentum, nesterov"):
        make_optimizer("sgd", learning_rate=0.1)


class _NeedsClosure(Optimizer):
    name = "needs-closure"
    needs = {"closure"}

    def _update(self, params, grads, **needs):
        loss, _ = needs["closure"](params)
        for k, p in params.items():
            p -= loss * grads[k]


def test_optimizer_needs_are_enforced():
    opt = _NeedsClosure()
    params = {"w": np.ones(2)}
    with pytest.raises(ConfigError, match=r"needs-closure needs \['closure'\] passed to step\(\)"):
        opt.step(params, {"w": np.ones(2)})
    assert opt.steps == 0  # a refused step is not counted
    opt.step(params, {"w": np.ones(2)}, closure=lambda p: (0.5, None))
    np.testing.assert_array_equal(params["w"], [0.5, 0.5])
    assert opt.steps == 1
