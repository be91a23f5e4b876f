"""Character-level PTB on tiny text files written into tmp_path."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlab.config import RunConfig
from rnnlab.datasets import ptb_char_text
from rnnlab.datasets.text import read_char_symbols
from rnnlab.errors import ConfigError
from rnnlab.tasks import TASKS, make_task
from rnnlab.train import run
from rnnlab.train.sinks import FileSink, MemorySink

WORDS = {"train": " the cat sat on the mat \n a dog ate <unk> \n" * 6,
         "valid": " the dog sat \n a cat on a mat \n", "test": " the cat ate \n"}


def _ptb(folder):
    sub = folder / "ptb"
    sub.mkdir(parents=True, exist_ok=True)
    for split, text in WORDS.items():
        (sub / f"ptb.char.{split}.txt").write_text(ptb_char_text(text), newline="")
    return folder


def _task(folder, **options):
    return make_task("ptb-char", folder=str(folder), verify=False, dtype="float64", **options)


def _symbols(split):
    return list(ptb_char_text(WORDS[split])[0::2])


def test_format_vocabulary_and_shapes(tmp_path):
    task = _task(_ptb(tmp_path), T=5)
    assert "ptb-char" in TASKS and task.carries_state and task.outputs == "every"
    assert read_char_symbols(tmp_path / "ptb" / "ptb.char.test.txt") == list("the_cat_ate\n")
    vocab = sorted(set(_symbols("train")))
    assert task.vocabulary.symbols == vocab and task.n_in == task.n_out == len(vocab)
    assert "\n" in vocab and "_" in vocab and " " not in vocab
    x, targets, mask = task.batch(np.random.default_rng(0), 3)
    assert x.shape == (5, 3, len(vocab)) and x.dtype == np.float64 and mask is None
    assert targets.shape == (5, 3) and targets.dtype == np.int64
    np.testing.assert_array_equal(x.sum(-1), 1)
    assert task.baseline_value() == pytest.approx(math.log2(len(vocab)))


def test_training_batches_continue_each_stream(tmp_path):
    task = _task(_ptb(tmp_path), T=4)
    ids = task.vocabulary.encode(_symbols("train"))
    B = 3
    length = (len(ids) - 1) // B
    windows = length // 4
    assert task.windows(B) == windows
    seen = [task.batch(np.random.default_rng(k), B, step=k) for k in range(windows + 1)]
    for k, (x, targets, _) in enumerate(seen[:windows]):
        for b in range(B):
            start = b * length + 4 * k
            np.testing.assert_array_equal(x[:, b].argmax(-1), ids[start:start + 4])
            np.testing.assert_array_equal(targets[:, b], ids[start + 1:start + 5])
    np.testing.assert_array_equal(seen[windows][0], seen[0][0])  # a new pass starts over


@pytest.mark.parametrize("split, words", [("validation", "valid"), ("test", "test")])
@pytest.mark.parametrize("n, batch_size, T", [(1000, 1000, 50), (2, 3, 4), (5, 4, 3), (1, 1, 7)])
def test_evaluation_covers_every_symbol_once_in_bounded_chunks(tmp_path, split, words, n,
                                                              batch_size, T):
    task = _task(_ptb(tmp_path), T=T)
    ids = task.vocabulary.encode(_symbols(words))
    pairs = []
    for x, targets, mask in task.eval_batches(n, 0, batch_size, split=split):
        assert x.shape[0] <= T and x.shape[1] <= min(n, batch_size)
        assert mask.shape == targets.shape == x.shape[:2]
        for t, b in zip(*np.nonzero(mask)):
            pairs.append((int(x[t, b].argmax()), int(targets[t, b])))
    assert sorted(pairs) == sorted(zip(ids[:-1].tolist(), ids[1:].tolist()))


def test_bpc_metric_and_uniform_baseline(tmp_path):
    task = _task(_ptb(tmp_path), T=5)
    x, targets, _ = task.batch(np.random.default_rng(0), 2)
    m = task.metric(np.zeros(x.shape), targets)
    assert m["bpc"] == pytest.approx(math.log2(task.n_out))
    assert m["loss"] == pytest.approx(math.log(task.n_out))


def test_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        _task(tmp_path)
    _ptb(tmp_path)
    (tmp_path / "ptb" / "ptb.char.test.txt").write_text("t h e  c a t", newline="")
    with pytest.raises(ConfigError, match="PTB character format"):
        _task(tmp_path)
    (tmp_path / "ptb" / "ptb.char.test.txt").write_text("t h e _ z \n ", newline="")
    with pytest.raises(ConfigError, match="symbol 'z'"):
        _task(tmp_path)
    _ptb(tmp_path)
    with pytest.raises(ConfigError, match="checksum mismatch"):
        make_task("ptb-char", folder=str(tmp_path))
    with pytest.raises(ConfigError, match="too short"):
        _task(tmp_path, T=200).batch(np.random.default_rng(0), 4)


def test_trains_through_run_carrying_state(tmp_path):
    config = RunConfig.from_dict({
        "task": {"name": "ptb-char", "folder": str(_ptb(tmp_path)), "T": 8, "verify": False},
        "model": {"name": "elman", "hidden": 8}, "optimizer": {"name": "adam"},
        "train": {"steps": 3, "batch": 4, "eval_size": 8, "test_size": 8, "eval_batch": 4}})
    result = run(config, MemorySink(), progress=False)
    assert result.status == "finished" and result.metric == "bpc"
    assert set(result.test) >= {"bpc", "loss", "accuracy"} and result.test["bpc"] > 0


def test_a_resumed_run_continues_the_stream_bit_identically(tmp_path):
    """The window read at a step and the carried state both survive a restart: stopping after
    5 steps and resuming (a new task object, as in a new process) ends where 9 straight steps
    do. Windows wrap around (the tiny text holds fewer than 9), so this also crosses a pass."""
    folder = str(_ptb(tmp_path))

    def config(steps):
        return RunConfig.from_dict({
            "task": {"name": "ptb-char", "folder": folder, "T": 8, "verify": False},
            "model": {"name": "elman", "hidden": 6}, "optimizer": {"name": "adam"},
            "train": {"steps": steps, "batch": 4, "eval_every": 5, "eval_size": 4,
                      "test_size": 0, "eval_batch": 4, "dtype": "float64"}})

    assert _task(tmp_path, T=8).windows(4) < 9
    straight = run(config(9), MemorySink(), progress=False)
    sink = FileSink(str(tmp_path / "run"))
    run(config(5), sink, progress=False)
    resumed = run(config(9), sink, resume=True, progress=False)
    assert resumed.status == "finished" and resumed.step == 9
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])


REAL = __import__("os").environ.get("RNNLAB_DATA")


@pytest.mark.skipif(not REAL or not __import__("os").path.isdir(f"{REAL}/ptb"),
                    reason="RNNLAB_DATA is not set to a folder holding ptb/")
def test_real_files():
    task = make_task("ptb-char", T=50)  # checksums verified on load
    assert task.n_in == 50
    assert {k: len(v) for k, v in task.ids.items()} == {
        "train": 5017482, "validation": 393042, "test": 442423}
    scored = sum(float(m.sum()) for _, _, m in task.eval_batches(1000, 0, 1000, "test"))
    assert scored == 442422
