"""The NRU (rnnlab.models.nru) in float64: forward against an independent naive loop written from
the equations (per-head loops, explicit outer products), the L5 normalisation's backward and
R-op alone, BPTT against central differences (parameters, initial (h, m), d_final_state) over
the options, the R-op against finite differences and the adjoint test, Gauss-Newton products
against J^T H J from central differences (with and without structural damping on h),
hidden_gradients, the psMNIST parameter count, the option checks, and training through
``run()`` with Adam and Hessian-free.

Weights are moved off the initial point by noise, and every test that differentiates asserts
that no ReLU pre-activation (h, and with ReLU heads alpha, beta and the directions' entries)
lies within 1e-4 of its kink and no nonzero direction's L5 norm is below 1e-2 (the naive loop
reports those margins), so central differences with eps = 1e-5 see a smooth function.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import cell_checks as cc
from cell_checks import DOT_RTOL, EPS, FD_RTOL, GRAD_TOL
from rnnlab import ConfigError, backend, gradcheck, losses
from rnnlab.models import NRU, make_model
from rnnlab.models.nru import l5_normalize, l5_normalize_backward, l5_normalize_rop
from rnnlab.objective import Batch
from rnnlab.train.diagnostics import gradient_flow

# The tolerances of tests/cell_checks.py hold for the NRU too. gradcheck (GRAD_TOL): float64
# central differences resolve ~1e-8 here (the L5 norm's fifth powers raise the third derivatives
# that set the O(eps^2) truncation); a wrong term gives >= 1e-3. R-op and J^T H J (FD_RTOL):
# truncation ~eps^2 times third derivatives and round-off ~1e-11 relative to entries of size
# ~1; a missing term is O(1e-2).
# margins the finite differences need: a step of eps = 1e-5 moves a pre-activation by eps times
# an O(1) slope, 10x below the kink margin; y = u / ||u||_5 has third derivatives ~ 1 / n^3, so
# at n = 1e-2 the central differences' truncation is ~1e-7 relative to the gradient's ~1 / n
KINK_MARGIN = 1e-4
NORM_MARGIN = 1e-2
RELU_ONE_HEAD = {"relu_heads": True, "memory": 4, "heads": 1}  # rows of all 4 products p_i q_j
SMALL = {"memory": 2, "heads": 2}  # s = 2: the smallest memory with two heads
_dev = cc.dev


def _model(hidden, outputs, **options):
    """A float64 NRU built by name (memory 2, 2 heads unless given), its weights moved off the
    initial point by noise."""
    return cc.noisy_model("nru", hidden, outputs, **{**SMALL, **options})


def _hm_state(rng, spec, B):
    """One (h, m) pair per layer: h = |N(0, 1)| (B, H) (a ReLU output), m ~ N(0, 0.5^2)
    (B, memory)."""
    return [(_dev(np.abs(rng.standard_normal((B, H)))),
             _dev(0.5 * rng.standard_normal((B, spec.memory)))) for H in spec.hidden]


def _data(model, T, B, seed, loss_name="mse", with_state=False):
    return cc.make_data(model, T, B, seed, loss_name, _hm_state if with_state else None)


# ----------------------------------------------------------------------------- naive loop
def _naive_forward(params, x, spec, state=None):
    """An independent loop from eqs. 9-17 in the code's form: per sequence, per step, per head,
    with W_h split into eq. 9's W_i, W_h, W_c, the directions built with np.outer and
    normalised with np.linalg.norm(ord=5). Returns (y, finals, margins), the margins being the
    smallest |pre-activation| of every ReLU and the smallest nonzero direction norm."""
    p = {k: backend.to_host(v) for k, v in params.items()}
    below = backend.to_host(x)
    T, B, _ = below.shape
    k, M = spec.heads, spec.memory
    root = math.isqrt(k * M)
    c = 1.0 / k if spec.head_sum == "mean" else 1.0
    phi = (lambda a: np.maximum(a, 0.0)) if spec.relu_heads else (lambda a: a)
    margins = {"h": np.inf, "heads": np.inf, "norm": np.inf}
    finals = []
    for layer, H in enumerate(spec.hidden, start=1):
        n = below.shape[2]
        w = p[f"layer{layer}.W_h"]
        w_i, w_h, w_c = w[:, :n], w[:, n:n + H], w[:, n + H:]
        b = p.get(f"layer{layer}.b_h", np.zeros(H))
        wg = p[f"layer{layer}.W_heads"]
        bg = p.get(f"layer{layer}.b_heads", np.zeros(wg.shape[0]))
        rows = {"alpha": slice(0, k), "beta": slice(k, 2 * k),
                "p": slice(2 * k, 2 * k + root), "q": slice(2 * k + root, 2 * k + 2 * root),
                "p'": slice(2 * k + 2 * root, 2 * k + 3 * root),
                "q'": slice(2 * k + 3 * root, 2 * k + 4 * root)}
        out = np.zeros((T, B, H))
        final = []
        for seq in range(B):
            if state is None:
                h, mem = np.zeros(H), np.zeros(M)
            else:
                h, mem = (backend.to_host(a)[seq] for a in state[layer - 1])
            for t in range(T):
                z = w_i @ below[t, seq] + w_h @ h + w_c @ mem + b
                margins["h"] = min(margins["h"], np.abs(z).min())
                h = np.maximum(z, 0.0)
                head_in = np.concatenate([h, mem])

                def head(name):
                    return wg[rows[name]] @ head_in + bg[rows[name]]

                if spec.relu_heads:
                    margins["heads"] = min(margins["heads"], np.abs(head("alpha")).min(),
                                           np.abs(head("beta")).min())
                alpha, beta = phi(head("alpha")), phi(head("beta"))
                outer_w = np.outer(head("p"), head("q")).reshape(k, M)
                outer_e = np.outer(head("p'"), head("q'")).reshape(k, M)
                if spec.relu_heads:
                    margins["heads"] = min(margins["heads"], np.abs(outer_w).min(),
                                           np.abs(outer_e).min())
                update = np.zeros(M)
                for i in range(k):
                    v_w, v_e = phi(outer_w[i]), phi(outer_e[i])
                    n_w, n_e = np.linalg.norm(v_w, ord=5), np.linalg.norm(v_e, ord=5)
                    margins["norm"] = min([margins["norm"], *(n for n in (n_w, n_e) if n > 0)])
                    update += alpha[i] * v_w / max(n_w, 1e-12) - beta[i] * v_e / max(n_e, 1e-12)
                mem = mem + c * update
                out[t, seq] = h
            final.append((h, mem))
        finals.append((np.stack([f[0] for f in final]), np.stack([f[1] for f in final])))
        below = out
    y = below @ p["out.W"].T + p.get("out.b", 0.0)
    return (y[-1] if spec.outputs == "last" else y), finals, margins


def _smooth(hidden, outputs, T, B, data_seed, loss_name="mse", *, seed=0, **options):
    """A model and data (``_data(..., with_state=True)``) that meet the margins of the module
    docstring: the weight noise is redrawn until they hold (a ReLU head's row of directions may
    be exactly zero, all its entries at least the margin below 0; its norm is then clamped and
    the direction is 0 in a whole neighbourhood)."""
    for attempt in range(50):
        model = _model(hidden, outputs, seed=seed + 1000 * attempt, **options)
        data = _data(model, T, B, data_seed, loss_name, with_state=True)
        _, _, margins = _naive_forward(model.params, data[0], model.spec, data[3])
        if (margins["h"] > KINK_MARGIN and margins["heads"] > KINK_MARGIN
                and margins["norm"] > NORM_MARGIN):
            return model, data
    raise AssertionError(f"no draw met the margins in 50 attempts; last {margins}")


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
@pytest.mark.parametrize("options", [
    {}, {"relu_heads": True, "bias": False}, {"head_sum": "sum", "memory": 8, "heads": 2}],
    ids=["linear-mean", "relu-nobias", "sum-m8k2"])
def test_forward_matches_a_naive_loop(xp, outputs, hidden, options):
    model = _model(hidden, outputs, seed=len(hidden), **options)
    x, _, _, state, _ = _data(model, 5, 3, seed=1, with_state=True)
    want, finals, _ = _naive_forward(model.params, x, model.spec, state)
    _, cache = cc.check_forward(model, x, state, want, finals)
    memories = model.memory(cache)
    assert [tuple(m.shape) for m in memories] == [(6, 3, model.spec.memory)] * len(hidden)
    for m, (_, m0) in zip(memories, state):
        np.testing.assert_array_equal(backend.to_host(m[0]), backend.to_host(m0))


def test_two_hand_computed_steps():
    """H = m = k = 1, zero weights except W_c = -1 (memory -> h) and the biases: h_1 = b_h,
    each direction is sign(p q) (a 1-vector over its L5 norm), m_t = m_{t-1} + alpha sign(pq)
    - beta sign(p'q'), and h_2 = ReLU(-m_1 + b_h)."""
    model = make_model("nru", 1, 1, "last", dtype="float64", hidden=1, memory=1, heads=1)
    params = {k: backend.get_xp().zeros_like(p) for k, p in model.params.items()}
    params["layer1.W_h"] = _dev([[0.0, 0.0, -1.0]])  # columns x, h, m
    params["layer1.b_h"] = _dev([0.5])
    params["layer1.b_heads"] = _dev([0.3, 0.2, 2.0, -1.5, 0.5, 0.4])  # alpha beta p q p' q'
    params["out.W"] = _dev([[1.0]])
    y, cache = model.forward(params, _dev(np.ones((2, 1, 1))))
    step = 0.3 * -1.0 - 0.2 * 1.0
    np.testing.assert_allclose(backend.to_host(cache.m[0])[:, 0, 0], [0.0, step, 2 * step],
                               rtol=1e-15)
    np.testing.assert_allclose(backend.to_host(cache.h[0])[:, 0, 0], [0.0, 0.5, 0.5 - step],
                               rtol=1e-15)
    assert float(y[0, 0]) == pytest.approx(0.5 - step, rel=1e-15)


def test_mean_and_sum_of_heads_differ_by_k():
    """With zero initial memory and one step, m_1 under "sum" is k times m_1 under "mean"."""
    mean = _model([3], "every", memory=4, heads=4)
    total = make_model("nru", 2, 3, "every", dtype="float64", hidden=[3], memory=4, heads=4,
                       head_sum="sum")
    x, _, _, _, _ = _data(mean, 1, 2, seed=3)
    _, c_mean = mean.forward(mean.params, x)
    _, c_sum = total.forward(mean.params, x)
    np.testing.assert_allclose(c_sum.m[0][1], 4 * c_mean.m[0][1], rtol=1e-14)


def test_chunks_carrying_state_equal_one_pass():
    """Truncated BPTT's forward: two chunks with the (h, m) state carried equal one pass."""
    model = _model([3, 2], "every", memory=8, heads=2)
    x, _, _, state, _ = _data(model, 6, 2, seed=3, with_state=True)
    cc.check_chunks_equal_one_pass(model, x, state)


# ----------------------------------------------------------------------------- L5 alone
def test_l5_normalisation_backward_and_rop_by_central_differences():
    rng = np.random.default_rng(0)
    u = {"u": _dev(rng.standard_normal((3, 2, 5)))}
    w = _dev(rng.standard_normal((3, 2, 5)))
    y, n = l5_normalize(u["u"])
    np.testing.assert_allclose(backend.to_host(n)[..., 0],
                               np.linalg.norm(backend.to_host(u["u"]), ord=5, axis=-1),
                               rtol=1e-14)

    def loss(p):
        return float((w * l5_normalize(p["u"])[0]).sum())

    report = gradcheck.check_gradients(loss, u, {"u": l5_normalize_backward(w, y, n)})
    assert report.max_error < GRAD_TOL, str(report)
    ru = _dev(rng.standard_normal((3, 2, 5)))
    fd = (l5_normalize(u["u"] + EPS * ru)[0] - l5_normalize(u["u"] - EPS * ru)[0]) / (2 * EPS)
    np.testing.assert_allclose(l5_normalize_rop(ru, y, n), fd, rtol=FD_RTOL, atol=FD_RTOL)


def test_l5_normalisation_below_the_clamp_and_at_large_values():
    """Norms under 1e-12 are clamped (y = u / 1e-12, a linear map, so its backward is dy /
    1e-12); entries whose fifth power overflows float32 still normalise."""
    u = _dev([[3e-14, -4e-14]])
    y, n = l5_normalize(u)
    np.testing.assert_allclose(y, u / 1e-12, rtol=1e-15)
    dy = _dev([[0.7, -0.2]])
    np.testing.assert_allclose(l5_normalize_backward(dy, y, n), dy / 1e-12, rtol=1e-15)
    np.testing.assert_allclose(l5_normalize_rop(dy, y, n), dy / 1e-12, rtol=1e-15)
    big = np.array([[1e9, -2e9, 0.0]], dtype=np.float32)
    y32, _ = l5_normalize(big)
    want = big / np.linalg.norm(big.astype(np.float64), ord=5, axis=-1, keepdims=True)
    np.testing.assert_allclose(y32, want, rtol=1e-6)  # float32 round-off


# ----------------------------------------------------------------------------- gradients
CASES = [  # (hidden, outputs, options, loss): every option value, both losses, all modes
    ([3], "every", {}, "mse"),
    ([3], "last", RELU_ONE_HEAD, "xent"),
    ([3], "masked", {"head_sum": "sum", "memory": 8, "heads": 2}, "mse"),
    ([3, 2], "every", {"relu_heads": True, "head_sum": "sum", "memory": 8, "heads": 2}, "xent"),
    ([3, 2], "last", {"memory": 4, "heads": 4}, "mse"),
    ([2, 3], "masked", {**RELU_ONE_HEAD, "bias": False}, "xent"),
]


@pytest.mark.parametrize("hidden,outputs,options,loss_name", CASES)
def test_param_gradients(hidden, outputs, options, loss_name):
    model, data = _smooth(hidden, outputs, 4, 2, 5, loss_name, **options)
    cc.check_param_gradients(model, data, loss_name)


@pytest.mark.parametrize("outputs,options", [("every", RELU_ONE_HEAD),
                                             ("last", {"head_sum": "sum"})])
def test_gradients_with_d_final_state_and_of_the_initial_state(xp, outputs, options):
    """d_final_state = [(a, b)] per layer for L = loss(y) + <a, h_T> + <b, m_T>."""
    model, data = _smooth([3, 2], outputs, 4, 2, 7, seed=2, **options)
    cc.check_final_state_gradients(model, data, "hm")


# ----------------------------------------------------------------------------- hidden gradients
@pytest.mark.parametrize("hidden", [[3], [3, 2]], ids=["1layer", "2layers"])
def test_hidden_gradients_equal_the_state_gradient_of_a_split_sequence(hidden):
    """The top layer's dL/dh_t (outputs "last") against a split sequence's d_state; at the last
    step the layer below gets the top layer's dy @ W_out through h_T = ReLU(z_T) of the top
    layer's input columns."""
    model = _model(hidden, "last", seed=9, relu_heads=True)
    record, cache, dy = cc.check_hidden_gradients_split(
        model, _data(model, 5, 3, seed=10, with_state=True))
    if len(hidden) == 2:
        top = backend.to_host(dy @ model.params["out.W"])
        w_in = backend.to_host(model.params["layer2.W_h"])[:, :hidden[0]]
        h_top = backend.to_host(cache.h[1][-1])
        np.testing.assert_allclose(backend.to_host(record[0][-1]),
                                   (top * (h_top > 0)) @ w_in, rtol=DOT_RTOL, atol=1e-15)


def test_gradient_flow_reports_steps_and_memory_changes():
    model = _model([3, 2], "every")
    x, targets, _, _, _ = _data(model, 4, 2, seed=2)
    flow = gradient_flow(model, model.params, Batch(x, targets, None, None),
                         losses.mse.value_and_grad)
    assert [len(g) for g in flow["grad_h"]] == [4, 4]
    assert [len(c) for c in flow["memory_change"]] == [4, 4]
    assert all(v > 0 for c in flow["memory_change"] for v in c)


# ----------------------------------------------------------------------------- R-op
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("hidden,options", [([3], RELU_ONE_HEAD),
                                            ([3, 2], {"memory": 8, "heads": 2})],
                         ids=["1layer-relu", "2layers-m8k2"])
def test_rop_matches_finite_differences(xp, outputs, hidden, options):
    """Also R m_t (which rop() keeps to itself) against central differences of m_t, along a
    unit direction."""
    model, data = _smooth(hidden, outputs, 5, 3, 8, seed=4, **options)
    cc.check_rop_finite_differences(
        model, data, unit_direction=True,
        more=lambda model, v, cache: {"m": model._rop(model.params, v, cache)[2]})


@pytest.mark.parametrize("hidden,outputs,options,loss_name", CASES)
def test_rop_adjoint_dot_test(hidden, outputs, options, loss_name):
    model = _model(hidden, outputs, seed=6, **options)
    cc.check_rop_adjoint(model, _data(model, 5, 3, seed=9, with_state=True))


# ----------------------------------------------------------------------------- Gauss-Newton
@pytest.mark.parametrize("hidden,outputs,loss_name,options", [
    ([2], "every", "mse", {}), ([2], "last", "xent", RELU_ONE_HEAD),
    ([2, 2], "masked", "xent", {"head_sum": "sum"})])
def test_gauss_newton_product_equals_formed_jt_h_j(xp, hidden, outputs, loss_name, options):
    model, data = _smooth(hidden, outputs, 3, 2, 12, loss_name, seed=11, n_in=2, n_out=2,
                          **options)
    cc.check_gauss_newton(model, data, loss_name)


def test_structural_damping_refuses_the_matching_form():
    model = _model([2], "every")
    cc.check_refuses_matching_form(model, _data(model, 3, 2, seed=1))


# ----------------------------------------------------------------------------- structure
def test_psmnist_parameter_count():
    """n_in = 1, H = 212, m = 256, k = 4, n_out = 10 (the authors' psMNIST config): the code's
    layout gives (n_in + H + m + 1) H + 2 (H + m + 1) k + 2 (H + m + 1) 2 sqrt(km) + (H + 1) K
    = 165,554, the paper's "~165k" (optimizers.md 7.1)."""
    spec = NRU.spec_for(1, 10, "last", hidden=212, memory=256, heads=4)
    count = sum(math.prod(shape) for shape in spec.param_shapes().values())
    H, m, k, K = 212, 256, 4, 10
    assert count == (1 + H + m + 1) * H + 2 * (H + m + 1) * k + 4 * (H + m + 1) * 32 \
        + (H + 1) * K == 165_554
    model = make_model("nru", 1, 10, "last", hidden=212, memory=256, heads=4)
    assert sum(int(p.size) for p in model.params.values()) == 165_554


def test_arrays_per_unit_count_the_cache():
    """H = 10, m = 64, k = 4 (s = 16, 2k + 4s = 72 head rows, 2k = 8 norms): evaluation keeps
    h and the pre-activation (2 H) plus m, g and the norms (144): ceil(164 / 10) = 17; training
    adds dz (H) and dg (72): ceil(246 / 10) = 25."""
    spec = NRU.spec_for(3, 2, "last", hidden=10, memory=64, heads=4)
    assert (spec.eval_arrays_per_unit, spec.train_arrays_per_unit) == (17, 25)
    two = NRU.spec_for(3, 2, "last", hidden=[10, 10], memory=64, heads=4)
    assert (two.eval_arrays_per_unit, two.train_arrays_per_unit) == (17, 25)


def test_initialisation_follows_the_code():
    H, m, k, n_in, n_out = 40, 16, 4, 3, 60
    model = make_model("nru", n_in, n_out, "last", seed=1, dtype="float64", hidden=[H, H],
                       memory=m, heads=k)
    for i, fan_in in ((1, n_in), (2, H)):
        for name, fan in ((f"layer{i}.W_h", fan_in + H + m), (f"layer{i}.b_h", fan_in + H + m),
                          (f"layer{i}.W_heads", H + m), (f"layer{i}.b_heads", H + m)):
            w = np.abs(backend.to_host(model.params[name]))
            # U(-1/sqrt(fan), 1/sqrt(fan)); the largest |w| of >= 40 draws passes half the bound
            # (a fresh seed fails with probability 0.5^40 ~ 1e-12)
            assert w.max() <= 1 / math.sqrt(fan) and w.max() > 0.5 / math.sqrt(fan), name
    np.testing.assert_array_equal(backend.to_host(model.params["out.b"]), 0.0)
    # Xavier-normal std sqrt(2 / (H + n_out)); 2400 draws estimate it within ~1.5% (1 sigma)
    std = backend.to_host(model.params["out.W"]).std()
    assert std == pytest.approx(math.sqrt(2 / (H + n_out)), rel=0.08)
    again = make_model("nru", n_in, n_out, "last", seed=1, dtype="float64", hidden=[H, H],
                       memory=m, heads=k)
    for name in model.params:  # seeded
        np.testing.assert_array_equal(model.params[name], again.params[name])


def test_options_are_checked():
    with pytest.raises(ConfigError, match=r"memory \* heads must be a perfect square.*"
                                          r"memory = 64, heads = 3"):
        make_model("nru", 2, 1, "last", hidden=3, memory=64, heads=3)
    with pytest.raises(ConfigError, match="head_sum must be one of mean, sum"):
        make_model("nru", 2, 1, "last", hidden=3, head_sum="max")
    with pytest.raises(ConfigError, match="layers"):
        make_model("nru", 2, 1, "last", hidden=[3, 2], layers=3)
    with pytest.raises(ConfigError, match="memory"):
        make_model("nru", 2, 1, "last", memory=0)
    with pytest.raises(ConfigError, match="relu_heads"):
        make_model("nru", 2, 1, "last", relu_heads="yes")
    model = make_model("nru", 2, 1, "last", dtype="float64", hidden=4, layers=2, memory=4,
                       heads=1)
    assert model.spec.hidden == (4, 4) and model.spec.kind == "nru"
    assert model.structural_form == "hidden"
    assert NRU.spec_for(2, 1, "last", hidden=4, layers=2, memory=4, heads=1).param_shapes() == {
        k: tuple(p.shape) for k, p in model.params.items()}
    x = _dev(np.zeros((3, 2, 2)))
    with pytest.raises(ConfigError, match=r"state\[0\].m must have shape \(2, 4\)"):
        model.forward(model.params, x, [(_dev(np.zeros((2, 4))), _dev(np.zeros((2, 3))))] * 2)
    with pytest.raises(ConfigError, match=r"state must be a list of one \(h, m\) pair"):
        model.forward(model.params, x, [(_dev(np.zeros((2, 4))), _dev(np.zeros((2, 4))))])


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("optimizer,clip,steps", [
    ({"name": "adam", "lr": 0.01}, 1.0, 20),
    ({"name": "hf", "cg_max": 10}, 0.0, 4)], ids=["adam", "hf"])
def test_loss_falls_when_training_through_run(optimizer, clip, steps):
    """The adding problem at T = 6: the held-out MSE after training is below the initial one
    (hf: structural_form "auto" takes the model's "hidden")."""
    config = cc.run_config({"name": "nru", "hidden": 8, "memory": 4, "heads": 4}, optimizer,
                           steps, clip=clip, T=6, batch=16, eval_size=64, eval_every=steps)
    cc.check_trains_through_run(config, n_evals=2, falls_below=0.8)
