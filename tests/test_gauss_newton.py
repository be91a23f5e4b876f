"""Gauss-Newton products (rnnlab.objective.gauss_newton_product) against G = J^T H J formed
explicitly on tiny networks, in float64.

J (outputs by parameters) comes from central differences of ``model.forward`` along each flat
parameter, independent of ``model.rop``; H (the loss's Hessian with respect to the outputs)
from central differences of the loss's gradient, independent of ``loss.gn_product``. Planted
errors (a cross-entropy curvature without its -p p^T term, a 1 % scaled curvature, an R-op that
drops the recurrent term) must make the comparison fail.
"""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, backend, losses, objective
from rnnlab.models import ElmanRNN
from rnnlab.objective import Batch, gauss_newton_product
from rnnlab.params import flatten

import strategies as S

EPS = 1e-5
# J and H by central differences: truncation ~eps^2 |f'''| ~ 1e-10 and round-off
# ~1e-16 |f| / eps ~ 1e-11, relative to entries of size ~1, so the formed J^T H J is good to
# ~1e-9 of its largest entry; 1e-7 leaves margin, and a planted error gives >= 1e-3
GN_RTOL = 1e-7
# symmetry, PSD and equality checks on the product itself: the same float64 products summed in
# different orders, ~1e-15 of the terms; 1e-12 leaves margin
DOT_RTOL = 1e-12
# a planted error must move G by at least this much relative to its largest entry (a 1 %
# scaling moves it by 1e-2; the smallest planted effect seen is a few 1e-2)
PLANTED = 1e-3
# ReLU pre-activations closer than this to 0 could cross the kink under a step of EPS (weights
# and inputs are O(1), so a step moves a pre-activation by ~10 EPS at most): redraw instead
KINK = 1e-3

CE = losses.softmax_cross_entropy
LOSS = {"mse": losses.mse, "xent": CE}


def _dev(a):
    return backend.to_device(np.asarray(a))


def _min_abs_preactivation(model, params, x, state):
    """The smallest |pre-activation| over all layers, steps and sequences (a naive loop)."""
    y, cache = model.forward(params, x, state)
    smallest = np.inf
    below = backend.to_host(x)
    for i in range(1, model.spec.layers + 1):
        h = backend.to_host(cache.h[i - 1])
        w_in = backend.to_host(params[f"layer{i}.W_in"])
        w_rec = backend.to_host(params[f"layer{i}.W_rec"])
        b = backend.to_host(params[f"layer{i}.b"]) if model.spec.bias else 0.0
        for t in range(below.shape[0]):
            pre = below[t] @ w_in.T + h[t] @ w_rec.T + b
            smallest = min(smallest, float(np.abs(pre).min()))
        below = h[1:]
    return smallest


def _problem(hidden, activation, outputs, loss_name, T=4, B=2, seed=0, n_in=2, n_out=2,
             with_state=False, scale=0.7):
    """A float64 model and a Batch on the active backend; ReLU draws near a kink are redrawn."""
    arch = dict(n_in=n_in, hidden=tuple(hidden), n_out=n_out, activation=activation, bias=True,
                outputs=outputs)
    for attempt in range(20):
        rng = np.random.default_rng(seed + 1000 * attempt)
        model = ElmanRNN.from_arrays(S.host_arrays(arch, rng, scale), activation=activation,
                                     outputs=outputs, dtype="float64")
        x = rng.standard_normal((T, B, n_in))
        state = [_dev(s) for s in S.host_state(arch, B, rng)] if with_state else None
        if activation != "relu" or _min_abs_preactivation(model, model.params, _dev(x),
                                                          state) > KINK:
            break
    else:
        raise AssertionError("no draw away from the ReLU kinks")
    lead = (B,) if outputs == "last" else (T, B)
    if loss_name == "mse":
        targets = rng.standard_normal(lead + (n_out,))
    else:
        targets = rng.integers(0, n_out, size=lead)
    mask = _dev(S.host_mask(T, B, rng)) if outputs == "masked" else None
    return model, Batch(_dev(x), _dev(targets), mask, state)


def _central_differences(fn, params):
    """d fn(p) / d flat params, (size of fn's flat output, number of parameters), by central
    differences; ``fn`` maps a params dict to a host array."""
    vec, unflatten = flatten(params)
    host = backend.to_host(vec)
    cols = []
    for j in range(host.size):
        step = np.zeros_like(host)
        step[j] = EPS
        plus, minus = fn(unflatten(_dev(host + step))), fn(unflatten(_dev(host - step)))
        cols.append((plus - minus).ravel() / (2 * EPS))
    return np.stack(cols, axis=1)


def _jacobian_fd(model, params, batch):
    """d outputs / d flat params by central differences of the forward."""
    return _central_differences(
        lambda p: backend.to_host(model.forward(p, batch.x, batch.state)[0]), params)


def _output_hessian_fd(loss, y, targets, mask):
    """d^2 loss / d outputs^2 (flat), by central differences of the loss's gradient."""
    y0 = backend.to_host(y)
    cols = []
    for i in range(y0.size):
        step = np.zeros(y0.size)
        step[i] = EPS
        g_plus = loss.value_and_grad(_dev((y0.ravel() + step).reshape(y0.shape)), targets, mask)
        g_minus = loss.value_and_grad(_dev((y0.ravel() - step).reshape(y0.shape)), targets, mask)
        cols.append((backend.to_host(g_plus[1]) - backend.to_host(g_minus[1])).ravel()
                    / (2 * EPS))
    return np.stack(cols, axis=1)


def _formed_gn(model, params, batch, loss):
    """G = J^T H J from the explicit J and H."""
    jac = _jacobian_fd(model, params, batch)
    y, _ = model.forward(params, batch.x, batch.state)
    hess = _output_hessian_fd(loss, y, batch.targets, batch.mask)
    return jac.T @ hess @ jac


def _product_matrix(model, params, batch, loss):
    """The matrix whose column j is gauss_newton_product applied to the j-th basis vector."""
    vec, unflatten = flatten(params)
    n = int(vec.size)
    y, cache = model.forward(params, batch.x, batch.state)
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        gv = gauss_newton_product(model, params, batch, unflatten(_dev(e)), loss, cache=cache,
                                  outputs=y)
        cols.append(backend.to_host(flatten(gv)[0]))
    return np.stack(cols, axis=1)


def _gn_error(model, batch, loss, reference_loss=None):
    """max |product matrix - J^T H J| / max |J^T H J|; H from ``reference_loss`` (default the
    same loss), so a planted loss curvature is compared against the true one."""
    formed = _formed_gn(model, model.params, batch, reference_loss or loss)
    got = _product_matrix(model, model.params, batch, loss)
    return float(np.abs(got - formed).max() / np.abs(formed).max())


def _random_direction(params, rng):
    return {k: _dev(rng.standard_normal(p.shape)) for k, p in params.items()}


def _dot(a, b):
    return sum(float(np.vdot(backend.to_host(a[k]), backend.to_host(b[k]))) for k in a)


def _abs_dot(a, b):
    return sum(float(np.abs(backend.to_host(a[k]) * backend.to_host(b[k])).sum()) for k in a)


GRID = pytest.mark.parametrize("hidden,activation,outputs,loss_name", [
    (h, a, o, ln) for h in [(3,), (2, 2)] for a in ("relu", "tanh")
    for o in ("every", "last", "masked") for ln in ("mse", "xent")])


# ----------------------------------------------------------------------------- G = J^T H J
@GRID
def test_product_equals_formed_jt_h_j(xp, hidden, activation, outputs, loss_name):
    model, batch = _problem(hidden, activation, outputs, loss_name)
    assert _gn_error(model, batch, LOSS[loss_name]) < GN_RTOL


@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_product_with_initial_state(loss_name):
    """The initial state is held constant: G is J^T H J with J taken at that state."""
    model, batch = _problem((2, 3), "tanh", "every", loss_name, with_state=True, seed=3)
    assert _gn_error(model, batch, LOSS[loss_name]) < GN_RTOL


def test_product_returns_params_keys_backend_and_dtype(xp):
    model, batch = _problem((3,), "relu", "every", "xent")
    gv = gauss_newton_product(model, model.params, batch,
                              _random_direction(model.params, np.random.default_rng(0)), CE)
    assert list(gv) == list(model.params)
    for k, g in gv.items():
        assert isinstance(g, xp.ndarray) and g.shape == model.params[k].shape
        assert g.dtype == np.float64


@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
def test_given_cache_equals_a_fresh_forward(outputs):
    model, batch = _problem((2, 2), "tanh", outputs, "xent")
    v = _random_direction(model.params, np.random.default_rng(1))
    y, cache = model.forward(model.params, batch.x, batch.state)
    with_cache = gauss_newton_product(model, model.params, batch, v, CE, cache=cache, outputs=y)
    fresh = gauss_newton_product(model, model.params, batch, v, CE)
    for k in fresh:  # the same operations on the same numbers
        np.testing.assert_array_equal(with_cache[k], fresh[k])


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
def test_symmetric_and_positive_semidefinite(xp, outputs, loss_name):
    model, batch = _problem((2, 2), "relu", outputs, loss_name, seed=5)
    rng = np.random.default_rng(2)
    loss = LOSS[loss_name]
    for _ in range(3):
        u, v = _random_direction(model.params, rng), _random_direction(model.params, rng)
        gu = gauss_newton_product(model, model.params, batch, u, loss)
        gv = gauss_newton_product(model, model.params, batch, v, loss)
        assert abs(_dot(u, gv) - _dot(v, gu)) <= DOT_RTOL * _abs_dot(u, gv)
        assert _dot(v, gv) >= -DOT_RTOL * _abs_dot(v, gv)
        assert _dot(v, gv) > 0  # a random direction is not in G's null space
    g = _product_matrix(model, model.params, batch, loss)
    np.testing.assert_allclose(g, g.T, rtol=0, atol=DOT_RTOL * np.abs(g).max())
    eig = np.linalg.eigvalsh((g + g.T) / 2)
    assert eig.min() >= -DOT_RTOL * eig.max() * g.shape[0]  # round-off grows with the size
    assert eig.max() > 0


def test_rank_is_at_most_the_number_of_outputs():
    """G = J^T H J has rank <= rank(H) <= number of scored outputs (here B * n_out = 4, with
    26 parameters): a product that added a full-rank term would fail this."""
    model, batch = _problem((2, 2), "tanh", "last", "mse")
    eig = np.linalg.eigvalsh(_product_matrix(model, model.params, batch, losses.mse))
    assert np.sum(eig > 1e-10 * eig.max()) <= 4  # the null eigenvalues are round-off, ~1e-16


# ----------------------------------------------------------------------------- vs the Hessian
def _hessian_fd(model, params, batch, loss):
    """d^2 loss / d params^2 (flat) by central differences of the BPTT gradient."""
    def gradient(p):
        _, grads, _ = objective.batch_loss_and_grads(model, p, batch, loss)
        return backend.to_host(flatten(grads)[0])
    return _central_differences(gradient, params)


def _block(params, prefix):
    """Flat indices of the parameters whose names start with ``prefix``."""
    idx, start = [], 0
    for k, p in params.items():
        if k.startswith(prefix):
            idx.extend(range(start, start + p.size))
        start += p.size
    return np.array(idx)


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_mse_output_layer_block_equals_hessian(activation):
    """The outputs are linear in out.W and out.b, so with MSE (whose output Hessian is
    constant) the out.* block of G equals that of the Hessian, at any residual."""
    model, batch = _problem((2, 2), activation, "every", "mse", seed=7)
    g = _product_matrix(model, model.params, batch, losses.mse)
    hess = _hessian_fd(model, model.params, batch, losses.mse)
    out = _block(model.params, "out.")
    block = np.ix_(out, out)
    # the Hessian by differences of the gradient: ~1e-10 of its entries (see GN_RTOL)
    np.testing.assert_allclose(g[block], hess[block], rtol=0,
                               atol=GN_RTOL * np.abs(hess[block]).max())


@pytest.mark.parametrize("activation", ["identity", "tanh"])
@pytest.mark.parametrize("outputs", ["every", "last"])
def test_mse_at_zero_residual_equals_hessian(activation, outputs):
    """Hessian = G + sum_i residual_i d^2 y_i / d params^2: with the targets equal to the outputs
    the second term vanishes and G is the whole Hessian."""
    model, batch = _problem((2, 2), activation, outputs, "mse", seed=8)
    y, _ = model.forward(model.params, batch.x, batch.state)
    batch = Batch(batch.x, y.copy(), batch.mask, batch.state)
    g = _product_matrix(model, model.params, batch, losses.mse)
    hess = _hessian_fd(model, model.params, batch, losses.mse)
    assert np.abs(g - hess).max() < GN_RTOL * np.abs(hess).max()  # see GN_RTOL


def test_linear_network_with_residual_is_not_the_hessian():
    """Even with identity activations the outputs W_out W_rec^t W_in x are not linear in the
    parameters: away from zero residual G and the Hessian differ (which is why the test above
    sets the residual to zero, and shows the Hessian by differences can tell them apart)."""
    model, batch = _problem((2, 2), "identity", "every", "mse", seed=7)
    g = _product_matrix(model, model.params, batch, losses.mse)
    hess = _hessian_fd(model, model.params, batch, losses.mse)
    assert np.abs(g - hess).max() > PLANTED * np.abs(hess).max()


# ----------------------------------------------------------------------------- planted errors
class _CrossEntropyWithoutCoupling(losses.SoftmaxCrossEntropy):
    """Planted: the curvature diag(p) without its -p p^T term."""

    def gn_product(self, logits, targets, mask, r_outputs):
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        count = r_outputs[..., 0].size if mask is None else float(mask.sum())
        m = 1.0 if mask is None else mask[..., None]
        return p * r_outputs * m / count


class _ScaledMSE(losses.MSE):
    """Planted: the MSE curvature 1 % too large."""

    def gn_product(self, outputs, targets, mask, r_outputs):
        return 1.01 * super().gn_product(outputs, targets, mask, r_outputs)


@pytest.mark.parametrize("outputs", ["every", "masked"])
def test_planted_missing_softmax_coupling_is_caught(outputs):
    model, batch = _problem((3,), "tanh", outputs, "xent")
    assert _gn_error(model, batch, CE) < GN_RTOL  # the real curvature passes ...
    assert _gn_error(model, batch, _CrossEntropyWithoutCoupling(), reference_loss=CE) > PLANTED


def test_planted_scaled_curvature_is_caught():
    model, batch = _problem((2, 2), "relu", "last", "mse")
    planted = _ScaledMSE()
    assert _gn_error(model, batch, planted, reference_loss=losses.mse) > PLANTED
    # symmetry and semi-definiteness cannot see a scaling: only the comparison with J^T H J can
    rng = np.random.default_rng(3)
    u, v = _random_direction(model.params, rng), _random_direction(model.params, rng)
    gu = gauss_newton_product(model, model.params, batch, u, planted)
    gv = gauss_newton_product(model, model.params, batch, v, planted)
    assert abs(_dot(u, gv) - _dot(v, gu)) <= DOT_RTOL * _abs_dot(u, gv)
    assert _dot(v, gv) >= 0


@pytest.mark.parametrize("hidden", [(3,), (2, 2)])
def test_planted_rop_without_recurrent_term_is_caught(monkeypatch, hidden):
    model, batch = _problem(hidden, "tanh", "every", "mse")
    real_rop = model.rop

    def rop_without_recurrence(params, v, cache):  # R(h_{t-1}) no longer reaches step t
        cut = {k: (p * 0 if k.endswith(".W_rec") else p) for k, p in params.items()}
        return real_rop(cut, v, cache)

    monkeypatch.setattr(model, "rop", rop_without_recurrence)
    assert _gn_error(model, batch, losses.mse) > PLANTED


# ----------------------------------------------------------------------------- bad input
def test_masked_model_without_mask_is_refused():
    model, batch = _problem((3,), "relu", "masked", "mse")
    v = _random_direction(model.params, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"outputs='masked' needs a mask"):
        gauss_newton_product(model, model.params, Batch(batch.x, batch.targets), v, losses.mse)


def test_bad_direction_and_half_a_cache_are_refused():
    model, batch = _problem((3,), "relu", "every", "mse")
    v = _random_direction(model.params, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"v must have the keys of params"):
        gauss_newton_product(model, model.params, batch, {k: v[k] for k in list(v)[1:]},
                             losses.mse)
    with pytest.raises(ConfigError, match=r"v\['out.W'\] must have shape \(2, 3\)"):
        gauss_newton_product(model, model.params, batch, v | {"out.W": v["out.W"].T},
                             losses.mse)
    _, cache = model.forward(model.params, batch.x)
    with pytest.raises(ConfigError, match="cache and outputs go together"):
        gauss_newton_product(model, model.params, batch, v, losses.mse, cache=cache)
