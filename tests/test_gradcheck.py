"""The gradient checker cannot be fooled: non-finite gradients or loss values fail the check
(never pass with error 0), and bad arguments raise ConfigError naming the argument.

The checker on good input (kinks, floors, BPTT) is tested in tests/test_gradients.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import ConfigError, backend, gradcheck

TOL = 1e-6  # the checker's default pass threshold; a cubic in float64 checks to ~1e-9


def _cubic(xp):
    """L(w) = sum(w^3) + sum(v^2): params, the right gradient and the loss, on the backend."""
    params = {"w": backend.to_device(np.array([0.5, -1.0, 2.0])),
              "v": backend.to_device(np.array([[0.3, -0.7], [1.1, 0.2]]))}

    def loss_fn(p):
        return float((p["w"] ** 3).sum() + (p["v"] ** 2).sum())

    grads = {"w": 3 * params["w"] ** 2, "v": 2 * params["v"]}
    return loss_fn, params, grads


def _with_host(grads, name, host):
    return dict(grads, **{name: backend.to_device(host)})


def test_the_fixture_passes(xp):
    loss_fn, params, grads = _cubic(xp)
    report = gradcheck.check_gradients(loss_fn, params, grads)
    assert report.passed() and report.max_error < TOL and report.notes == {}
    assert gradcheck.check_directional(loss_fn, params, grads, directions=3) < TOL


# ----------------------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_nonfinite_gradients_fail(xp, bad):
    # old: NaN gradients gave max_error 0.0 and passed() True
    loss_fn, params, grads = _cubic(xp)
    grads = _with_host(grads, "w", np.full(3, bad))
    report = gradcheck.check_gradients(loss_fn, params, grads)
    assert not report.passed()
    assert report.max_error == math.inf and report.errors["w"] == math.inf
    assert report.errors["v"] < TOL  # the other parameter is still judged, and right
    assert "non-finite analytic gradient at 3 elements" in report.notes["w"]
    assert "w: non-finite analytic gradient" in str(report)
    assert "v" not in report.notes


def test_one_nan_element_fails_and_is_named(xp):
    loss_fn, params, grads = _cubic(xp)
    host = backend.to_host(grads["v"]).copy()
    host[1, 0] = np.nan
    report = gradcheck.check_gradients(loss_fn, params, _with_host(grads, "v", host))
    assert not report.passed() and report.errors["v"] == math.inf
    assert report.notes["v"] == "non-finite analytic gradient at 1 elements ((1, 0))"
    assert report.checked["v"] == 4  # the NaN element is judged (and fails), not skipped


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_nonfinite_loss_fails(xp, bad):
    # old: a loss closure returning NaN gave max_error 0.0 and passed() True
    _, params, grads = _cubic(xp)
    report = gradcheck.check_gradients(lambda p: bad, params, grads)
    assert not report.passed() and report.max_error == math.inf
    assert set(report.notes) == {"w", "v"}
    assert f"loss_fn(params) is {float(bad)}" in report.notes["w"]


def test_a_loss_nonfinite_only_at_a_perturbed_point_fails_and_names_the_element(xp):
    loss_fn, params, grads = _cubic(xp)
    w0 = backend.to_host(params["w"])

    def poisoned(p):  # NaN whenever w[1] is moved: a singularity next to the point
        return math.nan if backend.to_host(p["w"])[1] != w0[1] else loss_fn(p)

    report = gradcheck.check_gradients(poisoned, params, grads)
    assert not report.passed() and report.errors["w"] == math.inf
    assert report.errors["v"] < TOL
    assert "when moving 1 elements ((1,))" in report.notes["w"]


def test_a_report_with_a_nan_error_never_passes():
    # old: max() drops a NaN that is not first, so max_error was 0.0 and passed() True
    for errors in ({"a": math.nan, "b": 0.0}, {"a": 0.0, "b": math.nan}):
        report = gradcheck.GradCheckReport(errors, {"a": 1, "b": 1}, {"a": 0, "b": 0})
        assert math.isnan(report.max_error) and not report.passed()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_check_directional_with_nonfinite_gradients_or_loss_is_inf(xp, bad):
    # old: NaN gradients returned 0.0 (a pass at any tolerance)
    loss_fn, params, grads = _cubic(xp)
    host = backend.to_host(grads["w"]).copy()
    host[2] = bad
    assert gradcheck.check_directional(loss_fn, params, _with_host(grads, "w", host)) == math.inf
    assert gradcheck.check_directional(lambda p: bad, params, grads) == math.inf


# ----------------------------------------------------------------------------- bad arguments
def _both(*args, **kwargs):
    """Call check_gradients and check_directional with the same bad input."""
    return [lambda: gradcheck.check_gradients(*args, **kwargs),
            lambda: gradcheck.check_directional(*args, **kwargs)]


def test_wrong_shaped_gradients_are_refused():
    # old: IndexError (check_gradients) or a broadcasting ValueError (check_directional)
    loss_fn, params, grads = _cubic(np)
    for shape in [(2,), (3, 1), ()]:
        bad = dict(grads, w=np.zeros(shape))
        for call in _both(loss_fn, params, bad):
            with pytest.raises(ConfigError, match=r"grads\['w'\] must have the shape of "
                                                  r"params\['w'\], \(3,\); got"):
                call()


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64"])
def test_non_float64_gradients_are_refused(dtype):
    # old: float32 gradients were accepted
    loss_fn, params, grads = _cubic(np)
    bad = dict(grads, v=grads["v"].astype(dtype))
    for call in _both(loss_fn, params, bad):
        with pytest.raises(ConfigError,
                           match=f"need float64 gradients; grads\\['v'\\] is {dtype}"):
            call()


def test_non_array_gradients_and_wrong_keys_are_refused():
    loss_fn, params, grads = _cubic(np)
    for call in _both(loss_fn, params, dict(grads, w=[0.0, 0.0, 0.0])):
        with pytest.raises(ConfigError, match="need float64 gradients; grads\\['w'\\] is list"):
            call()
    for call in _both(loss_fn, params, {"w": grads["w"]}):
        with pytest.raises(ConfigError, match="grads must have the keys of params"):
            call()


@pytest.mark.parametrize("eps", [0.0, -1e-5, math.nan, math.inf])
def test_eps_must_be_finite_and_positive(eps):
    # old: eps = 0 raised ZeroDivisionError; negative, NaN or inf eps were used as given
    loss_fn, params, grads = _cubic(np)
    for call in _both(loss_fn, params, grads, eps=eps):
        with pytest.raises(ConfigError, match="eps must be a finite number > 0"):
            call()


@pytest.mark.parametrize("kwargs,match", [
    (dict(floor=0.0), "floor must be a finite number > 0"),
    (dict(floor=math.nan), "floor must be a finite number > 0"),
    (dict(kink_tol=-1.0), r"kink_tol must be a number >= 0 \(inf allowed\)"),
    (dict(kink_tol=math.nan), r"kink_tol must be a number >= 0 \(inf allowed\)"),
    (dict(names=["nope"]), r"names must be a non-empty list of keys of params \['w', 'v'\]"),
    (dict(names=[]), "names must be a non-empty list of keys of params"),
])
def test_check_gradients_refuses_bad_options(kwargs, match):
    # old: floor 0 divided by zero at an element with zero gradient; unknown names KeyError
    _, params, grads = _cubic(np)
    loss_fn = lambda p: float((p["w"] ** 3).sum())  # noqa: E731 (v has zero gradient)
    grads = dict(grads, v=np.zeros((2, 2)))
    with pytest.raises(ConfigError, match=match):
        gradcheck.check_gradients(loss_fn, params, grads, **kwargs)


def test_a_single_name_is_one_parameter():
    # old: a str was split into characters, so names="out.W" asked for 'o', 'u', 't', ...
    params = {"out.W": np.array([0.5, -1.0]), "out.b": np.array([2.0])}
    grads = {"out.W": 2 * params["out.W"], "out.b": np.zeros(1)}
    report = gradcheck.check_gradients(lambda p: float((p["out.W"] ** 2).sum()), params, grads,
                                       names="out.W")
    assert list(report.errors) == ["out.W"] and report.passed()


@pytest.mark.parametrize("directions", [0, -2, 1.5, True])
def test_check_directional_needs_at_least_one_direction(directions):
    # old: directions = 0 checked nothing and returned 0.0
    loss_fn, params, grads = _cubic(np)
    with pytest.raises(ConfigError, match="directions must be an integer >= 1"):
        gradcheck.check_directional(loss_fn, params, grads, directions=directions)


def test_empty_params_and_non_scalar_losses_are_refused():
    with pytest.raises(ConfigError, match="params must be a non-empty dict"):
        gradcheck.check_gradients(lambda p: 0.0, {}, {})
    _, params, grads = _cubic(np)
    with pytest.raises(ConfigError, match="loss_fn must return a real scalar; got NoneType"):
        gradcheck.check_gradients(lambda p: None, params, grads)
