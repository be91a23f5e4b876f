"""ElmanRNN.forward against an independent naive reference, hand-computed cases, chunked
(truncated-BPTT) forward, from_arrays and the initialisations of create().

The reference below is written from the equations in the ``models/elman.py`` docstring::

    h_t^0 = x_t,   h_0^i = state^i (zeros unless given)
    h_t^i = act(W_in^i h_t^{i-1} + W_rec^i h_{t-1}^i + b^i)
    y_t   = W_out h_t^d + b_out

with scalar Python loops over t, batch, layers and units, in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from rnnlab import backend
from rnnlab.models import ACTIVATIONS, INITS, OUTPUT_MODES, ElmanRNN, ElmanSpec

import strategies as S

# float64 round-off from different summation orders (GEMM vs scalar loops), amplified by at most
# 6 steps of a recurrence with weights of size ~0.5: observed ~1e-15, so 1e-12 leaves margin
# while any real bug gives O(1e-2) or more.
RTOL, ATOL = 1e-12, 1e-12


def _act(z: float, name: str) -> float:
    if name == "relu":
        return z if z > 0.0 else 0.0
    if name == "tanh":
        return math.tanh(z)
    assert name == "identity"
    return z


def reference_forward(arrays: dict, x, activation: str, outputs: str, state=None):
    """Naive stacked Elman forward. Returns (y, final_state) with y (T, B, n_out) for
    "every"/"masked" or (B, n_out) for "last", and final_state a list of (B, H_i)."""
    x = np.asarray(x, dtype=np.float64)
    T, B, n_in = x.shape
    d = 0
    while f"layer{d + 1}.W_in" in arrays:
        d += 1
    W_in = [np.asarray(arrays[f"layer{i}.W_in"], np.float64) for i in range(1, d + 1)]
    W_rec = [np.asarray(arrays[f"layer{i}.W_rec"], np.float64) for i in range(1, d + 1)]
    bias = [arrays.get(f"layer{i}.b") for i in range(1, d + 1)]
    W_out, b_out = np.asarray(arrays["out.W"], np.float64), arrays.get("out.b")
    widths = [w.shape[0] for w in W_rec]
    n_out = W_out.shape[0]
    # h[i][b] is the current hidden state (a Python list of floats) of layer i, sequence b
    h = [[[0.0 if state is None else float(state[i][b][j]) for j in range(widths[i])]
          for b in range(B)] for i in range(d)]
    y = np.zeros((T, B, n_out))
    for t in range(T):
        for b in range(B):
            below = [float(v) for v in x[t, b]]
            for i in range(d):
                new = []
                for j in range(widths[i]):
                    z = 0.0 if bias[i] is None else float(bias[i][j])
                    for k in range(len(below)):
                        z += W_in[i][j, k] * below[k]
                    for k in range(widths[i]):
                        z += W_rec[i][j, k] * h[i][b][k]
                    new.append(_act(z, activation))
                h[i][b] = new
                below = new
            for o in range(n_out):
                v = 0.0 if b_out is None else float(b_out[o])
                for k in range(len(below)):
                    v += W_out[o, k] * below[k]
                y[t, b, o] = v
    final = [np.array(h[i]) for i in range(d)]
    return (y[-1] if outputs == "last" else y), final


def _arch(n_in, hidden, n_out, activation, bias, outputs):
    return dict(n_in=n_in, hidden=tuple(hidden), n_out=n_out, activation=activation, bias=bias,
                outputs=outputs)


def _model(arrays, arch, dtype="float64"):
    return ElmanRNN.from_arrays(arrays, activation=arch["activation"], outputs=arch["outputs"],
                                dtype=dtype)


def _compare(xp, arch, T, B, seed, with_state):
    rng = np.random.default_rng(seed)
    arrays = S.host_arrays(arch, rng)
    x = rng.standard_normal((T, B, arch["n_in"]))
    state = S.host_state(arch, B, rng) if with_state else None
    model = _model(arrays, arch)
    dev_state = None if state is None else [backend.to_device(s) for s in state]
    y, cache = model.forward(model.params, backend.to_device(x), dev_state)
    # output lives on the input's backend with the input's dtype
    assert isinstance(y, xp.ndarray) and y.dtype == np.float64
    y_ref, final_ref = reference_forward(arrays, x, arch["activation"], arch["outputs"], state)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(backend.to_host(y), y_ref, rtol=RTOL, atol=ATOL)
    final = cache.final_state
    assert len(final) == len(arch["hidden"])
    for got, want in zip(final, final_ref):
        np.testing.assert_allclose(backend.to_host(got), want, rtol=RTOL, atol=ATOL)
    if with_state:  # the cache keeps the given initial state as h[i][0]
        for hi, s in zip(cache.h, state):
            np.testing.assert_array_equal(backend.to_host(hi[0]), s)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_weights_first_gemm_path(xp, activation):
    """Wide layers with a small batch run the recurrent GEMM as (H, H) @ (H, B) (see
    elman._weights_first); the result must not depend on that choice."""
    from rnnlab.models.elman import _weights_first
    arch = _arch(2, (30, 26), 2, activation, True, "every")
    assert _weights_first(1, 30) and _weights_first(1, 26)
    _compare(xp, arch, T=4, B=1, seed=5, with_state=True)


# ----------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("hidden", [(4,), (3, 2), (2, 4, 3)], ids=["1layer", "2layers", "3layers"])
@pytest.mark.parametrize("outputs", OUTPUT_MODES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_reference_grid(xp, activation, bias, outputs, hidden, with_state):
    arch = _arch(2, hidden, 3, activation, bias, outputs)
    seed = 100 * ACTIVATIONS.index(activation) + 10 * OUTPUT_MODES.index(outputs) + len(hidden)
    _compare(xp, arch, T=4, B=3, seed=seed + 1000 * bias, with_state=with_state)


def test_forward_width_one_input(xp):
    """n_in = 1 takes a different code path (broadcast instead of GEMM)."""
    for activation in ACTIVATIONS:
        _compare(xp, _arch(1, (3, 1), 2, activation, True, "every"), T=5, B=2, seed=11,
                 with_state=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=S.problems(), with_state=S.biases)
def test_forward_matches_reference_property(xp, problem, with_state):
    arch, T, B, seed = problem
    _compare(xp, arch, T, B, seed, with_state)


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=S.problems(), with_state=S.biases)
def test_forward_matches_reference_property_exhaustive(xp, problem, with_state):
    arch, T, B, seed = problem
    _compare(xp, arch, T, B, seed, with_state)


def test_forward_float32_matches_float64_reference(xp):
    arch = _arch(3, (5, 4), 2, "tanh", True, "every")
    rng = np.random.default_rng(3)
    arrays = S.host_arrays(arch, rng)
    x = rng.standard_normal((6, 4, 3))
    model = _model(arrays, arch, dtype="float32")
    y, cache = model.forward(model.params, backend.to_device(x, dtype="float32"))
    assert isinstance(y, xp.ndarray) and y.dtype == np.float32
    assert all(h.dtype == np.float32 for h in cache.h)
    y_ref, _ = reference_forward({k: v.astype(np.float32) for k, v in arrays.items()},
                                 x.astype(np.float32), "tanh", "every")
    # float32 eps is 6e-8; ~20 rounded operations per output and 6 steps keep errors ~1e-6
    np.testing.assert_allclose(backend.to_host(y), y_ref, rtol=1e-5, atol=1e-5)


def test_forward_does_not_modify_inputs(xp):
    arch = _arch(2, (3, 3), 2, "relu", True, "every")
    rng = np.random.default_rng(4)
    arrays = S.host_arrays(arch, rng)
    model = _model(arrays, arch)
    x = backend.to_device(rng.standard_normal((3, 2, 2)))
    state = [backend.to_device(s) for s in S.host_state(arch, 2, rng)]
    before = ({k: backend.to_host(v).copy() for k, v in model.params.items()},
              backend.to_host(x).copy(), [backend.to_host(s).copy() for s in state])
    model.forward(model.params, x, state)
    for k, v in model.params.items():
        np.testing.assert_array_equal(backend.to_host(v), before[0][k])
    np.testing.assert_array_equal(backend.to_host(x), before[1])
    for s, s0 in zip(state, before[2]):
        np.testing.assert_array_equal(backend.to_host(s), s0)


# ----------------------------------------------------------------------------- hand-computed
def _np_model(arrays, activation, outputs):
    return ElmanRNN.from_arrays({k: np.array(v, dtype=float) for k, v in arrays.items()},
                                activation=activation, outputs=outputs, dtype="float64")


def test_hand_computed_relu_two_steps(xp):
    # n_in=1, H=2, n_out=1, relu, x = [1, 2] (T=2, B=1), h_0 = 0.
    # W_in = [[1], [-1]], W_rec = [[0.5, 0], [3, 0.5]], b = [0, 0.5], W_out = [[1, 2]], b_out = 0.5
    # t=1: z = W_in*1 + b = [1, -0.5]            -> h_1 = [1, 0]    (second unit clipped)
    #      y_1 = 1*1 + 2*0 + 0.5 = 1.5
    # t=2: z = W_in*2 + W_rec h_1 + b = [2, -2] + [0.5, 3] + [0, 0.5] = [2.5, 1.5]
    #      h_2 = [2.5, 1.5];  y_2 = 2.5 + 2*1.5 + 0.5 = 6.0
    arrays = {"layer1.W_in": [[1], [-1]], "layer1.W_rec": [[0.5, 0], [3, 0.5]],
              "layer1.b": [0, 0.5], "out.W": [[1, 2]], "out.b": [0.5]}
    x = backend.to_device(np.array([1.0, 2.0]).reshape(2, 1, 1))
    model = _np_model(arrays, "relu", "every")
    y, cache = model.forward(model.params, x)
    np.testing.assert_array_equal(backend.to_host(y).ravel(), [1.5, 6.0])  # exact in binary
    np.testing.assert_array_equal(backend.to_host(cache.h[0])[:, 0, :],
                                  [[0, 0], [1, 0], [2.5, 1.5]])
    last = _np_model(arrays, "relu", "last")
    y_last, _ = last.forward(last.params, x)
    assert y_last.shape == (1, 1)
    np.testing.assert_array_equal(backend.to_host(y_last), [[6.0]])


def test_hand_computed_tanh_two_steps(xp):
    # n_in=H=n_out=1, no bias: W_in = 1, W_rec = 1, W_out = 2; tanh(ln a) = (a^2 - 1)/(a^2 + 1).
    # t=1: x_1 = ln 2        -> h_1 = tanh(ln 2) = 3/5 = 0.6, y_1 = 1.2
    # t=2: x_2 = ln 3 - 0.6  -> z_2 = ln 3 - 0.6 + 0.6 = ln 3, h_2 = 8/10 = 0.8, y_2 = 1.6
    arrays = {"layer1.W_in": [[1]], "layer1.W_rec": [[1]], "out.W": [[2]]}
    x = backend.to_device(np.array([math.log(2), math.log(3) - 0.6]).reshape(2, 1, 1))
    model = _np_model(arrays, "tanh", "every")
    assert model.spec.bias is False
    y, _ = model.forward(model.params, x)
    # a few ulps from evaluating tanh and log
    np.testing.assert_allclose(backend.to_host(y).ravel(), [1.2, 1.6], rtol=1e-14)


def test_hand_computed_identity_two_layers_with_state(xp):
    # layer1: W_in = 2, W_rec = 1, b = 1; layer2: W_in = 1, W_rec = -1, b = 0; out: W = 1, b = 0
    # state = [[3]], [[5]]; x = [1, 1].
    # t=1: h1 = 2*1 + 1*3 + 1 = 6;   h2 = 1*6 - 1*5 + 0 = 1;   y_1 = 1
    # t=2: h1 = 2*1 + 1*6 + 1 = 9;   h2 = 1*9 - 1*1 + 0 = 8;   y_2 = 8
    arrays = {"layer1.W_in": [[2]], "layer1.W_rec": [[1]], "layer1.b": [1],
              "layer2.W_in": [[1]], "layer2.W_rec": [[-1]], "layer2.b": [0],
              "out.W": [[1]], "out.b": [0]}
    model = _np_model(arrays, "identity", "every")
    x = backend.to_device(np.ones((2, 1, 1)))
    state = [backend.to_device(np.array([[3.0]])), backend.to_device(np.array([[5.0]]))]
    y, cache = model.forward(model.params, x, state)
    np.testing.assert_array_equal(backend.to_host(y).ravel(), [1.0, 8.0])
    assert [float(backend.to_host(s)[0, 0]) for s in cache.final_state] == [9.0, 8.0]


# ----------------------------------------------------------------------------- chunked forward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("outputs", OUTPUT_MODES)
def test_chunked_forward_equals_full_forward(xp, activation, outputs):
    arch = _arch(2, (3, 4), 2, activation, True, outputs)
    rng = np.random.default_rng(5)
    model = _model(S.host_arrays(arch, rng), arch)
    x = backend.to_device(rng.standard_normal((7, 3, 2)))
    y_full, cache_full = model.forward(model.params, x)
    state, pieces = None, []
    for start, stop in [(0, 2), (2, 5), (5, 6), (6, 7)]:
        y, cache = model.forward(model.params, x[start:stop], state)
        pieces.append(backend.to_host(y))
        state = cache.final_state
    if outputs == "last":
        got = pieces[-1]
    else:
        got = np.concatenate(pieces, axis=0)
    # same arithmetic up to GEMM blocking on different row counts: round-off only
    np.testing.assert_allclose(got, backend.to_host(y_full), rtol=RTOL, atol=ATOL)
    for a, b in zip(state, cache_full.final_state):
        np.testing.assert_allclose(backend.to_host(a), backend.to_host(b), rtol=RTOL, atol=ATOL)


def test_final_state_is_a_copy(xp):
    arch = _arch(1, (2,), 1, "tanh", True, "last")
    model = _model(S.host_arrays(arch, np.random.default_rng(0)), arch)
    _, cache = model.forward(model.params, backend.to_device(np.ones((3, 2, 1))))
    final = cache.final_state
    final[0][...] = 123.0
    assert float(backend.to_host(cache.h[0][-1]).max()) != 123.0


# ----------------------------------------------------------------------------- from_arrays
@pytest.mark.parametrize("bias", [True, False])
def test_from_arrays_round_trip(xp, bias):
    arch = _arch(3, (4, 2, 5), 2, "tanh", bias, "masked")
    arrays = S.host_arrays(arch, np.random.default_rng(6))
    model = ElmanRNN.from_arrays({k: backend.to_device(v) for k, v in arrays.items()},
                                 activation="tanh", outputs="masked", dtype="float64")
    assert model.spec == ElmanSpec(3, (4, 2, 5), 2, "tanh", bias, "masked")
    assert list(model.params) == list(S.spec_shapes(arch))  # names in the documented order
    for name, value in arrays.items():
        got = model.params[name]
        assert isinstance(got, xp.ndarray) and got.dtype == np.float64
        np.testing.assert_array_equal(backend.to_host(got), value)


def test_from_arrays_casts_to_requested_dtype():
    arrays = S.host_arrays(_arch(2, (3,), 1, "relu", True, "last"), np.random.default_rng(1))
    model = ElmanRNN.from_arrays(arrays, dtype="float32")
    assert {p.dtype for p in model.params.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(model.params["out.W"], arrays["out.W"].astype(np.float32))
    assert ElmanRNN.from_arrays(arrays).params["out.W"].dtype == backend.train_dtype()


def test_spec_param_shapes_and_to_dict():
    spec = ElmanSpec(3, [4, 2], 5, "tanh", True, "every")
    arch = _arch(3, (4, 2), 5, "tanh", True, "every")
    assert spec.param_shapes() == S.spec_shapes(arch)
    assert list(spec.param_shapes()) == list(S.spec_shapes(arch))
    assert spec.layers == 2 and spec.hidden == (4, 2)
    assert spec.to_dict() == dict(arch, hidden=[4, 2])
    assert ElmanSpec(1, 7, 1).hidden == (7,)  # an int is one layer


# ----------------------------------------------------------------------------- create() inits
def _create(init, seed=0, gain=1.0, scale=0.01, hidden=(5, 3)):
    return ElmanRNN.create(2, hidden, 3, init=init, gain=gain, scale=scale, seed=seed,
                           dtype="float64")


def _host(model):
    return {k: backend.to_host(v) for k, v in model.params.items()}


@pytest.mark.parametrize("gain", [1.0, 0.5, 2.0])
def test_init_identity(xp, gain):
    p = _host(_create("identity", gain=gain))
    for i, width in ((1, 5), (2, 3)):
        np.testing.assert_array_equal(p[f"layer{i}.W_rec"], gain * np.eye(width))


@pytest.mark.parametrize("gain", [1.0, 0.7])
def test_init_orthogonal(xp, gain):
    p = _host(_create("orthogonal", gain=gain, hidden=(6, 1)))
    for i, width in ((1, 6), (2, 1)):
        w = p[f"layer{i}.W_rec"]
        # QR in float64: orthogonality holds to ~1e-15 per entry
        np.testing.assert_allclose(w.T @ w, gain**2 * np.eye(width), atol=1e-12)
        np.testing.assert_allclose(w @ w.T, gain**2 * np.eye(width), atol=1e-12)
    assert not np.allclose(np.abs(p["layer1.W_rec"]), gain * np.eye(6))  # not a signed identity


@pytest.mark.parametrize("gain", [1.0, 0.9])
def test_init_np_rnn(xp, gain):
    p = _host(_create("np-rnn", gain=gain, hidden=(7, 2)))
    for name in ("layer1.W_rec", "layer2.W_rec"):
        w = p[name]
        np.testing.assert_array_equal(w, w.T)  # symmetric exactly: A^T A + I is
        eig = np.linalg.eigvalsh(w)
        assert eig.min() > 0
        # eigvalsh in float64: ~1e-15 relative
        assert eig.max() == pytest.approx(gain, rel=1e-12)
    assert not np.allclose(p["layer1.W_rec"], gain * np.eye(7))


@pytest.mark.parametrize("scale", [0.01, 0.3])
def test_init_uniform(xp, scale):
    gain = 1.5
    p = _host(_create("uniform", gain=gain, scale=scale, hidden=(20, 20)))
    for name, w in p.items():
        if name.endswith(".b"):
            continue
        bound = gain * scale if name.endswith("W_rec") else scale
        assert np.abs(w).max() <= bound
        # 400 draws from U(-a, a): the largest |w| is above 0.9 a unless all 400 land inside
        # (0.9^400 ~ 5e-19), so this catches a wrong scale
        assert np.abs(w).max() > 0.9 * bound or w.size < 40


@pytest.mark.parametrize("init", [i for i in INITS if i != "sparse"])
def test_init_feedforward_weights(init):
    """Input and output matrices: U(-scale, scale) under "identity" and "uniform" (the IRNN
    recipe), Glorot-uniform U(-sqrt(6/(fan_in+fan_out)), +...) otherwise (models/init.py)."""
    scale = 0.05
    p = _host(_create(init, scale=scale, hidden=(30, 20)))
    for name, (fan_out, fan_in) in (("layer1.W_in", (30, 2)), ("layer2.W_in", (20, 30)),
                                    ("out.W", (3, 20))):
        bound = scale if init in ("identity", "uniform") else math.sqrt(6 / (fan_in + fan_out))
        w = p[name]
        assert np.abs(w).max() <= bound
        # with >= 60 draws the largest |w| exceeds 0.9 bound unless all miss (0.9^60 ~ 2e-3;
        # seed fixed), which separates scale 0.05 from the Glorot bounds 0.25..0.9
        assert np.abs(w).max() > 0.9 * bound


def test_init_sparse_keeps_15_incoming_weights_per_unit(xp):
    """Martens (2010): each unit keeps min(15, fan_in) nonzero incoming weights, N(0, 1/15);
    the recurrent ones times the gain."""
    p = _host(_create("sparse", gain=0.5, hidden=(40, 10)))
    for name, fan_in in (("layer1.W_in", 2), ("layer1.W_rec", 40), ("layer2.W_in", 40),
                         ("layer2.W_rec", 10), ("out.W", 10)):
        nonzero = (p[name] != 0).sum(axis=1)
        assert (nonzero == min(15, fan_in)).all(), name
    values = p["layer1.W_rec"][p["layer1.W_rec"] != 0] / 0.5
    # 600 draws of N(0, 1/15): the sample std is within 10 % of 1/sqrt(15) (5 sigma ~ 14 %)
    assert np.std(values) == pytest.approx(1 / math.sqrt(15), rel=0.1)


def test_init_glorot_bounds():
    p = _host(_create("glorot", gain=2.0, hidden=(6,)))
    assert np.abs(p["layer1.W_rec"]).max() <= 2.0 * math.sqrt(6 / 12)
    assert np.abs(p["layer1.W_in"]).max() <= math.sqrt(6 / (6 + 2))
    assert np.abs(p["out.W"]).max() <= math.sqrt(6 / (3 + 6))


@pytest.mark.parametrize("init", INITS)
def test_init_biases_zero_and_seeds(xp, init):
    a = _host(_create(init, seed=1))
    b = _host(_create(init, seed=1))
    c = _host(_create(init, seed=2))
    assert list(a) == list(_create(init).spec.param_shapes())
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        if name.endswith(".b"):
            np.testing.assert_array_equal(a[name], 0.0)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    recurrent = [k for k in a if k.endswith("W_rec")]
    if init != "identity":
        assert all(not np.array_equal(a[k], c[k]) for k in recurrent)


def test_create_same_weights_on_every_backend(xp):
    """Initial weights are drawn on the host, so a seed gives the same model on every backend."""
    model = ElmanRNN.create(2, (4, 3), 1, init="orthogonal", seed=9, dtype="float64")
    with backend.use_backend("numpy"):
        ref = ElmanRNN.create(2, (4, 3), 1, init="orthogonal", seed=9, dtype="float64")
    for name, value in model.params.items():
        assert isinstance(value, xp.ndarray)
        np.testing.assert_array_equal(backend.to_host(value), ref.params[name])


def test_create_spec_fields():
    model = ElmanRNN.create(3, [4, 5], 2, activation="tanh", bias=False, outputs="every")
    assert model.spec == ElmanSpec(3, (4, 5), 2, "tanh", False, "every")
    assert "out.b" not in model.params and "layer1.b" not in model.params
    assert repr(model) == ("ElmanRNN(n_in=3, hidden=[4, 5], n_out=2, activation='tanh', "
                           "bias=False, outputs='every')")


def test_gain_zero_allowed():
    p = _host(_create("orthogonal", gain=0.0))
    np.testing.assert_array_equal(p["layer1.W_rec"], 0.0)

