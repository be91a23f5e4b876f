"""Invariance of update rules to node-wise rescaling (``path-sgd-relu-rnn.md`` Definition 1,
Theorem 2): SGD, Adam, Path-SGD, Path-Adam. (G-SGD's are in ``tests/test_gsgd.py``.)

An update rule A is invariant to a feasible rescaling T (``rnnlab.paths.rescale``: positive
per-unit factors) when the networks A(p) and A(T(p)) compute the same function. Each check runs
both networks through the same 3 training steps (``rnnlab.train.run.train_step``, fresh batches,
full or truncated BPTT) and compares their outputs on a fresh probe input.

What the maths says, and what is tested:

* Path-SGD, with kappa^(1) or kappa^(1) + kappa^(2): g(T p) = g(p) / s, kappa(T p) = kappa(p) / s^2
  (s the factor of each parameter), so the step of T p is s times the step of p: invariant, step
  after step, also under truncated BPTT (the carried state is rescaled, and kappa counts it as a
  bias-like input). Observed gaps are at round-off (<= 1e-15 of the output scale); the test allows
  1e-12.
* SGD: the step of T p is g / s instead of s g: not invariant.
* Adam: m^ / sqrt(v^) does not change when its input is multiplied by a constant per coordinate,
  so the step of T p is the step of p, not s times it: not invariant.
* Path-Adam: its input g / kappa is s times p's, which Adam's normalisation cancels in the same
  way; at the first step it is Adam's step exactly (``tests/test_path_sgd.py``). Not invariant.

"Not invariant" is asserted with a margin: the output gap must exceed 1e-8 of the output scale,
1e4 times the tolerance the invariant rules meet (and ~1e8 times their observed gaps). Each
property has planted errors that the same check must catch (kappa with a transposed W_rec term,
biases not path-normalised, kappa_eps too large, steps taken where kappa = 0 under a carried
state). Leaving the bias paths out of kappa is NOT such an error: it stays invariant (tested).

Shapes: T steps, B batch, n_in inputs, H_i hidden units, K = n_out outputs. float64 throughout.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rnnlab import ElmanRNN, backend, losses, objective
from rnnlab.errors import DivergenceError
from rnnlab.models import ElmanSpec
from rnnlab.objective import Batch
from rnnlab.optim import SGD, Adam, path_sgd
from rnnlab.optim.path_sgd import PathAdam, PathSGD
from rnnlab.params import unflatten
from rnnlab.paths import n_params, norms
from rnnlab.paths import rescale as R
from rnnlab.train.run import train_step

import strategies as S

STEPS = 3
# invariant rules: the gap is round-off in ~1e3 float64 operations per value over 3 steps
# (observed <= 1e-15 of the output scale); 1e-12 leaves a factor 1e3
INVARIANT_TOL = 1e-12
# non-invariant rules must miss by far more than any round-off: 1e4 x the tolerance above
NOT_INVARIANT_MARGIN = 1e4 * INVARIANT_TOL
# every step moves the parameters by at most this fraction of their largest entry (the learning
# rate is fixed from a trial step of the original network and then used for both networks)
STEP_FRACTION = 0.02


# ----------------------------------------------------------------------------- the check
def _forward(spec, p, x):
    """Outputs (host) of the network with host parameters ``p`` on host input ``x``, computed on
    the active backend."""
    dev = {k: backend.to_device(v) for k, v in p.items()}
    return backend.to_host(ElmanRNN(spec, dev).forward(dev, backend.to_device(x))[0])


def _abs_scale(spec, p, x):
    """Outputs of the |weights| identity network on |x|: bounds every sum in a forward pass."""
    ab = {k: np.abs(v) for k, v in p.items()}
    return float(np.max(_forward(dataclasses.replace(spec, activation="identity"), ab,
                                 np.abs(x))))


def _batches(spec, T, B, seed, n=STEPS):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((T, B, spec.n_in))
        if spec.outputs == "last":
            out.append(Batch(x, rng.standard_normal((B, spec.n_out))))
        else:
            mask = S.host_mask(T, B, rng) if spec.outputs == "masked" else None
            out.append(Batch(x, rng.standard_normal((T, B, spec.n_out)), mask))
    return out


def _train(make, spec, p, batches, truncate):
    """Parameters after one ``train_step`` per batch with a fresh optimizer ``make()``."""
    model = ElmanRNN(spec, {k: backend.to_device(v).copy() for k, v in p.items()})
    opt = make()
    for batch in batches:
        train_step(model, model.params, opt, batch, losses.mse, truncate=truncate)
    return {k: np.array(backend.to_host(v)) for k, v in model.params.items()}


def learning_rate(make_with_lr, spec, p, batches, truncate):
    """The rate whose trial step on the original network moves no parameter by more than
    STEP_FRACTION of the largest one (a fixed number, then used for both networks)."""
    moved = _train(lambda: make_with_lr(1.0), spec, p, batches[:1], truncate)
    move = max(float(np.abs(moved[k] - p[k]).max()) for k in p)
    top = max(float(np.abs(v).max()) for v in p.values())
    return STEP_FRACTION * top / move if move > 0 else 1.0


@dataclasses.dataclass(frozen=True)
class Gap:
    """max |f_{A(p)}(probe) - f_{A(T p)}(probe)| against two output scales: ``of_both`` (the
    larger abs-scale of the two updated networks, which bounds their forward round-off) and
    ``of_original`` (of A(p) alone: a rescaled network that blew up does not hide the gap)."""

    value: float
    of_both: float
    of_original: float
    p1: dict

    @property
    def relative(self) -> float:
        return self.value / max(self.of_both, 1e-300)

    @property
    def relative_to_original(self) -> float:
        return self.value / max(self.of_original, 1e-300)


def invariance_gap(make_with_lr, spec, p, alpha, batches, probe, truncate=0) -> Gap:
    """Run A (the optimizer ``make_with_lr(lr)``) for len(batches) steps from p and from T_alpha(p);
    the gap between the two updated networks on ``probe``. A run that diverges is an infinite
    gap."""
    lr = learning_rate(make_with_lr, spec, p, batches, truncate)
    q = R.rescale(spec, p, alpha)
    p1 = _train(lambda: make_with_lr(lr), spec, p, batches, truncate)
    try:
        with backend.quiet_float_errors():
            q1 = _train(lambda: make_with_lr(lr), spec, q, batches, truncate)
            y_p, y_q = _forward(spec, p1, probe), _forward(spec, q1, probe)
    except DivergenceError:
        return Gap(np.inf, 1.0, 1.0, p1)
    value = float(np.max(np.abs(y_p - y_q)))
    if not np.isfinite(value):
        return Gap(np.inf, 1.0, 1.0, p1)
    scale_p = _abs_scale(spec, p1, probe)
    return Gap(value, max(scale_p, _abs_scale(spec, q1, probe)), scale_p, p1)


def _sensitive(spec, p, probe, batch=None) -> bool:
    """Whether the parameters a rescaling changes (all but out.b) matter: the probe outputs
    depend on them, and (with ``batch``) so does the loss. A dead network (every ReLU off where it
    is read) computes the same function after any update of them, invariant or not."""
    model = ElmanRNN(spec, p)
    keys = [k for k in p if k != "out.b"]

    def matters(d):
        return max(float(np.abs(d[k]).max()) for k in keys) > 1e-3 * max(
            float(np.abs(v).max()) for v in d.values())

    y, cache = model.forward(p, probe)
    ok = matters(model.backward(p, np.ones_like(y), cache)[0])
    if batch is not None:
        ok = ok and matters(objective.batch_loss_and_grads(model, p, batch, losses.mse)[1])
    return ok


# ----------------------------------------------------------------------------- problems
far_from_one = st.one_of(st.floats(0.25, 0.5), st.floats(2.0, 4.0))


@st.composite
def rescale_problems(draw, factors=S.gains):
    """(spec, p, alpha, batches, probe, truncate): ReLU, 1-3 layers of widths 1-4, n_in and K
    1-3, biases on/off, outputs last/every/masked, T 1-6, B 1-3, N(0, 0.5^2) weights, one factor
    per unit from ``factors``, 3 training batches, a 16-sequence probe, truncation k in 0..T."""
    arch = draw(S.architectures(activation=st.just("relu")))
    arch["hidden"] = tuple(min(w, 4) for w in arch["hidden"])
    spec = ElmanSpec(**arch)
    T, B = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(S.seeds))
    p = unflatten(0.5 * rng.standard_normal(n_params(spec)), spec, host=True)
    alpha = [np.array(draw(st.lists(factors, min_size=w, max_size=w))) for w in spec.hidden]
    batches = _batches(spec, T, B, int(rng.integers(2**32)))
    probe = rng.standard_normal((T, 16, spec.n_in))
    return spec, p, alpha, batches, probe, draw(st.integers(0, T))


PATH_SGD = {"kappa1": lambda lr: PathSGD(lr=lr),
            "kappa1+kappa2": lambda lr: PathSGD(lr=lr, second_term=True)}
NOT_INVARIANT = {"sgd": lambda lr: SGD(lr=lr), "adam": lambda lr: Adam(lr=lr),
                 "path-adam": lambda lr: PathAdam(lr=lr)}


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("variant", list(PATH_SGD))
@given(problem=rescale_problems())
def test_path_sgd_is_invariant_over_three_steps(variant, problem):
    spec, p, alpha, batches, probe, truncate = problem
    gap = invariance_gap(PATH_SGD[variant], spec, p, alpha, batches, probe, truncate)
    assert gap.relative <= INVARIANT_TOL, gap.relative


@pytest.mark.parametrize("rule", list(NOT_INVARIANT))
@given(problem=rescale_problems(factors=far_from_one))
def test_sgd_adam_and_path_adam_are_not_invariant(rule, problem):
    spec, p, alpha, batches, probe, truncate = problem
    # a network whose rescaled parameters matter for the loss and the probe, before and after
    # training (a dead ReLU network is trivially "invariant" under every rule)
    assume(_sensitive(spec, p, probe, batches[0]))
    gap = invariance_gap(NOT_INVARIANT[rule], spec, p, alpha, batches, probe, truncate)
    assume(_sensitive(spec, gap.p1, probe))
    assert gap.relative_to_original > NOT_INVARIANT_MARGIN, gap.relative_to_original


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(PATH_SGD))
@settings(max_examples=300)
@given(problem=rescale_problems())
def test_path_sgd_is_invariant_over_three_steps_exhaustive(variant, problem):
    test_path_sgd_is_invariant_over_three_steps.hypothesis.inner_test(variant, problem)


@pytest.mark.slow
@pytest.mark.parametrize("rule", list(NOT_INVARIANT))
@settings(max_examples=300)
@given(problem=rescale_problems(factors=far_from_one))
def test_sgd_adam_and_path_adam_are_not_invariant_exhaustive(rule, problem):
    test_sgd_adam_and_path_adam_are_not_invariant.hypothesis.inner_test(rule, problem)


def test_path_sgd_is_invariant_on_every_backend(xp):
    spec = ElmanSpec(2, (3, 4), 2, "relu", True, "masked")
    rng = np.random.default_rng(3)
    p = unflatten(0.5 * rng.standard_normal(n_params(spec)), spec, host=True)
    alpha = R.random_alpha(spec, rng)
    batches, probe = _batches(spec, 5, 3, 4), rng.standard_normal((5, 16, 2))
    for variant, make in PATH_SGD.items():
        # batches stay on the host here; _train moves the parameters, train_step the rest
        dev = [Batch(backend.to_device(b.x), backend.to_device(b.targets),
                     None if b.mask is None else backend.to_device(b.mask)) for b in batches]
        gap = invariance_gap(make, spec, p, alpha, dev, probe, truncate=2)
        assert gap.relative <= INVARIANT_TOL, (variant, gap.relative)


# ----------------------------------------------------------------------------- planted errors
def _planted_problem(truncate=0, bias=True, T=5):
    spec = ElmanSpec(2, (3, 3), 2, "relu", bias, "every")
    rng = np.random.default_rng(11)
    p = unflatten(0.5 * rng.standard_normal(n_params(spec)), spec, host=True)
    alpha = [np.array([0.3, 2.5, 3.7]), np.array([3.1, 0.4, 1.9])]
    return spec, p, alpha, _batches(spec, T, 3, 12), rng.standard_normal((T, 16, 2)), truncate


def _transposed_rec(real):
    def kappa_device(spec, params, T, **kw):
        k = real(spec, params, T, **kw)
        for i in range(1, spec.layers + 1):
            k[f"layer{i}.W_rec"] = k[f"layer{i}.W_rec"].T.copy()
        return k
    return kappa_device


def _unnormalised_biases(real):
    def kappa_device(spec, params, T, **kw):
        k = real(spec, params, T, **kw)
        for name in k:
            if name.endswith(".b"):
                k[name][...] = 1.0     # an SGD step for the biases
        return k
    return kappa_device


def _without_bias_paths(real):
    def kappa_device(spec, params, T, **kw):
        return real(spec, {k: (0 * v if k.endswith(".b") else v) for k, v in params.items()},
                    T, **kw)
    return kappa_device


# name: (kappa_device wrapper or None, PathSGD options, problem options)
PLANTS = {
    "kappa with a transposed W_rec term": (_transposed_rec, {}, {}),
    "biases not path-normalised (kappa(b) = 1)": (_unnormalised_biases, {}, {}),
    "kappa_eps too large (1.0)": (None, {"kappa_eps": 1.0}, {}),
    "steps where kappa = 0 (1-step chunks under a carried state)": (
        "no chunk_paths", {}, {"truncate": 2}),
}


@pytest.mark.parametrize("second", [False, True], ids=["kappa1", "kappa1+kappa2"])
@pytest.mark.parametrize("plant", list(PLANTS))
def test_the_invariance_check_catches_planted_errors(monkeypatch, plant, second):
    wrap, options, problem_options = PLANTS[plant]
    spec, p, alpha, batches, probe, truncate = _planted_problem(**problem_options)

    def make(lr):
        return PathSGD(lr=lr, second_term=second, **options)

    honest = invariance_gap(lambda lr: PathSGD(lr=lr, second_term=second), spec, p, alpha,
                            batches, probe, truncate)
    assert honest.relative <= INVARIANT_TOL   # the same problem passes without the plant
    if wrap == "no chunk_paths":
        monkeypatch.setattr(path_sgd, "chunk_paths", lambda name, kappa, batch: None)
    elif wrap is not None:
        monkeypatch.setattr(norms, "kappa_device", wrap(norms.kappa_device))
    planted = invariance_gap(make, spec, p, alpha, batches, probe, truncate)
    assert planted.relative_to_original > NOT_INVARIANT_MARGIN, planted.relative_to_original


@pytest.mark.parametrize("second", [False, True], ids=["kappa1", "kappa1+kappa2"])
def test_kappa_without_the_bias_paths_is_still_invariant(monkeypatch, second):
    # not a plant: dropping a structurally defined set of paths (all from the bias node) leaves
    # a kappa that still rescales like kappa / s^2 path by path, so the step stays invariant
    # (the same reason h~_0 = 0 is fine under a carried state); it is just a different kappa
    spec, p, alpha, batches, probe, truncate = _planted_problem()
    monkeypatch.setattr(norms, "kappa_device", _without_bias_paths(norms.kappa_device))
    gap = invariance_gap(lambda lr: PathSGD(lr=lr, second_term=second), spec, p, alpha, batches,
                         probe, truncate)
    assert gap.relative <= INVARIANT_TOL
