"""The sequential MNIST task on tiny IDX files written into tmp_path."""
from __future__ import annotations

import os

import numpy as np
import pytest

from rnnlab import backend
from rnnlab.config import RunConfig
from rnnlab.datasets import ENV_FOLDER, ENV_NO_VERIFY, write_idx
from rnnlab.errors import ConfigError
from rnnlab.tasks import TASKS, make_task
from rnnlab.train import run
from rnnlab.train.sinks import MemorySink

N_TRAIN, N_TEST = 30, 7  # validation: the last 30 // 6 = 5 of the shuffle


def _mnist(folder, n_train=N_TRAIN, n_test=N_TEST, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    sub = folder / "mnist"
    sub.mkdir(parents=True, exist_ok=True)
    data = {}
    for which, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(sub / f"{which}-images-idx3-ubyte{ext}", images)
        write_idx(sub / f"{which}-labels-idx1-ubyte{ext}", labels)
        data[which] = (images, labels)
    return data


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_NO_VERIFY, raising=False)
    monkeypatch.delenv(ENV_FOLDER, raising=False)
    return tmp_path, _mnist(tmp_path)


def _task(folder, **options):
    options.setdefault("verify", False)  # tiny files cannot match the real checksums
    return make_task("smnist", folder=str(folder), dtype="float64", **options)


def _expected(images, T, permutation=None, normalize=True):
    """Independent reference: flatten each image row-major, permute, scale, cut into T steps."""
    flat = images.reshape(len(images), 28 * 28).astype(np.float64)
    if permutation is not None:
        flat = np.stack([row[permutation] for row in flat])
    flat = flat / 255.0
    if normalize:
        flat = (flat - 0.1307) / 0.3081
    n_in = 784 // T
    out = np.empty((T, len(images), n_in))
    for b in range(len(images)):
        for t in range(T):
            out[t, b] = flat[b, t * n_in:(t + 1) * n_in]
    return out


def test_registered_with_its_options():
    assert "smnist" in TASKS
    assert [o.name for o in TASKS.options("smnist")] == [
        "folder", "T", "permuted", "permutation_seed", "normalize", "split_seed", "verify"]


@pytest.mark.parametrize("T, n_in", [(784, 1), (28, 28), (98, 8)])
@pytest.mark.parametrize("permuted", [False, True])
def test_pixel_order_shapes_and_dtypes(tiny, T, n_in, permuted):
    folder, data = tiny
    task = _task(folder, T=T, permuted=permuted)
    assert (task.T, task.n_in, task.n_out, task.outputs) == (T, n_in, 10, "last")
    images, labels = data["t10k"]
    x, targets, mask = next(task.eval_batches(N_TEST, 0, N_TEST, split="test"))
    assert x.shape == (T, N_TEST, n_in) and x.dtype == np.float64
    assert targets.shape == (N_TEST,) and targets.dtype == np.int64 and mask is None
    perm = np.random.RandomState(0).permutation(784) if permuted else None
    np.testing.assert_allclose(x, _expected(images, T, perm), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(targets, labels)
    if T == 28 and not permuted:  # a row per step, the plain reading
        np.testing.assert_allclose(x[5, 2], (images[2, 5] / 255.0 - 0.1307) / 0.3081)


def test_float32_and_unnormalised_pixels(tiny):
    folder, data = tiny
    task = make_task("smnist", folder=str(folder), T=28, normalize=False, verify=False)
    x, _, _ = next(task.eval_batches(3, 0, 3, split="test"))
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x, _expected(data["t10k"][0][:3], 28, normalize=False),
                               rtol=1e-6)


def test_permutation_is_fixed_by_its_seed_and_shared_by_all_images(tiny):
    folder, data = tiny
    a = _task(folder, permuted=True, permutation_seed=3)
    b = _task(folder, permuted=True, permutation_seed=3)
    c = _task(folder, permuted=True, permutation_seed=4)
    np.testing.assert_array_equal(a.permutation, b.permutation)
    np.testing.assert_array_equal(a.permutation, np.random.RandomState(3).permutation(784))
    assert not np.array_equal(a.permutation, c.permutation)
    assert sorted(a.permutation) == list(range(784))
    plain = _task(folder)
    for split in ("validation", "test"):
        xp_ = np.concatenate([x for x, _, _ in a.eval_batches(100, 0, 3, split=split)], axis=1)
        x0 = np.concatenate([x for x, _, _ in plain.eval_batches(100, 0, 3, split=split)], axis=1)
        np.testing.assert_array_equal(xp_[:, :, 0], x0[a.permutation, :, 0])  # same for all
    x, _, _ = a.batch(np.random.default_rng(0), 4)
    y, _, _ = plain.batch(np.random.default_rng(0), 4)
    np.testing.assert_array_equal(x[:, :, 0], y[a.permutation, :, 0])


def test_split_is_disjoint_deterministic_and_complete(tiny):
    folder, _ = tiny
    task = _task(folder)
    train, val = set(task.train_index), set(task.validation_index)
    assert len(val) == N_TRAIN // 6 and len(train) == N_TRAIN - N_TRAIN // 6
    assert not train & val and train | val == set(range(N_TRAIN))
    again = _task(folder)
    np.testing.assert_array_equal(task.validation_index, again.validation_index)
    np.testing.assert_array_equal(task.validation_index,
                                  np.random.RandomState(0).permutation(N_TRAIN)[-5:])
    other = _task(folder, split_seed=1)
    assert set(other.validation_index) != val
    # training batches only ever come from the training part, distinct within a batch
    images = task.train_images
    for step in range(20):
        x, targets, _ = task.batch(backend.host_rng(step), 6)
        rows = [int(np.flatnonzero((images == task_image).all(axis=1))[0])
                for task_image in np.rint((x[:, :, 0].T * 0.3081 + 0.1307) * 255).astype(np.uint8)]
        assert set(rows) <= train and len(set(rows)) == 6
        np.testing.assert_array_equal(targets, task.train_labels[rows])
    x1, t1, _ = task.batch(np.random.default_rng(5), 6)
    x2, t2, _ = task.batch(np.random.default_rng(5), 6)
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("split, size", [("validation", N_TRAIN // 6), ("test", N_TEST)])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
def test_eval_chunks_cover_the_split_once_within_the_chunk_size(tiny, split, size, batch_size):
    folder, data = tiny
    task = _task(folder, T=28)
    for n in (size, 3, 1000):
        chunks = list(task.eval_batches(n, 0, batch_size, split=split))
        assert all(x.shape[1] <= batch_size and x.shape[1] == len(t) for x, t, _ in chunks)
        x = np.concatenate([c[0] for c in chunks], axis=1)
        assert x.shape[1] == min(n, size)
        # every sequence is a distinct image of the split, in order
        flat = np.rint((x.transpose(1, 0, 2).reshape(len(x[0]), 784) * 0.3081 + 0.1307) * 255)
        if split == "test":
            np.testing.assert_array_equal(flat, data["t10k"][0][:min(n, size)].reshape(-1, 784))
        else:
            rows = task.validation_index[:min(n, size)]
            np.testing.assert_array_equal(flat, task.train_images[rows])
    with pytest.raises(ConfigError):
        list(task.eval_batches(3, 0, 2, split="train"))


def test_metric_and_baseline(tiny):
    folder, _ = tiny
    task = _task(folder, T=28)
    assert task.metric_name == "error" and task.better == "lower" and task.threshold is None
    assert task.baseline_value() == 0.9
    targets = np.array([0, 1, 2, 3])
    logits = np.zeros((4, 10))
    logits[[0, 1, 2, 3], [0, 1, 5, 5]] = 5.0
    m = task.metric(logits, targets)
    assert m["error"] == 0.5 and m["loss"] > 0
    assert task.metric(np.zeros((4, 10)), targets)["loss"] == pytest.approx(np.log(10))


def test_plain_files_and_the_folder_itself(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_NO_VERIFY, raising=False)
    data = _mnist(tmp_path / "root", gz=False)
    task = _task(tmp_path / "root" / "mnist", T=98)  # folder may name mnist/ directly
    x, t, _ = next(task.eval_batches(2, 0, 2, split="test"))
    np.testing.assert_allclose(x, _expected(data["t10k"][0][:2], 98), rtol=1e-12)


def test_environment_folder_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_FOLDER, raising=False)
    monkeypatch.delenv(ENV_NO_VERIFY, raising=False)
    with pytest.raises(ConfigError, match=ENV_FOLDER):
        make_task("smnist", T=28)
    _mnist(tmp_path)
    monkeypatch.setenv(ENV_FOLDER, str(tmp_path))
    with pytest.raises(ConfigError, match="checksum mismatch for .*train-images"):
        make_task("smnist", T=28)  # tiny files are not the real ones
    monkeypatch.setenv(ENV_NO_VERIFY, "1")
    assert make_task("smnist", T=28).split_size("test") == N_TEST
    os.remove(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte.gz or t10k-labels"):
        make_task("smnist", T=28)
    for bad in ({"T": 29}, {"T": True}):
        with pytest.raises(ConfigError, match="T must be one of 784, 28, 98"):
            make_task("smnist", **bad)


def test_mismatched_label_count_is_refused(tmp_path):
    _mnist(tmp_path)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros(N_TEST + 1, np.uint8))
    with pytest.raises(ConfigError, match="one per image"):
        _task(tmp_path)
    write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", np.full(N_TEST, 10, np.uint8))
    with pytest.raises(ConfigError, match="in 0..9"):
        _task(tmp_path)


def test_trains_through_run_on_tiny_files(tiny):
    folder, _ = tiny
    config = RunConfig.from_dict({
        "task": {"name": "smnist", "folder": str(folder), "T": 28, "verify": False},
        "model": {"name": "elman", "hidden": 8}, "optimizer": {"name": "adam"},
        "train": {"steps": 3, "batch": 4, "eval_size": 8, "test_size": 8, "eval_batch": 4}})
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished" and result.step == 3
    assert result.metric == "error" and result.baseline == 0.9 and result.threshold is None
    assert set(result.test) >= {"error", "loss"} and 0 <= result.test["error"] <= 1
    assert config.to_dict()["task"]["permutation_seed"] == 0  # recorded with the results


REAL = os.environ.get(ENV_FOLDER)


@pytest.mark.skipif(not REAL or not os.path.isdir(os.path.join(REAL or "", "mnist")),
                    reason="RNNLAB_DATA is not set to a folder holding mnist/")
def test_real_files():
    task = make_task("smnist", T=28, permuted=True)  # checksums verified on load
    assert task.train_images.shape == (60000, 784) and task.split_size("test") == 10000
    assert task.split_size("validation") == 10000 and len(task.train_index) == 50000
    np.testing.assert_array_equal(task.train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(task.test_labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(task.test_labels),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert abs(task.train_images.mean() / 255 - 0.13066) < 1e-4
    chunks = [len(t) for _, t, _ in task.eval_batches(10000, 0, 4096, split="test")]
    assert chunks == [4096, 4096, 1808]
