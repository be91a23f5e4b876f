"""Training runs: reproducibility, resume, truncated BPTT, divergence, checkpoints, outputs."""
import json
import os
import re

import numpy as np
import pytest

from rnnlab import backend, losses
from rnnlab.errors import CheckpointError, ConfigError, DivergenceError
from rnnlab.models import ElmanRNN
from rnnlab.optim import SGD
from rnnlab.train import TrainConfig, train, train_step
from rnnlab.train import checkpoint


def small_config(tmp_path, name="run", **changes):
    base = dict(T=8, hidden=6, batch=4, steps=12, eval_every=4, eval_size=16, lr=0.01,
                out=str(tmp_path / name))
    base.update(changes)
    return TrainConfig(**base)


def assert_same_params(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        assert np.array_equal(a[k], b[k]), k  # bit-identical, not merely close


@pytest.mark.parametrize("optimizer,extra", [("sgd", {"momentum": 0.9, "nesterov": True}),
                                             ("adam", {})])
def test_resume_is_bit_identical_to_straight_run(tmp_path, optimizer, extra):
    straight = train(small_config(tmp_path, "straight", steps=24, optimizer=optimizer, **extra),
                     progress=False)
    half = small_config(tmp_path, "resumed", steps=12, optimizer=optimizer, **extra)
    train(half, progress=False)
    resumed = train(half.replace(steps=24), resume=True, progress=False)
    assert_same_params(straight.params, resumed.params)
    # The resumed run's metrics file continues the first half's without duplicates.
    steps = [(r["kind"], r["step"]) for r in resumed.history]
    assert steps == [(r["kind"], r["step"]) for r in straight.history]


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train(small_config(tmp_path, "a"), progress=False)
    b = train(small_config(tmp_path, "b"), progress=False)
    c = train(small_config(tmp_path, "c", seed=1), progress=False)
    assert_same_params(a.params, b.params)
    assert a.history == b.history
    assert not np.array_equal(a.params["layer1.W_rec"], c.params["layer1.W_rec"])


def test_training_beats_the_trivial_adding_baseline(tmp_path):
    # No function of the inputs that ignores the marked values can beat MSE 1/6 (predicting the
    # mean); 400 Adam steps on T=4 reach ~0.08 with seed 0, so < 0.12 leaves room for BLAS
    # round-off while a broken gradient or update stays at or above 1/6.
    result = train(small_config(tmp_path, T=4, hidden=16, batch=32, steps=400, eval_every=100,
                                eval_size=256, optimizer="adam", lr=1e-2), progress=False)
    evals = [r["mse"] for r in result.history if r["kind"] == "eval"]
    assert evals[0] > 0.5  # targets near 1 against outputs near 0 at the start
    assert evals[-1] < 0.12


def test_run_writes_metrics_config_checkpoint_and_curve(tmp_path):
    config = small_config(tmp_path)
    result = train(config, progress=False)
    for name in ("metrics.jsonl", "config.json", "checkpoint.npz", "learning_curve.png"):
        assert os.path.getsize(os.path.join(config.out, name)) > 0, name
    with open(os.path.join(config.out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert records == result.history
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 4, 8, 12]
    with open(os.path.join(config.out, "config.json")) as f:
        assert TrainConfig.from_dict(json.load(f)) == config


def test_truncated_bptt_updates_once_per_scored_chunk(rng=np.random.default_rng(0)):
    model = ElmanRNN.create(2, (3,), 1, outputs="every", init="orthogonal", seed=0,
                            dtype="float64")
    x = rng.standard_normal((10, 2, 2))
    y = rng.standard_normal((10, 2, 1))
    opt = SGD(lr=1e-3)
    train_step(model, model.params, opt, x, y, None, losses.mse, truncate=3)
    assert opt.steps == 4  # chunks of 3, 3, 3, 1 steps
    last_only = ElmanRNN.create(2, (3,), 1, outputs="last", seed=0, dtype="float64")
    opt = SGD(lr=1e-3)
    train_step(last_only, last_only.params, opt, x, y[-1], None, losses.mse, truncate=3)
    assert opt.steps == 1  # only the chunk holding the last step is scored


def test_truncated_step_uses_carried_state(rng=np.random.default_rng(1)):
    """With k = T/2, the second update must equal a manual update from the carried state."""
    model = ElmanRNN.create(2, (3,), 1, outputs="every", init="orthogonal", seed=0,
                            dtype="float64")
    x, y = rng.standard_normal((6, 2, 2)), rng.standard_normal((6, 2, 1))
    manual = {k: v.copy() for k, v in model.params.items()}
    out, cache = model.forward(manual, x[:3])
    grads, _ = model.backward(manual, losses.mse(out, y[:3])[1], cache)
    for k in manual:
        manual[k] -= 0.1 * grads[k]
    out, cache2 = model.forward(manual, x[3:], cache.final_state)
    grads, _ = model.backward(manual, losses.mse(out, y[3:])[1], cache2)
    for k in manual:
        manual[k] -= 0.1 * grads[k]
    params = {k: v.copy() for k, v in model.params.items()}
    train_step(model, params, SGD(lr=0.1), x, y, None, losses.mse, truncate=3)
    for k in params:
        np.testing.assert_allclose(params[k], manual[k], rtol=0, atol=1e-14)  # same float ops


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    # Without clipping, lr=10 makes this small ReLU RNN blow up after some updates; the run must
    # stop, say why, and keep the checkpoint written at the last multiple of 4 steps before it.
    config = small_config(tmp_path, clip=0.0, lr=10.0, T=30, steps=200, checkpoint_every=4,
                          eval_every=4)
    with pytest.raises(DivergenceError) as info:
        train(config, progress=False)
    message = str(info.value)
    match = re.search(r"training diverged at step (\d+): (loss|gradient norm) is (inf|nan); "
                      r"the last good checkpoint is (.+) \(step (\d+)\)", message)
    assert match, message
    failed_at, saved_at = int(match.group(1)), int(match.group(5))
    assert failed_at > 4  # the scenario needs at least one checkpoint after step 0
    assert saved_at == 4 * ((failed_at - 1) // 4)
    params, _, meta = checkpoint.load(match.group(4))
    assert meta["step"] == saved_at
    assert all(np.isfinite(a).all() for a in params.values())
    with open(os.path.join(config.out, "metrics.jsonl")) as f:
        last = json.loads(f.readlines()[-1])
    assert last["kind"] == "diverged" and last["step"] == failed_at


def test_interrupted_checkpoint_write_keeps_last_good_one(tmp_path, monkeypatch):
    config = small_config(tmp_path, steps=4)
    train(config, progress=False)
    path = os.path.join(config.out, "checkpoint.npz")
    before, _, meta_before = checkpoint.load(path)

    def crash_midway(f, **arrays):
        f.write(b"PK\x03\x04 partial archive")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(checkpoint.np, "savez", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        train(config.replace(steps=8), resume=True, progress=False)
    after, _, meta_after = checkpoint.load(path)
    assert meta_after["step"] == meta_before["step"] == 4
    assert_same_params(before, after)


def test_resume_from_missing_or_corrupt_checkpoint_is_refused(tmp_path):
    config = small_config(tmp_path, steps=4)
    with pytest.raises(CheckpointError, match="no checkpoint at .*without --resume"):
        train(config, resume=True, progress=False)
    train(config, progress=False)
    path = os.path.join(config.out, "checkpoint.npz")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        train(config.replace(steps=8), resume=True, progress=False)


def test_resume_with_different_settings_is_refused(tmp_path):
    config = small_config(tmp_path, steps=4)
    train(config, progress=False)
    with pytest.raises(CheckpointError, match="different settings \\(lr\\)"):
        train(config.replace(lr=0.5, steps=8), resume=True, progress=False)


@pytest.mark.parametrize("field,value,message", [
    ("T", 0, "T must be an integer >= 1"),
    ("hidden", 0, "hidden must be an integer >= 1"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("task", "copying", "task must be one of adding"),
    ("model", "lstm", "model must be one of elman"),
    ("optimizer", "rmsprop", "optimizer must be one of"),
    ("init", "zeros", "init must be one of identity"),
    ("backend", "jax", "backend must be one of numpy, cupy"),
])
def test_config_rejects_bad_values_naming_them(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", "\\(")):
        small_config(tmp_path, **{field: value})


def test_adding_task_needs_two_steps(tmp_path):
    with pytest.raises(ConfigError, match="T must be an integer >= 2"):
        train(small_config(tmp_path, T=1), progress=False)


def test_cupy_backend_without_gpu_fails_clearly(tmp_path):
    if backend.cupy_unavailable_reason() is None:
        pytest.skip("cupy is usable here; this checks the error when it is not")
    with pytest.raises(backend.BackendError, match="cupy"):
        train(small_config(tmp_path, backend="cupy"), progress=False)
