"""Model-level bad input: every mistake is a ConfigError (a ValueError) whose message names the
argument and what is allowed."""
from __future__ import annotations

import json

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
    ({"init": "xavier"}, r"init must be one of identity, orthogonal, np-rnn, uniform, glorot, sparse; "
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


# ----------------------------------------------------------------------------- params per call
# forward, backward and rop take params explicitly (checkers and optimizers pass other dicts
# than model.params), so each checks the dict it is given, once per call.
def _call(model, method, params):
    """Call ``method`` of ``model`` with ``params``, everything else valid (from model.params)."""
    x = _x()
    if method == "forward":
        return model.forward(params, x)
    y, cache = model.forward(model.params, x)
    if method == "backward":
        return model.backward(params, xp_ones_like(y), cache)
    v = {k: a.copy() for k, a in model.params.items()}
    return model.rop(params, v, cache)


def xp_ones_like(a):
    return backend.get_xp().ones_like(a)


def _replaced(model, name, value):
    return {k: (value if k == name else a) for k, a in model.params.items()}


METHODS = ["forward", "backward", "rop"]


@pytest.mark.parametrize("method", METHODS)
def test_params_missing_key(xp, model, method):
    params = {k: a for k, a in model.params.items() if k != "layer2.b"}
    with pytest.raises(ConfigError, match=r"params must have the keys \['layer1.W_in', .*\] in "
                                          r"that order; got .* \(missing \['layer2.b'\]\)"):
        _call(model, method, params)


def test_params_unknown_or_reordered_keys(xp, model):
    renamed = {("out.bias" if k == "out.b" else k): a for k, a in model.params.items()}
    with pytest.raises(ConfigError, match=r"\(missing \['out.b'\]; unknown \['out.bias'\]\)"):
        model.forward(renamed, _x())
    reordered = dict(reversed(list(model.params.items())))
    with pytest.raises(ConfigError, match=r"in that order; got \['out.b', .*\(out of order\)"):
        model.forward(reordered, _x())


@pytest.mark.parametrize("method", METHODS)
def test_params_not_a_dict(model, method):
    with pytest.raises(ConfigError, match=r"params must be a dict of arrays with the keys "
                                          r"\['layer1.W_in', .*\]; got list"):
        _call(model, method, list(model.params.values()))


@pytest.mark.parametrize("method", METHODS)
def test_params_wrong_recurrent_shape(xp, model, method):
    # without the check: NumPy's matmul error about "core dimension 0"
    params = _replaced(model, "layer2.W_rec", backend.to_device(np.zeros((4, 3))))
    with pytest.raises(ConfigError, match=r"layer2.W_rec must have shape \(4, 4\); got \(4, 3\)"):
        _call(model, method, params)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,shape,want", [("layer1.b", (1,), r"\(3,\)"),
                                             ("out.b", (1,), r"\(2,\)"),
                                             ("out.b", (1, 2), r"\(2,\)")])
def test_params_bias_does_not_broadcast(xp, model, method, name, shape, want):
    # without the check: y += b broadcasts a (1,) bias over every unit without a word
    params = _replaced(model, name, backend.to_device(np.zeros(shape)))
    with pytest.raises(ConfigError, match=rf"{name} must have shape {want}; "
                                          rf"got \({', '.join(map(str, shape))},?\)"):
        _call(model, method, params)


@pytest.mark.parametrize("method", METHODS)
def test_params_mixed_dtypes(xp, model, method):
    params = _replaced(model, "layer1.W_rec", model.params["layer1.W_rec"].astype(np.float32))
    with pytest.raises(ConfigError, match=r"params must share one dtype; got \['float32', "
                                          r"'float64'\] \(layer1.W_rec is float32\)"):
        _call(model, method, params)


@pytest.mark.parametrize("dtype,message", [
    (np.float16, "layer1.W_in must be float32 or float64; got float16"),
    (np.int64, "layer1.W_in must be float32 or float64; got int64"),
])
def test_params_not_float32_or_float64(xp, model, dtype, message):
    params = {k: a.astype(dtype) for k, a in model.params.items()}
    with pytest.raises(ConfigError, match=message):
        model.forward(params, _x())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["layer1.W_in", "layer1.b", "out.b"])
def test_params_list_instead_of_array(model, method, name):
    # without the check a list bias (or out.b) is converted silently; a list W_in fails with
    # AttributeError
    params = _replaced(model, name, backend.to_host(model.params[name]).tolist())
    with pytest.raises(ConfigError, match=rf"{name} must be a numpy array; got list"):
        _call(model, method, params)


def test_params_masked_array(model):
    hidden = np.ma.masked_invalid(np.full((3, 3), np.nan))  # every entry NaN, all masked
    with pytest.raises(ConfigError, match=r"layer1.W_rec must be a plain numpy array, not a "
                                          r"masked array"):
        model.forward(_replaced(model, "layer1.W_rec", hidden), _x())
    with pytest.raises(ConfigError, match=r"layer1.W_rec must be a plain numpy array, not a "
                                          r"masked array"):
        ElmanRNN(model.spec, _replaced(model, "layer1.W_rec", hidden))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself
def test_params_matrix_subclass(model):
    w = np.asmatrix(backend.to_host(model.params["layer1.W_rec"]))  # '*' is a matrix product
    with pytest.raises(ConfigError, match=r"layer1.W_rec must be a plain numpy array, not the "
                                          r"subclass matrix"):
        model.forward(_replaced(model, "layer1.W_rec", w), _x())


def test_params_memmap_is_a_plain_array(model, tmp_path):
    w = backend.to_host(model.params["layer1.W_rec"])
    mm = np.memmap(tmp_path / "w.dat", dtype=w.dtype, mode="w+", shape=w.shape)
    mm[:] = w
    y_mm, _ = model.forward(_replaced(model, "layer1.W_rec", mm), _x())
    y, _ = model.forward(model.params, _x())
    np.testing.assert_array_equal(y_mm, y)


def test_forward_does_not_scan_params_for_nan(xp, model):
    # training detects divergence from the loss; forward leaves non-finite weights to it
    w = backend.to_host(model.params["out.W"]).copy()
    w[0, 0] = np.nan
    y, _ = model.forward(_replaced(model, "out.W", backend.to_device(w)), _x())
    assert bool(backend.get_xp().isnan(y).any())


def test_x_masked_array_hiding_nan(model):
    x = np.ma.masked_invalid(np.where(np.arange(12).reshape(3, 2, 2) == 5, np.nan, 1.0))
    assert bool(np.isfinite(x).all())  # what the old check saw
    with pytest.raises(ConfigError, match=r"x must be a plain numpy array, not a masked array "
                                          r"\(its mask would hide NaN or inf from the checks\); "
                                          r"pass a.filled\(value\) or numpy.asarray\(a\)"):
        model.forward(model.params, x)


def test_dy_not_an_array(model):
    y, cache = model.forward(model.params, _x())
    with pytest.raises(ConfigError, match="dy must be a numpy array; got list"):
        model.backward(model.params, backend.to_host(y).tolist(), cache)


def test_d_final_state_checked(xp, model):
    y, cache = model.forward(model.params, _x())
    dy = xp_ones_like(y)
    zeros = [backend.to_device(np.zeros((2, 3))), backend.to_device(np.zeros((2, 4)))]
    with pytest.raises(ConfigError, match=r"d_final_state must hold one array per layer \(2\); "
                                          r"got 1"):
        model.backward(model.params, dy, cache, d_final_state=zeros[:1])
    with pytest.raises(ConfigError, match=r"d_final_state\[1\] must have shape \(2, 4\); "
                                          r"got \(2, 3\)"):
        model.backward(model.params, dy, cache, d_final_state=[zeros[0], zeros[0]])


@pytest.mark.parametrize("method", ["backward", "rop"])
def test_cache_from_another_model(xp, model, method):
    other = ElmanRNN.create(2, (3, 5), 2, outputs="every", dtype="float64")
    y, cache = other.forward(other.params, _x())
    v = {k: a.copy() for k, a in model.params.items()}
    with pytest.raises(ConfigError, match=r"cache does not come from this model's forward\(\)"):
        if method == "backward":
            model.backward(model.params, xp_ones_like(y), cache)
        else:
            model.rop(model.params, v, cache)
    with pytest.raises(ConfigError, match=r"cache must be the ElmanCache that forward\(\) "
                                          r"returned; got tuple"):
        model.backward(model.params, xp_ones_like(y), (y, cache))


@pytest.mark.parametrize("change,message", [
    (lambda v: v.pop("out.b"), r"v must have the keys .* \(missing \['out.b'\]\)"),
    (lambda v: v.update({"layer1.b": np.ones(1)}),
     r"v\['layer1.b'\] must have shape \(3,\); got \(1,\)"),
    (lambda v: v.update({"layer1.b": [1.0, 1.0, 1.0]}),
     r"v\['layer1.b'\] must be a numpy array; got list"),
    (lambda v: v.update({"out.W": v["out.W"].astype(np.float32)}),
     r"v\['out.W'\] has dtype float32 but the parameters are float64"),
])
def test_rop_direction_checked(model, change, message):
    _, cache = model.forward(model.params, _x())
    v = {k: a.copy() for k, a in model.params.items()}
    change(v)
    with pytest.raises(ConfigError, match=message):
        model.rop(model.params, v, cache)


# ----------------------------------------------------------------------------- create: seed
@pytest.mark.parametrize("seed,message", [
    (-1, "seed must be an integer >= 0; got -1"),
    (1.5, "seed must be an integer >= 0; got 1.5"),
    ("3", "seed must be an integer >= 0; got '3'"),
    (True, "seed must be an integer >= 0; got True"),
    (np.int64(-2), "seed must be an integer >= 0; got -2"),
])
def test_create_bad_seed(seed, message):
    # without the check: -1 failed inside NumPy ("expected non-negative integer"), 1.5 and True
    # were truncated by int()
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.create(2, 3, 1, seed=seed)


def test_create_numpy_integer_seed():
    a = ElmanRNN.create(2, 3, 1, seed=np.int64(7), init="orthogonal")
    b = ElmanRNN.create(2, 3, 1, seed=7, init="orthogonal")
    for k in a.params:
        np.testing.assert_array_equal(backend.to_host(a.params[k]), backend.to_host(b.params[k]))


# ----------------------------------------------------------------------------- from_arrays input
def test_from_arrays_not_a_mapping():
    with pytest.raises(ConfigError, match="arrays must be a dict of parameter names to arrays; "
                                          "got list"):
        ElmanRNN.from_arrays(list(_arrays().values()))


@pytest.mark.parametrize("name,value,message", [
    ("layer1.W_in", [[1.0, 2.0]] * 3, "layer1.W_in must be a NumPy or CuPy array; got list"),
    ("layer1.W_in", np.ones(3), r"layer1.W_in must be 2-D; got shape \(3,\)"),
    ("out.W", np.ones((1, 1, 3)), r"out.W must be 2-D; got shape \(1, 1, 3\)"),
    ("layer1.b", np.zeros((3, 1)), r"layer1.b must be 1-D; got shape \(3, 1\)"),
    ("layer1.W_rec", np.eye(3) * 1j, r"layer1.W_rec must hold real numbers \(a float or integer "
                                     r"dtype\); got complex128"),
    ("layer1.W_rec", np.eye(3, dtype=bool), r"must hold real numbers .*; got bool"),
    ("layer1.W_rec", np.ma.masked_invalid(np.full((3, 3), np.nan)),
     "layer1.W_rec must be a plain numpy array, not a masked array"),
])
def test_from_arrays_bad_values(name, value, message):
    arrays = _arrays()
    arrays[name] = value
    with pytest.raises(ConfigError, match=message):
        ElmanRNN.from_arrays(arrays)


def test_from_arrays_integer_arrays_are_cast():
    arrays = {k: np.round(a).astype(np.int64) for k, a in _arrays().items()}
    model = ElmanRNN.from_arrays(arrays, dtype="float64")
    assert all(a.dtype == np.float64 for a in model.params.values())


def test_constructor_rejects_list_params():
    good = ElmanRNN.from_arrays(_arrays(), dtype="float64")
    params = dict(good.params)
    params["out.b"] = [0.0]
    with pytest.raises(ConfigError, match="out.b must be a numpy array; got list"):
        ElmanRNN(good.spec, params)


# ----------------------------------------------------------------------------- NumPy scalars
def test_numpy_scalar_options_serialise():
    from rnnlab import RunConfig
    config = RunConfig(model={"hidden": np.int64(4), "layers": np.int64(2),
                              "gain": np.float64(0.5)},
                       optimizer={"name": "sgd", "lr": np.float64(0.1)})
    data = json.loads(config.to_json())
    assert data["model"]["hidden"] == 4 and type(config.model["hidden"]) is int
    assert data["model"]["layers"] == 2 and type(config.model["layers"]) is int
    assert data["model"]["gain"] == 0.5 and type(config.model["gain"]) is float
    assert data["optimizer"]["lr"] == 0.1 and type(config.optimizer["lr"]) is float
    widths = RunConfig(model={"hidden": [np.int64(4), np.int32(5)]})
    assert json.loads(widths.to_json())["model"]["hidden"] == [4, 5]
