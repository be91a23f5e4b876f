"""Hessian-free: conjugate gradient, structural damping, the HF update, cost accounting.

Float64 throughout the unit tests. Each check is against a reference computed independently
(a dense solve, a Jacobian formed by central differences, losses re-evaluated by hand), so a
wrong sign, a missing term or a wrong normalisation fails it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab import backend, losses, objective
from rnnlab.config import RunConfig
from rnnlab.errors import ConfigError
from rnnlab.models import ElmanRNN
from rnnlab.objective import Batch, gauss_newton_product
from rnnlab.optim import HessianFree
from rnnlab.optim.cg import conjugate_gradient, storage_schedule
from rnnlab.params import flatten
from rnnlab.train import FileSink, MemorySink, run
from rnnlab.train.run import supply_needs

# dense float64 solves of well-conditioned systems agree to ~1e-13; CG in n steps to ~1e-10
SOLVE_RTOL = 1e-8


def _spd(n, seed, condition=50.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, condition, n)) @ q.T


def _split(v, shapes):
    """A flat vector as a dict of arrays with these shapes (keys a, b, ...)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = v[start:start + size].reshape(shape).copy()
        start += size
    return out


def _flat(d):
    return np.concatenate([np.ravel(v) for v in d.values()])


SHAPES = {"a": (3, 4), "b": (8,)}


def _system(seed=0, condition=50.0):
    A = _spd(20, seed, condition)
    g = np.random.default_rng(seed + 1).standard_normal(20)
    return A, g, (lambda v: _split(A @ _flat(v), SHAPES))


# ----------------------------------------------------------------------------- CG
def test_cg_solves_an_spd_system_and_reports_the_model_value():
    A, g, product = _system()
    zeros = _split(np.zeros(20), SHAPES)
    result = conjugate_gradient(product, _split(g, SHAPES), zeros, max_iter=40, tol=0)
    x = _flat(result.x)
    np.testing.assert_allclose(x, np.linalg.solve(A, -g), rtol=SOLVE_RTOL, atol=1e-10)
    assert result.reason in ("converged", "max_iter")
    for i, xi, value in result.iterates:  # M(x) from the residual equals g.x + x.A.x / 2
        xi = _flat(xi)
        assert value == pytest.approx(g @ xi + 0.5 * xi @ A @ xi, rel=1e-10, abs=1e-12)
    assert all(b <= a + 1e-12 for a, b in zip(result.values, result.values[1:]))  # CG descends


def test_martens_rule_stops_where_progress_falls_below_k_tol():
    A, g, product = _system(seed=3, condition=1e6)
    zeros = _split(np.zeros(20), SHAPES)
    result = conjugate_gradient(product, _split(g, SHAPES), zeros, max_iter=500, tol=5e-2)
    values, i = result.values, result.iterations
    assert result.reason == "progress" and i < 500

    def stops(j):
        k = max(10, math.ceil(0.1 * j))
        return j > k and values[j - 1] < 0 and (values[j - 1] - values[j - 1 - k]) / \
            values[j - 1] < k * 5e-2
    assert stops(i) and not any(stops(j) for j in range(1, i))


def test_stored_iterates_follow_the_geometric_schedule_and_end_with_the_last():
    assert sorted(storage_schedule(20)) == [1, 2, 3, 4, 5, 7, 9, 11, 14, 18]
    A, g, product = _system(seed=5, condition=1e4)
    result = conjugate_gradient(product, _split(g, SHAPES), _split(np.zeros(20), SHAPES),
                                max_iter=13, tol=0)
    assert [i for i, _, _ in result.iterates] == [1, 2, 3, 4, 5, 7, 9, 11, 13]
    assert result.iterates[-1][1] is result.x


def test_a_warm_start_helps_and_an_uphill_one_is_dropped():
    A, g, product = _system(seed=7, condition=1e3)
    solution = np.linalg.solve(A, -g)
    cold = conjugate_gradient(product, _split(g, SHAPES), _split(np.zeros(20), SHAPES), 5, 0)
    near = conjugate_gradient(product, _split(g, SHAPES), _split(0.99 * solution, SHAPES), 5, 0)
    assert near.values[-1] < cold.values[-1]
    uphill = conjugate_gradient(product, _split(g, SHAPES), _split(2.5 * solution, SHAPES), 5, 0)
    np.testing.assert_allclose(_flat(uphill.x), _flat(cold.x), rtol=1e-12)  # M(x0) > 0: cold


# ----------------------------------------------------------------------------- structural damping
def _tiny(activation, seed=0, T=5, B=3):
    model = ElmanRNN.create(n_in=2, hidden=(3, 2), n_out=2, activation=activation,
                            init="orthogonal", outputs="every", seed=seed, dtype="float64")
    rng = np.random.default_rng(seed + 10)
    for k, p in model.params.items():  # larger weights: saturation matters for tanh
        p[...] = rng.uniform(-0.9, 0.9, p.shape)
    x = backend.to_device(rng.standard_normal((T, B, 2)))
    targets = backend.to_device(rng.standard_normal((T, B, 2)))
    return model, Batch(x, targets)


def _hidden_jacobians(model, batch, eps=1e-6):
    """Per layer, d h_t / d params by central differences: (T*B*H, n_params)."""
    vec, unflatten = flatten(model.params)
    vec = backend.to_host(vec)
    columns = []
    for j in range(vec.size):
        hs = []
        for sign in (1, -1):
            v = vec.copy()
            v[j] += sign * eps
            _, cache = model.forward(unflatten(backend.to_device(v)), batch.x)
            hs.append([backend.to_host(h[1:]).ravel() for h in cache.h])
        columns.append([(a - b) / (2 * eps) for a, b in zip(*hs)])
    return [np.stack([c[i] for c in columns], axis=1) for i in range(model.spec.layers)]


@pytest.mark.parametrize("form", ["matching", "hidden"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_structural_damping_adds_the_gauss_newton_matrix_of_the_hidden_penalty(activation,
                                                                              form):
    """G_s v - G v = s J_h^T D J_h v with J_h formed by central differences and D = I
    ("hidden") or diag(1 / act'(z)) in h-space ("matching": MS11's diag(act') in z-space)."""
    model, batch = _tiny(activation)
    vec, unflatten = flatten(model.params)
    v = unflatten(backend.to_device(np.random.default_rng(4).standard_normal(vec.size)))
    plain = gauss_newton_product(model, model.params, batch, v, losses.mse)
    damped = gauss_newton_product(model, model.params, batch, v, losses.mse, structural=0.7,
                                  structural_form=form)
    diff = backend.to_host(flatten(damped)[0] - flatten(plain)[0])
    _, cache = model.forward(model.params, batch.x)
    want = np.zeros_like(diff)
    for J, h in zip(_hidden_jacobians(model, batch), cache.h):
        h = backend.to_host(h[1:]).ravel()
        if activation == "relu":
            d = np.ones_like(h)  # act' is 0 or 1; where 0, J h is 0 too
        elif form == "matching":
            d = 1.0 / (1.0 - h * h)
        else:
            d = np.ones_like(h)
        want += 0.7 * J.T @ (d * (J @ backend.to_host(flatten(v)[0])))
    # J by central differences (eps 1e-6): ~1e-9 relative; 1e-6 leaves margin, a missing
    # 1/act' (tanh, matching) changes entries by > 1e-2
    np.testing.assert_allclose(diff, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())


def test_structural_damping_is_symmetric_and_needs_the_model_method():
    model, batch = _tiny("tanh")
    vec, unflatten = flatten(model.params)
    rng = np.random.default_rng(9)
    u, w = (unflatten(backend.to_device(rng.standard_normal(vec.size))) for _ in range(2))
    Gu = flatten(gauss_newton_product(model, model.params, batch, u, losses.mse,
                                      structural=0.3))[0]
    Gw = flatten(gauss_newton_product(model, model.params, batch, w, losses.mse,
                                      structural=0.3))[0]
    assert float(Gu @ flatten(w)[0]) == pytest.approx(float(Gw @ flatten(u)[0]), rel=1e-12)

    class NoStructure:
        spec = model.spec
        forward, rop = model.forward, model.rop
    with pytest.raises(ConfigError, match="no structural damping"):
        gauss_newton_product(NoStructure(), model.params, batch, u, losses.mse,
                             structural=0.3)


# ----------------------------------------------------------------------------- the HF update
def _hf_problem(seed=0, B=6):
    model = ElmanRNN.create(n_in=2, hidden=(4,), n_out=1, activation="tanh", init="orthogonal",
                            outputs="last", seed=seed, dtype="float64")
    rng = np.random.default_rng(seed + 20)
    x = backend.to_device(rng.standard_normal((5, B, 2)))
    y = backend.to_device(rng.standard_normal((B, 1)))
    return model, Batch(x, y)


def _dense_gn(model, params, batch, rows=None):
    b = batch if rows is None else batch.rows(*rows, model.spec.outputs)
    vec, unflatten = flatten(params)
    n = vec.size
    return np.stack([backend.to_host(flatten(gauss_newton_product(
        model, params, b, unflatten(backend.to_device(np.eye(n)[j])), losses.mse))[0])
        for j in range(n)], axis=1)


@pytest.mark.parametrize("curvature_batch", [0, 3])
def test_one_hf_update_is_the_damped_newton_step_and_lm_follows_rho(curvature_batch):
    """With CG run to convergence and no backtracking or line search, the step is
    -(G_c + lambda I)^-1 g (G_c on the curvature rows, g on the whole batch); the new lambda
    follows rho computed here from the loss on the curvature rows."""
    model, batch = _hf_problem()
    params = {k: v.copy() for k, v in model.params.items()}
    _, grads, _ = objective.batch_loss_and_grads(model, params, batch, losses.mse)
    lam = 0.3
    hf = HessianFree(damping=lam, structural_damping=0.0, cg_max=200, cg_tol=0,
                     backtracking=False, line_search=False, curvature_batch=curvature_batch)
    rows = None if curvature_batch == 0 else (0, curvature_batch)
    G = _dense_gn(model, params, batch, rows)
    g = backend.to_host(flatten(grads)[0])
    step = np.linalg.solve(G + lam * np.eye(g.size), -g)
    before = backend.to_host(flatten(params)[0])
    metrics = hf.step(params, grads, **supply_needs(hf.needs, model, params, batch, losses.mse))
    after = backend.to_host(flatten(params)[0])
    np.testing.assert_allclose(after - before, step, rtol=1e-7, atol=1e-10)

    b = batch if rows is None else batch.rows(*rows, "last")
    f = [objective.loss_value(model, model.params if k == 0 else params, b.x, b.targets,
                              losses.mse) for k in (0, 1)]
    m = g @ step + 0.5 * step @ (G + lam * np.eye(g.size)) @ step
    rho = (f[1] - f[0]) / m
    assert metrics["rho"] == pytest.approx(rho, rel=1e-6)
    want = lam * (1.5 if rho < 0.25 else 2 / 3 if rho > 0.75 else 1.0)
    assert metrics["damping"] == pytest.approx(want) and hf.state["damping"] == metrics["damping"]
    assert metrics["cost_D"] == 4 * (curvature_batch or 6) * metrics["cg_iterations"]


def test_line_search_never_takes_an_uphill_step_and_backtracking_picks_a_stored_iterate():
    model, batch = _hf_problem(seed=2)
    params = {k: v.copy() for k, v in model.params.items()}
    f0, grads, _ = objective.batch_loss_and_grads(model, params, batch, losses.mse)
    hf = HessianFree(damping=1e-4, cg_max=30)  # tiny damping: big, risky steps
    for _ in range(5):
        metrics = hf.step(params, grads, **supply_needs(hf.needs, model, params, batch,
                                                        losses.mse))
        f1, grads, _ = objective.batch_loss_and_grads(model, params, batch, losses.mse)
        assert f1 <= f0 and (metrics["alpha"] > 0) == (f1 < f0)
        assert metrics["cg_chosen"] in {i for i in storage_schedule(30)} | \
            {metrics["cg_iterations"]}
        f0 = f1


def test_hf_refuses_clipping_and_an_oversized_curvature_batch():
    config = RunConfig(optimizer={"name": "hf"}, train={"steps": 1, "clip": 1.0})
    with pytest.raises(ConfigError, match="unclipped gradient.*train.clip = 0"):
        run(config, MemorySink(), progress=False)
    config = RunConfig(task={"name": "adding", "T": 5}, model={"hidden": 4},
                       optimizer={"name": "hf", "curvature_batch": 99},
                       train={"steps": 1, "clip": 0.0, "batch": 8, "eval_size": 8})
    result = None
    with pytest.raises(ConfigError, match="curvature_batch = 99 is larger than the batch"):
        result = run(config, MemorySink(), progress=False)
    assert result is None


def _hf_config(steps, **train):
    return RunConfig(task={"name": "adding", "T": 12},
                     model={"name": "elman", "hidden": 6, "activation": "tanh",
                            "init": "orthogonal"},
                     optimizer={"name": "hf", "cg_max": 20, "curvature_batch": 4},
                     train={"steps": steps, "batch": 16, "clip": 0.0, "eval_every": 2,
                            "eval_size": 16, "test_size": 0, "dtype": "float64", **train})


def test_a_resumed_hf_run_is_bit_identical(tmp_path):
    """Damping, warm start and the cost counters survive the checkpoint."""
    straight = run(_hf_config(6), MemorySink(), progress=False)
    sink = FileSink(str(tmp_path / "run"))
    run(_hf_config(3, checkpoint_every=3), sink, progress=False)
    resumed = run(_hf_config(6, checkpoint_every=3), sink, resume=True, progress=False)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])
    last = [r for r in straight.history if r["kind"] == "train"][-1]
    again = [r for r in resumed.history if r["kind"] == "train"][-1]
    assert last == again


def test_hf_solves_the_addition_problem_at_T_30():
    """The pathological addition problem (MS11 form, T = 30) on a tanh RNN: HF reaches a
    validation zero-one error below 1 % (no timing asserted); SGD with clipping at 1 does not
    in the same number of updates."""
    base = {"task": {"name": "addition", "T": 30},
            "model": {"name": "elman", "hidden": 32, "activation": "tanh",
                      "init": "orthogonal"},
            "train": {"steps": 100, "batch": 300, "eval_every": 5, "eval_size": 500,
                      "test_size": 0, "dtype": "float64", "stop_when_solved": True}}
    hf = run(RunConfig(**dict(base, optimizer={"name": "hf", "cg_max": 50},
                              train=dict(base["train"], clip=0.0))), MemorySink(),
             progress=False)
    assert hf.status == "finished" and hf.final["error"] < 0.01
    sgd = run(RunConfig(**dict(base, optimizer={"name": "sgd", "lr": 0.01},
                               train=dict(base["train"], steps=hf.step))), MemorySink(),
              progress=False)
    assert sgd.final["error"] > 0.5


# ----------------------------------------------------------------------------- cost accounting
def test_cost_counters_are_krauses_p_d_and_p_i():
    """SGD: P_D = 3 B per update, P_I = 3; under truncated BPTT each chunk counts its share of
    T. HF: its reported GN products and extra passes on top."""
    config = RunConfig(task={"name": "adding", "T": 8}, model={"hidden": 4},
                       train={"steps": 6, "batch": 5, "eval_every": 2, "eval_size": 8,
                              "test_size": 0})
    records = [r for r in run(config, MemorySink(), progress=False).history
               if r["kind"] == "train"]
    assert [(r["P_D"], r["P_I"], r["P_D_all"]) for r in records] == \
        [(30.0 * k, 6.0 * k, 30.0 * k) for k in (1, 2, 3)]
    # outputs "last": only the last chunk of 4 steps (of 8) is scored and updates
    truncated = [r for r in run(config.with_overrides({"train.truncate": 4}), MemorySink(),
                                progress=False).history if r["kind"] == "train"]
    assert truncated[-1]["P_D"] == pytest.approx(6 * 3 * 5 * 0.5)

    hf = run(_hf_config(4, eval_every=1), MemorySink(), progress=False)
    train = [r for r in hf.history if r["kind"] == "train"]
    steps = np.diff([0.0] + [r["P_D"] for r in train])
    for spent, r in zip(steps, train):
        assert spent == pytest.approx(3 * 16 + 4 * 4 * r["optimizer"]["cg_products"])
        assert r["optimizer"]["cg_products"] - r["optimizer"]["cg_iterations"] in (0.0, 1.0)
    assert all(r["P_D_all"] > r["P_D"] and r["P_I_all"] > r["P_I"] for r in train)


def test_cost_curves_figure_places_each_point_at_its_cost():
    from rnnlab.train.plots import cost_curves_figure
    history = run(_hf_config(4, eval_every=2), MemorySink(), progress=False).history
    fig = cost_curves_figure({"hf": history}, "mse", baseline=1 / 6)
    train = [r for r in history if r["kind"] == "train"]
    (line,) = fig.axes[0].get_lines()  # train loss against P_D
    np.testing.assert_array_equal(line.get_xdata(), [r["P_D"] for r in train])
    (line, _) = fig.axes[3].get_lines()  # held-out mse against P_I, then the baseline
    evals = [r for r in history if r["kind"] == "eval" and r["step"] > 0]
    np.testing.assert_array_equal(line.get_ydata(), [r["mse"] for r in evals])
    np.testing.assert_array_equal(line.get_xdata(), [r["P_I"] for r in train])
