"""Training runs: reproducibility, resume, truncated BPTT, divergence, checkpoints, outputs."""
import json
import os
import re

import numpy as np
import pytest

from rnnlab import backend, losses
from rnnlab.config import RunConfig
from rnnlab.errors import CheckpointError, ConfigError
from rnnlab.models import ElmanRNN
from rnnlab.objective import Batch
from rnnlab.optim import SGD
from rnnlab.train import FileSink, MemorySink, run, train_step
from rnnlab.train import checkpoint

SECTION = {"T": "task", "hidden": "model", "init": "model", "lr": "optimizer",
           "momentum": "optimizer", "nesterov": "optimizer", "optimizer": "optimizer",
           "task": "task", "model": "model"}


def small_config(tmp_path=None, name="run", **changes):
    """A small RunConfig from flat keyword changes (optimizer/task/model given by name)."""
    flat = dict(T=8, hidden=6, batch=4, steps=12, eval_every=4, eval_size=16, lr=0.01)
    flat.update(changes)
    overrides = {}
    for key in ("task", "model", "optimizer"):
        if key in flat:
            overrides[key] = flat.pop(key)
    for key, value in flat.items():
        overrides[f"{SECTION.get(key, 'train')}.{key}"] = value
    return RunConfig().with_overrides(overrides)


def train(config, tmp_path, name="run", resume=False):
    """Run ``config`` into ``tmp_path/name``; return the result (the run must not diverge)."""
    return run(config, FileSink(str(tmp_path / name)), resume=resume, progress=False)


def assert_same_params(a, b):
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype
        assert np.array_equal(a[k], b[k]), k  # bit-identical, not merely close


@pytest.mark.parametrize("optimizer,extra", [("sgd", {"momentum": 0.9, "nesterov": True}),
                                             ("adam", {}), ("path-sgd", {"lr": 1e-8}),
                                             ("path-adam", {"lr": 1e-3}),
                                             ("gsgd", {"lr": 0.01})])
def test_resume_is_bit_identical_to_straight_run(tmp_path, optimizer, extra):
    straight = train(small_config(steps=24, optimizer=optimizer, **extra), tmp_path, "straight")
    half = small_config(steps=12, optimizer=optimizer, **extra)
    train(half, tmp_path, "resumed")
    resumed = train(half.with_overrides({"train.steps": 24}), tmp_path, "resumed", resume=True)
    assert resumed.status == straight.status == "finished"
    assert_same_params(straight.params, resumed.params)
    # The resumed run's metrics file continues the first half's without duplicates.
    steps = [(r["kind"], r["step"]) for r in resumed.history]
    assert steps == [(r["kind"], r["step"]) for r in straight.history]
    on_disk = [json.loads(line) for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert on_disk == resumed.history


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    """Records written after the last checkpoint (a crash between the two) are dropped on
    resume, so the history matches the parameters it continues from."""
    config = small_config(steps=8, checkpoint_every=8, eval_every=4)
    train(config, tmp_path)
    state, meta = checkpoint.load(str(tmp_path / "run" / "checkpoint.npz"))
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "eval", "step": 11, "mse": 0.5}) + "\n")
    resumed = train(config.with_overrides({"train.steps": 12}), tmp_path, resume=True)
    assert [r["step"] for r in resumed.history if r["kind"] == "eval"] == [0, 4, 8, 12]


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = train(small_config(), tmp_path, "a")
    b = run(small_config(), MemorySink(), progress=False)
    c = run(small_config(seed=1), MemorySink(), progress=False)
    assert_same_params(a.params, b.params)
    assert a.history == b.history  # a run is a pure function of its config: sinks only keep
    assert not np.array_equal(a.params["layer1.W_rec"], c.params["layer1.W_rec"])


def test_training_beats_the_trivial_adding_baseline():
    # No function of the inputs that ignores the marked values can beat MSE 1/6 (predicting the
    # mean); 400 Adam steps on T=4 reach ~0.08 with seed 0, so < 0.12 leaves room for BLAS
    # round-off while a broken gradient or update stays at or above 1/6.
    result = run(small_config(T=4, hidden=16, batch=32, steps=400, eval_every=100,
                              eval_size=256, optimizer="adam", lr=1e-2), MemorySink(),
                 progress=False)
    evals = [r["mse"] for r in result.history if r["kind"] == "eval"]
    assert evals[0] > 0.5  # targets near 1 against outputs near 0 at the start
    assert evals[-1] < 0.12


def test_run_writes_metrics_config_checkpoint_and_curve(tmp_path):
    config = small_config()
    result = train(config, tmp_path)
    out = tmp_path / "run"
    for name in ("metrics.jsonl", "config.json", "checkpoint.npz", "learning_curve.png"):
        assert os.path.getsize(out / name) > 0, name
    with open(out / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert records == result.history
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 4, 8, 12]
    # the config written into the folder reloads to the same run
    reloaded = RunConfig.from_file(str(out / "config.json"))
    assert reloaded == config and reloaded.run_id() == config.run_id()
    assert_same_params(run(reloaded, MemorySink(), progress=False).params, result.params)


def test_metrics_are_on_disk_before_the_run_ends(tmp_path, monkeypatch):
    """Each record is appended and flushed when made: a crash loses nothing already measured."""
    config = small_config(steps=12, eval_every=4)
    seen = []
    real = FileSink.record

    def record_and_look(self, entry):
        real(self, entry)
        with open(self.metrics_path) as f:
            seen.append(sum(1 for _ in f))
        if entry["kind"] == "eval" and entry["step"] == 8:
            raise RuntimeError("crash after the step-8 evaluation")

    monkeypatch.setattr(FileSink, "record", record_and_look)
    with pytest.raises(RuntimeError, match="crash"):
        train(config, tmp_path)
    assert seen == list(range(1, len(seen) + 1))  # one more line on disk after each record
    steps = [json.loads(line)["step"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert steps == [0, 4, 4, 8, 8]


def _batch(x, y):
    return Batch(x, y)


def test_truncated_bptt_updates_once_per_scored_chunk(rng=np.random.default_rng(0)):
    model = ElmanRNN.create(2, (3,), 1, outputs="every", init="orthogonal", seed=0,
                            dtype="float64")
    x = rng.standard_normal((10, 2, 2))
    y = rng.standard_normal((10, 2, 1))
    opt = SGD(lr=1e-3)
    train_step(model, model.params, opt, _batch(x, y), losses.mse, truncate=3)
    assert opt.steps == 4  # chunks of 3, 3, 3, 1 steps
    last_only = ElmanRNN.create(2, (3,), 1, outputs="last", seed=0, dtype="float64")
    opt = SGD(lr=1e-3)
    train_step(last_only, last_only.params, opt, _batch(x, y[-1]), losses.mse, truncate=3)
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
    metrics = train_step(model, params, SGD(lr=0.1), _batch(x, y), losses.mse, truncate=3)
    for k in params:
        np.testing.assert_allclose(params[k], manual[k], rtol=0, atol=1e-14)  # same float ops
    np.testing.assert_array_equal(metrics["final_state"][0], cache2.final_state[0])


def test_divergence_is_a_status_and_keeps_last_good_checkpoint(tmp_path):
    # Without clipping, lr=10 makes this small ReLU RNN blow up after some updates; the run must
    # stop, say why, and keep the checkpoint written at the last multiple of 4 steps before it.
    config = small_config(clip=0.0, lr=10.0, T=30, steps=200, checkpoint_every=4, eval_every=4)
    result = train(config, tmp_path)
    assert result.status == "diverged"
    match = re.search(r"training diverged at step (\d+): (loss|gradient norm) is (inf|nan); "
                      r"the last good checkpoint is (.+) \(step (\d+)\)", result.message)
    assert match, result.message
    failed_at, saved_at = int(match.group(1)), int(match.group(5))
    assert failed_at == result.step + 1 and result.reason in result.message
    assert failed_at > 4  # the scenario needs at least one checkpoint after step 0
    assert saved_at == 4 * ((failed_at - 1) // 4)
    state, meta = checkpoint.load(match.group(4))
    assert meta["step"] == saved_at
    assert all(np.isfinite(a).all() for a in state["params"].values())
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        last = json.loads(f.readlines()[-1])
    assert last["kind"] == "diverged" and last["step"] == failed_at
    with pytest.raises(Exception, match="training diverged"):
        result.raise_for_status()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_checkpoint_is_written_only_from_finite_state(tmp_path, optimizer):
    """An update can turn the parameters non-finite while the loss and gradient that produced it
    were finite; the checkpoint must then keep the previous, finite state."""
    config = small_config(optimizer=optimizer, lr=1e39, clip=0.0, steps=6, checkpoint_every=1,
                          eval_every=1)
    result = train(config, tmp_path)
    assert result.status == "diverged"
    state, meta = checkpoint.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert all(np.isfinite(a).all() for a in state["params"].values())
    assert meta["step"] <= result.step


def test_ctrl_c_stops_with_a_status_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    config = small_config(steps=12, eval_every=4)
    calls = {"n": 0}
    real = SGD._update

    def interrupt_at_step_6(self, params, grads, **needs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, params, grads, **needs)

    monkeypatch.setattr(SGD, "_update", interrupt_at_step_6)
    result = train(config, tmp_path)
    assert result.status == "stopped" and result.step == 5
    _, meta = checkpoint.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert meta["step"] == 4 and "(step 4)" in result.message
    assert result.history[-1]["kind"] == "stopped"


def test_interrupted_checkpoint_write_keeps_last_good_one(tmp_path, monkeypatch):
    config = small_config(steps=4)
    train(config, tmp_path)
    path = str(tmp_path / "run" / "checkpoint.npz")
    before, meta_before = checkpoint.load(path)

    def crash_midway(f, **arrays):
        f.write(b"PK\x03\x04 partial archive")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(checkpoint.np, "savez", crash_midway)
    result = train(config.with_overrides({"train.steps": 8}), tmp_path, resume=True)
    assert result.status == "stopped"
    after, meta_after = checkpoint.load(path)
    assert meta_after["step"] == meta_before["step"] == 4
    assert_same_params(before["params"], after["params"])
    assert not os.path.exists(path + ".tmp")  # the partial file is removed


def test_resume_from_missing_or_corrupt_checkpoint_is_refused(tmp_path):
    config = small_config(steps=4)
    with pytest.raises(CheckpointError, match="no checkpoint at .*without --resume"):
        train(config, tmp_path, resume=True)
    train(config, tmp_path)
    path = tmp_path / "run" / "checkpoint.npz"
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        train(config.with_overrides({"train.steps": 8}), tmp_path, resume=True)


def test_old_or_foreign_checkpoints_are_refused(tmp_path):
    config = small_config(steps=4)
    train(config, tmp_path)
    path = str(tmp_path / "run" / "checkpoint.npz")
    state, meta = checkpoint.load(path)
    # a format-1 file (rnnlab 0.1: flat "param/..." members, meta without a tree)
    np.savez(path, **{"param/out.W": np.zeros((1, 6)),
                      "meta": np.array(json.dumps({"format": 1, "step": 4}))})
    with pytest.raises(CheckpointError, match="format 1 .*reads format 2"):
        train(config.with_overrides({"train.steps": 8}), tmp_path, resume=True)
    np.savez(path, weights=np.zeros(3))  # some other program's archive
    with pytest.raises(CheckpointError, match="not an rnnlab checkpoint"):
        checkpoint.load(path)
    checkpoint.save(path, state, {"step": 4})  # metadata without the config
    with pytest.raises(CheckpointError, match="lacks config"):
        checkpoint.load(path)


def test_resume_with_different_settings_is_refused(tmp_path):
    config = small_config(steps=4)
    train(config, tmp_path)
    with pytest.raises(CheckpointError, match=r"different settings \(optimizer.lr\)"):
        train(config.with_overrides({"optimizer.lr": 0.5, "train.steps": 8}), tmp_path,
              resume=True)


def test_run_ids_tell_configs_apart_but_not_their_lengths():
    a = small_config()
    assert a.run_id() == small_config().run_id()
    assert a.run_id() == a.with_overrides({"train.steps": 99}).run_id()  # a longer run continues
    others = [small_config(lr=0.02), small_config(seed=1), small_config(T=9),
              small_config(optimizer="adam"), small_config(hidden=7)]
    ids = {a.run_id()} | {c.run_id() for c in others}
    assert len(ids) == 1 + len(others)


@pytest.mark.parametrize("key,value,message", [
    ("task.T", 0, "T must be an integer >= 2"),
    ("model.hidden", 0, "hidden must be an integer >= 1"),
    ("optimizer.lr", 0.0, "lr must be a finite number > 0"),
    ("optimizer.lr", -1.0, "lr must be a finite number > 0"),
    ("task", "no-such-task", "task must be one of adding"),
    ("model", "transformer", "model must be one of elman, lstm, gru"),
    ("optimizer", "rmsprop", "optimizer must be one of"),
    ("model.init", "zeros", "init must be one of identity"),
    ("train.backend", "jax", "backend must be one of numpy, cupy"),
    ("train.stepz", 3, "config section 'train' has no option 'stepz'; its options: steps"),
    ("optimizer.beta1", 0.5, "optimizer 'sgd' has no option 'beta1'; its options: lr, "),
])
def test_config_rejects_bad_values_naming_them(key, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        small_config().with_overrides({key: value})


def test_changing_the_optimizer_drops_the_old_ones_options():
    sgd = small_config(momentum=0.9)
    adam = sgd.with_overrides({"optimizer": "adam"})
    assert adam.optimizer == {"name": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999,
                              "eps": 1e-8}  # Adam's own defaults, no momentum


def test_cupy_backend_without_gpu_fails_clearly():
    if backend.cupy_unavailable_reason() is None:
        pytest.skip("cupy is usable here; this checks the error when it is not")
    with pytest.raises(backend.BackendError, match="cupy"):
        run(small_config(backend="cupy"), MemorySink(), progress=False)


def test_a_finished_run_scores_its_own_test_split_once(tmp_path):
    """The test split is drawn from its own seed stream (another set than the validation
    split), scored once at the end of a finished run and kept as a "test" record; a run that
    continues drops that record, and ends with one test record again."""
    result = run(small_config(test_size=32), MemorySink(), progress=False)
    tests = [r for r in result.history if r["kind"] == "test"]
    assert len(tests) == 1 and tests[0]["step"] == 12
    assert result.test == {k: v for k, v in tests[0].items() if k not in ("kind", "step")}
    assert result.test["mse"] != result.final["mse"]  # other sequences, other error
    again = run(small_config(test_size=32), MemorySink(), progress=False)
    assert again.test == result.test  # seeded

    sink = FileSink(str(tmp_path / "run"))
    run(small_config(test_size=32), sink, progress=False)
    longer = run(small_config(test_size=32, steps=16), sink, resume=True, progress=False)
    tests = [r for r in longer.history if r["kind"] == "test"]
    assert [r["step"] for r in tests] == [16]
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        on_disk = [json.loads(line) for line in f]
    assert [r["step"] for r in on_disk if r["kind"] == "test"] == [16]


def test_no_test_split_without_test_size_or_after_divergence():
    assert run(small_config(test_size=0), MemorySink(), progress=False).test == {}
    diverged = run(small_config(clip=0.0, lr=10.0, T=30, steps=200), MemorySink(),
                   progress=False)
    assert diverged.status == "diverged" and diverged.test == {}
    assert not [r for r in diverged.history if r["kind"] == "test"]


def test_stop_when_solved_ends_at_the_first_evaluation_below_the_threshold():
    config = small_config(T=5, steps=1500, eval_every=50, lr=0.01, optimizer="adam", hidden=16,
                          batch=32,
                          stop_when_solved=True,
                          test_size=16)
    result = run(config, MemorySink(), progress=False)
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert result.status == "finished" and result.step < 1500
    assert evals[-1]["step"] == result.step and evals[-1]["mse"] < 0.01
    assert all(r["mse"] >= 0.01 for r in evals[:-1])
    assert result.test  # a solved run is finished: its test split is scored
    longer = run(config.with_overrides({"train.stop_when_solved": False}), MemorySink(),
                 progress=False)
    assert longer.step == 1500
