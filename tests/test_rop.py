"""The R-op (forward-mode J v) against central differences of forward, and the adjoint ("dot")
test <J v, u> = <v, J^T u> with J^T u from backward(dy=u), in float64."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from rnnlab import backend
from rnnlab.models import ACTIVATIONS, OUTPUT_MODES, ElmanRNN

import strategies as S

EPS = 1e-5
# central differences: truncation ~eps^2 |f'''| ~ 1e-10 and round-off ~1e-16 |y| / eps ~ 1e-11,
# relative to outputs and derivatives of size ~1: 1e-7 leaves margin; a bug is O(1e-2) or more
FD_RTOL = 1e-7
# the dot test compares two float64 sums of the same products in different orders: ~1e-15
DOT_RTOL = 1e-12


def _arch(hidden, activation, outputs, bias=True, n_in=2, n_out=3):
    return dict(n_in=n_in, hidden=tuple(hidden), n_out=n_out, activation=activation, bias=bias,
                outputs=outputs)


def _problem(arch, T, B, seed, with_state):
    rng = np.random.default_rng(seed)
    model = ElmanRNN.from_arrays(S.host_arrays(arch, rng), activation=arch["activation"],
                                 outputs=arch["outputs"], dtype="float64")
    x = backend.to_device(rng.standard_normal((T, B, arch["n_in"])))
    state = ([backend.to_device(s) for s in S.host_state(arch, B, rng)] if with_state else None)
    v = {k: backend.to_device(rng.standard_normal(p.shape)) for k, p in model.params.items()}
    return model, x, state, v, rng


def _moved(params, v, step):
    return {k: params[k] + step * v[k] for k in params}


def _check_rop_fd(arch, T, B, seed, with_state):
    model, x, state, v, _ = _problem(arch, T, B, seed, with_state)
    y, cache = model.forward(model.params, x, state)
    r_y, r_h = model.rop(model.params, v, cache)
    xp = backend.get_xp()
    assert isinstance(r_y, xp.ndarray) and r_y.shape == y.shape and r_y.dtype == np.float64
    y_plus, c_plus = model.forward(_moved(model.params, v, EPS), x, state)
    y_minus, c_minus = model.forward(_moved(model.params, v, -EPS), x, state)
    fd = (backend.to_host(y_plus) - backend.to_host(y_minus)) / (2 * EPS)
    got = backend.to_host(r_y)
    np.testing.assert_allclose(got, fd, rtol=FD_RTOL, atol=FD_RTOL * max(1.0, np.abs(fd).max()))
    assert len(r_h) == len(arch["hidden"])
    for rh, hp, hm in zip(r_h, c_plus.h, c_minus.h):
        rh = backend.to_host(rh)
        np.testing.assert_array_equal(rh[0], 0.0)  # the initial state is a constant
        fd_h = (backend.to_host(hp) - backend.to_host(hm)) / (2 * EPS)
        np.testing.assert_allclose(rh, fd_h, rtol=FD_RTOL,
                                   atol=FD_RTOL * max(1.0, np.abs(fd_h).max()))


def _check_adjoint(arch, T, B, seed, with_state):
    model, x, state, v, rng = _problem(arch, T, B, seed, with_state)
    y, cache = model.forward(model.params, x, state)
    u = backend.to_device(rng.standard_normal(y.shape))
    r_y, _ = model.rop(model.params, v, cache)
    jt_u, _ = model.backward(model.params, u, cache)
    xp = backend.get_xp()
    lhs = float(xp.vdot(r_y, u))
    rhs = sum(float(xp.vdot(v[k], jt_u[k])) for k in v)
    scale = float(xp.abs(r_y * u).sum())  # the size of the terms being summed
    assert abs(lhs - rhs) <= DOT_RTOL * scale, (lhs, rhs)


GRID = pytest.mark.parametrize("activation,outputs,hidden", [
    (a, o, h) for a in ACTIVATIONS for o in OUTPUT_MODES for h in [(3,), (3, 2), (2, 4, 3)]])


@GRID
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_rop_matches_finite_differences(xp, activation, outputs, hidden, with_state):
    _check_rop_fd(_arch(hidden, activation, outputs), T=4, B=3, seed=len(hidden) + 7,
                  with_state=with_state)


@GRID
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_rop_adjoint_dot_test(xp, activation, outputs, hidden, bias):
    _check_adjoint(_arch(hidden, activation, outputs, bias=bias), T=5, B=3,
                   seed=3 * len(hidden) + bias, with_state=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=S.problems(), with_state=S.biases)
def test_rop_properties(problem, with_state):
    arch, T, B, seed = problem
    _check_adjoint(arch, T, B, seed, with_state)
    _check_rop_fd(arch, T, B, seed, with_state)


def test_rop_is_linear_in_v():
    arch = _arch((3, 2), "tanh", "every")
    model, x, state, v, rng = _problem(arch, 3, 2, 5, True)
    w = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
    _, cache = model.forward(model.params, x, state)
    combo = {k: 2.0 * v[k] - 3.0 * w[k] for k in v}
    r_v, _ = model.rop(model.params, v, cache)
    r_w, _ = model.rop(model.params, w, cache)
    r_c, _ = model.rop(model.params, combo, cache)
    np.testing.assert_allclose(r_c, 2.0 * r_v - 3.0 * r_w, rtol=1e-12, atol=1e-12)  # round-off


def test_dot_test_catches_a_transposed_adjoint():
    """The dot test is sensitive: a backward with one transposed weight gradient fails it."""
    arch = _arch((3,), "tanh", "every", n_in=3)
    model, x, state, v, rng = _problem(arch, 4, 2, 9, False)
    y, cache = model.forward(model.params, x, state)
    u = rng.standard_normal(y.shape)
    r_y, _ = model.rop(model.params, v, cache)
    jt_u, _ = model.backward(model.params, u, cache)
    jt_u["layer1.W_rec"] = jt_u["layer1.W_rec"].T
    lhs = float(np.vdot(r_y, u))
    rhs = sum(float(np.vdot(v[k], jt_u[k])) for k in v)
    # a transposed 3x3 block changes <v, J^T u> by O(1) of the terms, far above DOT_RTOL
    assert abs(lhs - rhs) > 1e-6 * float(np.abs(r_y * u).sum())
