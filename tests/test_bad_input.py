"""Model-level bad input: every mistake is a ConfigError (a ValueError) whose message names the
argument and what is allowed."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, backend
from rnnlab.models import ElmanRNN, ElmanSpec


@pytest.fixture
def model():
    """2 inputs, hidden (3, 4), 2 outputs, float64, outputs at every step."""
    return ElmanRNN.create(2, (3, 4), 2, outputs="every", dtype="float64", init="orthogonal")


def _x(T=3, B=2, n_in=2, dtype=np.float64):
    return backend.to_device(np.ones((T, B, n_in), dtype=dtype))


def test_errors_are_value_errors(model):
    with pytest.raises(ValueError):
        model.forward(model.params, _x(n_in=5))


# ----------------------------------------------------------------------------- x
@pytest.mark.parametrize("shape,got", [((3, 2), r"\(3, 2\)"), ((3,), r"\(3,\)"),
                                       ((1, 3, 2, 2), r"\(1, 3, 2, 2\)")])
def test_x_wrong_ndim(xp, model, shape, got):
    with pytest.raises(ConfigError, match=rf"x must have shape \(\*, \*, 2\); got {got}"):
        model.forward(model.params, backend.to_device(np.ones(shape)))


def test_x_wrong_n_in(xp, model):
    with pytest.raises(ConfigError, match=r"x must have shape \(\*, \*, 2\); got \(3, 2, 3\)"):
        model.forward(model.params, _x(n_in=3))


def test_x_float64_with_float32_params(xp):
    model32 = ElmanRNN.create(2, 3, 1, dtype="float32")
    with pytest.raises(ConfigError, match=r"x has dtype float64 but the parameters are float32; "
                                          r"cast it with \.astype\('float32'\)"):
        model32.forward(model32.params, _x())


def test_x_float32_with_float64_params(xp, model):
    with pytest.raises(ConfigError, match="x has dtype float32 but the parameters are float64"):
        model.forward(model.params, _x(dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_x_integer(xp, model, dtype):
    with pytest.raises(ConfigError, match=r"x must have a floating dtype \(float32 or float64\); "
                                          rf"got {np.dtype(dtype).name}"):
        model.forward(model.params, _x(dtype=dtype))


def test_x_not_an_array(model):
    with pytest.raises(ConfigError, match="x must be a numpy array; got list"):
        model.forward(model.params, np.ones((3, 2, 2)).tolist())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_x_non_finite(xp, model, bad):
    x = np.ones((3, 2, 2))
    x[1, 0, 1] = bad
    with pytest.raises(ConfigError, match="x contains NaN or inf values"):
        model.forward(model.params, backend.to_device(x))


@pytest.mark.parametrize("T,B", [(0, 2), (3, 0), (0, 0)])
def test_x_empty(xp, model, T, B):
    with pytest.raises(ConfigError, match=rf"x must have T >= 1 steps and B >= 1 sequences; "
                                          rf"got shape \({T}, {B}, 2\)"):
        model.forward(model.params, _x(T=T, B=B))


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("hidden,message", [
    (0, "hidden must be an integer >= 1; got 0"),
    ((3, 0), "hidden must be an integer >= 1; got 0"),
    ((3, -2), "hidden must be an integer >= 1; got -2"),
    ((), r"hidden must list at least one layer width; got \(\)"),
    ((2.5,), "hidden must be an integer >= 1; got 2.5"),
])
def test_bad_hidden(hidden, message):
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.create(2, hidden, 1)


@pytest.mark.parametrize("field,value,message", [
    ("n_in", 0, "n_in must be an integer >= 1; got 0"),
    ("n_in", -1, "n_in must be an integer >= 1; got -1"),
    ("n_in", 2.0, "n_in must be an integer >= 1; got 2.0"),
    ("n_out", 0, "n_out must be an integer >= 1; got 0"),
])
def test_bad_sizes(field, value, message):
    sizes = {"n_in": 2, "hidden": 3, "n_out": 1, field: value}
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.create(**sizes)


@pytest.mark.parametrize("kwargs,message", [
    ({"activation": "sigmoid"}, r"activation must be one of relu, tanh, identity; "
                                r"got 'sigmoid'"),
    ({"init": "xavier"}, r"init must be one of identity, orthogonal, np-rnn, uniform, glorot; "
                         r"got 'xavier'"),
    ({"outputs": "all"}, r"outputs must be one of every, last, masked; got 'all'"),
    ({"bias": 1}, r"bias must be True or False; got 1"),
    ({"gain": -1.0}, r"gain must be a finite number >= 0; got -1.0"),
    ({"scale": 0.0}, r"scale must be a finite number > 0; got 0.0"),
    ({"dtype": "float16"}, r"dtype must be one of float32, float64; got 'float16'"),
])
def test_bad_create_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.create(2, 3, 1, **kwargs)


def test_spec_rejects_unknown_names_directly():
    with pytest.raises(ConfigError, match="activation must be one of"):
        ElmanSpec(2, (3,), 1, activation="ReLU")


# ----------------------------------------------------------------------------- state
def test_state_wrong_count(xp, model):
    with pytest.raises(ConfigError, match=r"state must hold one array per layer \(2\); got 1"):
        model.forward(model.params, _x(), [backend.to_device(np.zeros((2, 3)))])


@pytest.mark.parametrize("shapes,message", [
    (((2, 4), (2, 4)), r"state\[0\] must have shape \(2, 3\); got \(2, 4\)"),
    (((2, 3), (3, 4)), r"state\[1\] must have shape \(2, 4\); got \(3, 4\)"),
    (((2, 3), (4,)), r"state\[1\] must have shape \(2, 4\); got \(4,\)"),
])
def test_state_wrong_shape(xp, model, shapes, message):
    state = [backend.to_device(np.zeros(s)) for s in shapes]
    with pytest.raises(ConfigError, match=message):
        model.forward(model.params, _x(B=2), state)


def test_state_wrong_dtype_or_values(xp, model):
    with pytest.raises(ConfigError, match=r"state\[0\] has dtype float32 but the parameters "
                                          r"are float64"):
        model.forward(model.params, _x(), [backend.to_device(np.zeros((2, 3), np.float32)),
                                           backend.to_device(np.zeros((2, 4)))])
    bad = np.zeros((2, 4))
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match=r"state\[1\] contains NaN or inf values"):
        model.forward(model.params, _x(), [backend.to_device(np.zeros((2, 3))),
                                           backend.to_device(bad)])


# ----------------------------------------------------------------------------- backward
@pytest.mark.parametrize("outputs,shape,want", [
    ("every", (3, 2), r"\(3, 2, 2\)"), ("every", (2, 2), r"\(3, 2, 2\)"),
    ("masked", (3, 2, 1), r"\(3, 2, 2\)"), ("last", (3, 2, 2), r"\(2, 2\)"),
])
def test_dy_wrong_shape(xp, outputs, shape, want):
    m = ElmanRNN.create(2, (3, 4), 2, outputs=outputs, dtype="float64")
    _, cache = m.forward(m.params, _x())
    with pytest.raises(ConfigError, match=rf"dy must have shape {want}; got "):
        m.backward(m.params, backend.to_device(np.zeros(shape)), cache)


# ----------------------------------------------------------------------------- from_arrays
def _arrays(bias=True):
    rng = np.random.default_rng(0)
    out = {"layer1.W_in": rng.standard_normal((3, 2)), "layer1.W_rec": rng.standard_normal((3, 3)),
           "layer1.b": np.zeros(3), "out.W": rng.standard_normal((1, 3)), "out.b": np.zeros(1)}
    if not bias:
        del out["layer1.b"], out["out.b"]
    return out


@pytest.mark.parametrize("name,message", [
    ("layer1.W_rec", r"missing parameters \['layer1.W_rec'\]"),
    ("layer1.b", r"missing parameters \['layer1.b'\] \(biases go on all layers or none\)"),
])
def test_from_arrays_missing_name(name, message):
    arrays = _arrays()
    del arrays[name]
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.from_arrays(arrays)


def test_from_arrays_missing_output():
    arrays = _arrays()
    del arrays["out.W"]
    with pytest.raises(ConfigError, match=r"arrays must hold at least 'layer1.W_in', "
                                          r"'layer1.W_rec' and 'out.W'"):
        ElmanRNN.from_arrays(arrays)
    with pytest.raises(ConfigError, match="arrays must hold at least"):
        ElmanRNN.from_arrays({})


@pytest.mark.parametrize("extra", ["layer1.W_foo", "layer3.W_in", "out.bias"])
def test_from_arrays_unknown_name(extra):
    arrays = _arrays()
    arrays[extra] = np.zeros((3, 3))
    with pytest.raises(ConfigError, match=rf"unknown parameter names \['{extra}'\]; expected "):
        ElmanRNN.from_arrays(arrays)


def test_from_arrays_wrong_shape():
    arrays = _arrays()
    arrays["layer1.W_rec"] = np.zeros((3, 2))
    with pytest.raises(ConfigError, match=r"layer1.W_rec must have shape \(3, 3\); got \(3, 2\)"):
        ElmanRNN.from_arrays(arrays)
    arrays = _arrays()
    arrays["out.W"] = np.zeros((1, 4))
    with pytest.raises(ConfigError, match=r"out.W must have shape \(1, 3\); got \(1, 4\)"):
        ElmanRNN.from_arrays(arrays)


def test_from_arrays_non_finite_weights():
    arrays = _arrays()
    arrays["layer1.W_in"][0, 0] = np.inf
    with pytest.raises(ConfigError, match="layer1.W_in contains NaN or inf values"):
        ElmanRNN.from_arrays(arrays)


def test_constructor_checks_names_and_dtypes():
    good = ElmanRNN.from_arrays(_arrays(), dtype="float64")
    params = dict(good.params)
    params["out.b"] = params["out.b"].astype(np.float32)
    with pytest.raises(ConfigError, match=r"params must share one dtype; got \['float32', "
                                          r"'float64'\]"):
        ElmanRNN(good.spec, params)
    reordered = {k: good.params[k] for k in reversed(list(good.params))}
    with pytest.raises(ConfigError, match="params must have the keys"):
        ElmanRNN(good.spec, reordered)
