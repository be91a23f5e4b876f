"""The command line: one-line errors with exit code 2, training, resume, demo."""
import json
import os
import subprocess
import sys

import pytest

from rnnlab import backend
from rnnlab.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--T", "6", "--hidden", "4", "--batch", "4", "--steps", "6", "--eval-every", "3",
        "--eval-size", "8"]


def run_main(capsys, argv):
    """main(argv) -> (exit code, stdout, stderr), whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,names", [
    (["train", "--lr", "0"], ["--lr", "> 0"]),
    (["train", "--lr", "-0.1"], ["--lr", "> 0"]),
    (["train", "--lr", "abc"], ["--lr", "number"]),
    (["train", "--T", "0"], ["--T", ">= 2"]),
    (["train", "--hidden", "0"], ["--hidden", ">= 1"]),
    (["train", "--task", "no-such-task"], ["--task", "adding"]),
    (["train", "--model", "transformer"], ["--model", "elman", "lstm"]),
    (["train", "--optimizer", "rmsprop"], ["--optimizer", "sgd", "adam"]),
    (["train", "--init", "zeros"], ["--init", "identity", "orthogonal"]),
    (["train", "--activation", "sigmoid"], ["--activation", "relu", "tanh"]),
    (["train", "--backend", "jax"], ["--backend", "numpy", "cupy"]),
    (["train", "--T", "1"], ["T must be an integer >= 2"]),
    (["train", "--momentum", "1.5"], ["momentum must be in [0, 1)"]),
    (["bogus"], ["invalid choice", "train"]),
])
def test_bad_arguments_print_one_line_and_exit_2(capsys, tmp_path, argv, names):
    code, out, err = run_main(capsys, argv + ["--out", str(tmp_path)] if argv[0] == "train"
                              else argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in err, (name, err)


def test_cupy_without_gpu_is_one_line_naming_what_to_install(capsys, tmp_path):
    if backend.cupy_unavailable_reason() is None:
        pytest.skip("cupy is usable here; this checks the error when it is not")
    code, _, err = run_main(capsys, ["train", "--backend", "cupy", "--out", str(tmp_path)]
                            + TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install rnnlab[gpu]" in err or "CUDA" in err


def test_train_then_resume(capsys, tmp_path):
    out = str(tmp_path / "run")
    code, stdout, _ = run_main(capsys, ["train", "--out", out, "--no-progress"] + TINY)
    assert code == 0
    assert "held-out mse" in stdout and out in stdout
    assert os.path.exists(os.path.join(out, "learning_curve.png"))
    more = [a if a != "6" or TINY[i - 1] != "--steps" else "9" for i, a in enumerate(TINY)]
    code, stdout, _ = run_main(capsys, ["train", "--out", out, "--resume", "--no-progress"]
                               + more)
    assert code == 0 and "after 9 steps" in stdout


def test_resume_without_checkpoint_is_one_line(capsys, tmp_path):
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"]
                            + TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no checkpoint at" in err


def test_diverging_run_exits_1_with_reason(capsys, tmp_path):
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path), "--lr", "10", "--clip",
                                     "0", "--T", "30", "--hidden", "6", "--batch", "4",
                                     "--steps", "200", "--eval-every", "4", "--eval-size", "8"])
    assert code == 1
    assert "training diverged at step" in err and "last good checkpoint" in err


def test_module_entry_point_reports_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--lr", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--lr" in proc.stderr


def test_demo_writes_table_and_figure(capsys, tmp_path):
    code, stdout, _ = run_main(capsys, ["demo", "--out", str(tmp_path), "--steps", "20",
                                        "--no-progress"])
    assert code == 0
    assert "irnn-relu" in stdout and "tanh-orthogonal" in stdout
    assert "trivial baseline" in stdout
    assert os.path.getsize(tmp_path / "demo" / "adding_irnn_vs_tanh.png") > 0
    for label in ("irnn-relu", "tanh-orthogonal"):
        assert os.path.exists(tmp_path / "demo" / label / "metrics.jsonl")


RUN_TOML = """
[task]
name = "adding"
T = 6
[model]
hidden = 4
activation = "tanh"
init = "orthogonal"
[optimizer]
name = "sgd"
lr = 0.05
momentum = 0.5
[train]
batch = 4
steps = 4
eval_every = 2
eval_size = 8
"""


def test_config_file_with_overrides(capsys, tmp_path):
    (tmp_path / "run.toml").write_text(RUN_TOML)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, ["train", "--config", str(tmp_path / "run.toml"), "--lr",
                                     "0.02", "--set", "optimizer.nesterov=true", "--out",
                                     str(out), "--no-progress"])
    assert code == 0, err
    written = json.loads((out / "config.json").read_text())
    assert written["model"]["activation"] == "tanh" and written["model"]["hidden"] == 4
    assert written["optimizer"] == {"name": "sgd", "lr": 0.02, "momentum": 0.5,
                                    "nesterov": True}
    assert written["train"]["steps"] == 4
    # the written config reloads to the same run: training from it gives the same numbers
    again = tmp_path / "again"
    code, _, err = run_main(capsys, ["train", "--config", str(out / "config.json"), "--out",
                                     str(again), "--no-progress"])
    assert code == 0, err
    assert (again / "metrics.jsonl").read_text() == (out / "metrics.jsonl").read_text()


def test_changing_the_optimizer_on_the_command_line_drops_the_files_options(capsys, tmp_path):
    (tmp_path / "run.toml").write_text(RUN_TOML)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, ["train", "--config", str(tmp_path / "run.toml"),
                                     "--optimizer", "adam", "--out", str(out), "--no-progress"])
    assert code == 0, err
    written = json.loads((out / "config.json").read_text())
    assert written["optimizer"]["name"] == "adam" and "momentum" not in written["optimizer"]


@pytest.mark.parametrize("argv,message", [
    (["--optimizer", "adam", "--momentum", "0.9"],
     "optimizer 'adam' has no option 'momentum'; its options: lr, beta1, beta2, eps"),
    (["--set", "optimizer.beta7=1"], "optimizer has no option 'beta7'; its options: lr, "),
    (["--set", "nothing"], "--set needs SECTION.OPTION=VALUE"),
    (["--set", "trainer.steps=3"], "unknown section 'trainer'"),
    (["--set", "train.steps=abc"], "expected an integer; got 'abc'"),
    (["--config", "missing.toml"], "config file missing.toml does not exist"),
])
def test_bad_options_are_one_line(capsys, tmp_path, argv, message):
    code, _, err = run_main(capsys, ["train", "--out", str(tmp_path)] + argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err


@pytest.mark.parametrize("text,message", [
    ("[task]\nname = 'adding'\nlength = 3\n", "task 'adding' has no option 'length'; "
                                              "its options: T"),
    ("[trainer]\nsteps = 3\n", "unknown config section 'trainer'; allowed: task, model, "
                               "optimizer, train"),
    ("[task\n", "is not valid TOML"),
])
def test_bad_config_files_are_one_line(capsys, tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    code, _, err = run_main(capsys, ["train", "--config", str(tmp_path / "bad.toml"), "--out",
                                     str(tmp_path / "run")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err, err


def test_resume_reads_the_folders_config(capsys, tmp_path):
    out = str(tmp_path / "run")
    code, _, _ = run_main(capsys, ["train", "--out", out, "--optimizer", "adam", "--no-progress"]
                          + TINY)
    assert code == 0
    code, stdout, err = run_main(capsys, ["train", "--out", out, "--resume", "--steps", "8",
                                          "--no-progress"])
    assert code == 0, err
    assert "adam" in stdout and "after 8 steps" in stdout


def test_kappa_table_subcommand_writes_its_files(capsys, tmp_path):
    code, stdout, err = run_main(capsys, ["kappa-table", "--T", "3,5", "--H", "2,3", "--seeds",
                                          "0", "--out", str(tmp_path), "--no-progress"])
    assert code == 0, err
    assert "kappa2" in stdout
    for name in ("kappa_table.md", "kappa_table.csv", "kappa_table.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_every_option_name_belongs_to_one_section():
    """An option name that two sections use loses its flag (only --set reaches it): PSGD's
    seed once took --seed from the training settings, its init_scale --init-scale from the
    Elman model."""
    from rnnlab.cli import _declared_options
    shared = {name: sorted({section for section, _, _ in entries})
              for name, entries in _declared_options().items()
              if len({section for section, _, _ in entries}) > 1}
    assert shared == {}
