"""Reliability: nothing a run measured is lost on a crash, every bad input is one clear line,
the last good checkpoint is really good.

One test (or parametrised group) per class of failure found by probing the engine as a hostile
but fair user would; each failed on the code before the fix.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from rnnlab.config import RunConfig
from rnnlab.errors import ConfigError, SinkError
from rnnlab.train import FileSink, MemorySink, checkpoint, run
from test_cli import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--T", "6", "--hidden", "4", "--batch", "4", "--eval-every", "3", "--eval-size", "8",
        "--no-progress"]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def records(folder) -> list:
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _spawn(argv, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "rnnlab", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(folder, n, proc, timeout=60):
    deadline = time.monotonic() + timeout
    path = os.path.join(folder, "metrics.jsonl")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.communicate()}")
        if os.path.exists(path) and sum(1 for _ in open(path)) >= n:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"fewer than {n} records in {timeout} s")


# ----------------------------------------------------------------------------- 1. history
def test_kill_9_loses_no_finished_record_and_resume_is_exact(tmp_path):
    """Records are on disk as they are made: after kill -9 the file holds every record up to the
    last completed one, and resuming ends bit-identical to a run never killed."""
    args = ["--T", "20", "--hidden", "16", "--batch", "8", "--eval-every", "50", "--eval-size",
            "16", "--checkpoint-every", "50", "--no-progress"]
    killed = str(tmp_path / "killed")
    proc = _spawn(["train", "--out", killed, "--steps", "100000"] + args, tmp_path)
    _wait_for_records(killed, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    kept = records(killed)
    assert len(kept) >= 5 and kept[0] == {**kept[0], "kind": "eval", "step": 0}
    state, meta = checkpoint.load(os.path.join(killed, "checkpoint.npz"))
    steps = meta["step"] + 100
    resumed = _spawn(["train", "--out", killed, "--resume", "--steps", str(steps)] + args,
                     tmp_path)
    assert resumed.wait(120) == 0, resumed.communicate()
    straight = str(tmp_path / "straight")
    proc = _spawn(["train", "--out", straight, "--steps", str(steps)] + args, tmp_path)
    assert proc.wait(120) == 0, proc.communicate()
    a, _ = checkpoint.load(os.path.join(killed, "checkpoint.npz"))
    b, _ = checkpoint.load(os.path.join(straight, "checkpoint.npz"))
    for k in b["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])
    # the resumed history is the straight one: the records before the resume point kept, those
    # after the checkpoint (written before the kill) replaced by the rerun's
    assert records(killed) == records(straight)


def test_sigterm_stops_like_ctrl_c_with_exit_143(tmp_path):
    out = str(tmp_path / "run")
    proc = _spawn(["train", "--out", out, "--steps", "100000", "--T", "20", "--hidden", "16",
                   "--eval-every", "20", "--eval-size", "16", "--no-progress"], tmp_path)
    _wait_for_records(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, (stdout, stderr)
    line = one_line(stderr)
    assert "stopped (SIGTERM)" in line and "last checkpoint" in line
    last = records(out)[-1]
    assert last["kind"] == "stopped"
    _, meta = checkpoint.load(os.path.join(out, "checkpoint.npz"))
    assert f"(step {meta['step']})" in line


# ----------------------------------------------------------------------------- 2. divergence
def test_truncated_divergence_is_reported_as_divergence(capsys, tmp_path):
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path / "r"), "--truncate", "5",
                                     "--lr", "1e6", "--clip", "0", "--T", "30", "--hidden", "8",
                                     "--batch", "4", "--steps", "50", "--eval-every", "5",
                                     "--no-progress"])
    assert code == 1
    line = one_line(err)
    assert "training diverged at step" in line and "last good checkpoint" in line
    assert records(tmp_path / "r")[-1]["kind"] == "diverged"


# ----------------------------------------------------------------------------- 3. one line
def test_unusable_run_folders_are_one_line(capsys, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, words in [(a_file, "is a file"), (a_file / "sub", "cannot use"),
                       ("/proc/rnnlab-no-such-folder", "cannot use")]:
        code, _, err = run_main(capsys, ["train", "--out", str(out), "--steps", "2"] + TINY)
        assert code == 2 and words in one_line(err), err


@pytest.mark.parametrize("flag,value", [("--hidden", "100000"), ("--T", str(10 ** 12)),
                                        ("--batch", str(10 ** 12))])
def test_sizes_whose_memory_cannot_exist_are_refused_before_allocating(capsys, tmp_path, flag,
                                                                       value):
    argv = ["train", "--out", str(tmp_path / "r"), "--steps", "2", "--no-progress", flag, value]
    start = time.perf_counter()
    code, _, err = run_main(capsys, argv)
    line = one_line(err)
    assert code == 2 and "this run needs about" in line and "GiB of memory is available" in line
    assert time.perf_counter() - start < 10  # refused from the estimate, nothing allocated
    assert not os.path.exists(tmp_path / "r")


def test_memory_estimate_scales_with_the_sizes():
    from rnnlab.models import ElmanRNN
    from rnnlab.tasks import make_task
    from rnnlab.train.memory import estimate_bytes
    small = RunConfig(task={"T": 100}, model={"hidden": 100}, train={"batch": 50})
    spec = ElmanRNN.spec_for(2, 1, "last", hidden=100)
    need = estimate_bytes(small, make_task("adding", T=100), spec)
    # 50 x 100 x (2 + 4 x 100) float32 for the batch: 8 MB; 5 x 10,401 weights: 0.2 MB
    assert need["training batch"] == 50 * (100 * (2 + 400) + 3) * 4
    assert need["parameters"] == 5 * spec_params(spec) * 4
    double = estimate_bytes(small.with_overrides({"train.batch": 100}),
                            make_task("adding", T=100), spec)
    assert double["training batch"] == 2 * need["training batch"]


def spec_params(spec):
    return sum(int(np.prod(s)) for s in spec.param_shapes().values())


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(capsys, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "r"
    assert run_main(capsys, ["train", "--out", str(out), "--steps", "3"] + TINY)[0] == 0
    before, _ = checkpoint.load(str(out / "checkpoint.npz"))

    def disk_full(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    code, _, err = run_main(capsys, ["train", "--out", str(out), "--resume", "--steps", "6"]
                            + TINY)
    line = one_line(err)
    assert code == 2 and "No space left on device" in line and "disk is full" in line
    assert not os.path.exists(out / "checkpoint.npz.tmp")
    monkeypatch.undo()
    after, meta = checkpoint.load(str(out / "checkpoint.npz"))
    assert meta["step"] == 3
    for k in before["params"]:
        np.testing.assert_array_equal(before["params"][k], after["params"][k])


@pytest.mark.parametrize("damage,ok", [
    (lambda p: p.write_text(p.read_text() + '{"kind": "eval", "st'), True),  # a cut last line
    (lambda p: p.write_bytes(b"\x00\xff\xfe binary\n" * 3), False),
    (lambda p: p.write_text(p.read_text() + '{"kind": "eval", "mse": 1}\n'), False),
    (lambda p: (p.unlink(), p.mkdir()), False),
])
def test_damaged_metrics_files_are_one_line(capsys, tmp_path, damage, ok):
    out = tmp_path / "r"
    assert run_main(capsys, ["train", "--out", str(out), "--steps", "3"] + TINY)[0] == 0
    damage(out / "metrics.jsonl")
    code, _, err = run_main(capsys, ["train", "--out", str(out), "--resume", "--steps", "6"]
                            + TINY)
    if ok:  # the partial record of an interrupted write is dropped, the rest kept
        assert code == 0, err
        assert [r["step"] for r in records(out) if r["kind"] == "eval"] == [0, 3, 6]
    else:
        assert code == 2 and "metrics file" in one_line(err)


def test_a_zip_level_corruption_is_one_line(capsys, tmp_path):
    out = tmp_path / "r"
    assert run_main(capsys, ["train", "--out", str(out), "--steps", "3"] + TINY)[0] == 0
    path = out / "checkpoint.npz"
    data = bytearray(path.read_bytes())
    # compression method of the first member (local header offset 8) set to an unknown one:
    # NumPy's zipfile raises NotImplementedError for it
    data[8:10] = (99).to_bytes(2, "little")
    central = data.find(b"PK\x01\x02")
    data[central + 10:central + 12] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(NotImplementedError):
        with zipfile.ZipFile(path) as z:
            z.read(z.namelist()[0])
    code, _, err = run_main(capsys, ["train", "--out", str(out), "--resume", "--steps", "6"]
                            + TINY)
    assert code == 2 and "corrupt or incomplete" in one_line(err)


# ----------------------------------------------------------------------------- 4. refused
def test_a_folder_in_use_is_refused(tmp_path):
    config = RunConfig(task={"T": 5}, model={"hidden": 4},
                       train={"steps": 2, "eval_every": 1, "eval_size": 4, "batch": 2})
    first = FileSink(str(tmp_path / "r"))
    first.start(config, resume=False)
    with pytest.raises(SinkError, match=r"is in use by another run \(pid \d+\)"):
        run(config, FileSink(str(tmp_path / "r"), overwrite=True), progress=False)
    first.finish(None)  # the lock goes with the first run
    assert run(config, FileSink(str(tmp_path / "r"), overwrite=True),
               progress=False).status == "finished"


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    out = str(tmp_path / "r")
    proc = _spawn(["train", "--out", out, "--steps", "100000", "--eval-every", "10",
                   "--eval-size", "8", "--no-progress"], tmp_path)
    try:
        _wait_for_records(out, 2, proc)
        second = _spawn(["train", "--out", out, "--overwrite", "--seed", "7", "--steps", "5",
                         "--no-progress"], tmp_path)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2 and "in use by another run" in one_line(err)
    finally:
        proc.kill()
        proc.wait(30)
    saved = json.loads(open(os.path.join(out, "config.json")).read())
    assert saved["train"]["seed"] == 0  # the second run wrote nothing


def test_rerunning_a_finished_run_needs_resume_or_overwrite(capsys, tmp_path):
    out = str(tmp_path / "r")
    assert run_main(capsys, ["train", "--out", out, "--steps", "3"] + TINY)[0] == 0
    code, _, err = run_main(capsys, ["train", "--out", out, "--steps", "3"] + TINY)
    assert code == 2 and "already holds a run" in one_line(err) and "--overwrite" in err
    code, _, err = run_main(capsys, ["train", "--out", out, "--steps", "3", "--seed", "1",
                                     "--overwrite"] + TINY)
    assert code == 0, err
    assert json.loads(open(os.path.join(out, "config.json")).read())["train"]["seed"] == 1
    code, _, err = run_main(capsys, ["train", "--out", out, "--resume", "--overwrite"] + TINY)
    assert code == 2 and "exclude each other" in one_line(err)


def test_resuming_with_fewer_steps_than_the_checkpoint_is_one_clear_line(capsys, tmp_path):
    out = str(tmp_path / "r")
    assert run_main(capsys, ["train", "--out", out, "--steps", "6"] + TINY)[0] == 0
    code, _, err = run_main(capsys, ["train", "--out", out, "--resume", "--steps", "3"])
    line = one_line(err)
    assert code == 2 and "is at step 6, beyond train.steps = 3" in line


def test_an_unknown_rnnlab_backend_variable_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNLAB_BACKEND", "bogus")
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path / "r"), "--steps", "2"]
                            + TINY)
    assert code == 2 and "RNNLAB_BACKEND must be one of numpy, cupy; got 'bogus'" in one_line(err)
    # an explicit --backend wins over the variable
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path / "r"), "--steps", "2",
                                     "--backend", "numpy"] + TINY)
    assert code == 0, err


def test_demo_refuses_an_empty_out(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, ["demo", "--out", "", "--steps", "2", "--no-progress"])
    assert code == 2 and "--out must be a folder path" in one_line(err)
    assert not os.path.exists(tmp_path / "demo")


def test_memory_sink_resume_without_a_checkpoint_is_refused():
    with pytest.raises(Exception, match="no checkpoint in this memory sink"):
        run(RunConfig(train={"steps": 1}), MemorySink(), resume=True, progress=False)


# ----------------------------------------------------------------------------- 7. reproducible
def test_the_run_folder_records_the_environment_and_still_reloads(capsys, tmp_path):
    out = tmp_path / "r"
    assert run_main(capsys, ["train", "--out", str(out), "--steps", "2"] + TINY)[0] == 0
    document = json.loads((out / "config.json").read_text())
    env = document["environment"]
    assert {"rnnlab", "numpy", "blas", "blas_threads", "cpu", "cpus"} <= set(env)
    config = RunConfig.from_file(str(out / "config.json"))
    assert config.to_dict() == {k: v for k, v in document.items() if k != "environment"}
    with pytest.raises(ConfigError, match="unknown config section 'environmentt'"):
        RunConfig.from_dict({"environmentt": {}})
