"""The sweep layer: sweep files, executors, the SQLite store, stopping and resuming, reports.

Cells here are tiny (T = 6, 4 hidden units, 20 steps: well under a second each), so the tests
exercise the layer, not training.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from rnnlab.errors import ConfigError
from rnnlab.experiments.driver import run_sweep
from rnnlab.experiments.report import format_report, group_rows, select_best, write_report
from rnnlab.experiments.store import Store
from rnnlab.experiments.sweep import SweepSpec, cell_ids, read_spec
from test_cli import run_main
from test_reliability import ROOT, one_line

TINY_BASE = {"task": {"name": "adding", "T": 6},
             "model": {"name": "elman", "hidden": 4},
             "train": {"steps": 20, "batch": 4, "eval_every": 10, "eval_size": 16,
                       "test_size": 16}}


def tiny(axes=None, seeds=(0, 1), **extra) -> SweepSpec:
    data = {"base": json.loads(json.dumps(TINY_BASE)), "seeds": list(seeds), **extra}
    if axes is not None:
        data["axes"] = axes
    return SweepSpec.from_dict(data)


def write_toml(path, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return str(path)


TINY_TOML = """
seeds = [0, 1]
[base]
task = {name = "adding", T = 6}
model = {name = "elman", hidden = 4}
train = {steps = 20, batch = 4, eval_every = 10, eval_size = 16, test_size = 16}
[axes]
optimizer = ["sgd", "adam"]
"optimizer.lr" = [1e-2, 1e-3]
"""


def outcomes(folder) -> dict:
    """cell_id -> (status, step, final, test, history) as the store holds them."""
    with Store(folder, readonly=True) as store:
        return {row["cell_id"]: (row["status"], row["step"], row["final"], row["test"],
                                 store.history(row["cell_id"])) for row in store.cells()}


# ----------------------------------------------------------------------------- sweep files
def test_grid_is_the_product_of_axes_and_seeds():
    spec = tiny({"optimizer": ["sgd", "adam"], "optimizer.lr": [1e-2, 1e-3, 1e-4],
                 "task.T": [5, 6]}, seeds=(0, 1, 2))
    cells = spec.cells()
    assert len(cells) == 2 * 3 * 2 * 3
    assert {(c.config.optimizer["name"], c.config.optimizer["lr"], c.config.task["T"],
             c.seed) for c in cells} == {(o, lr, T, s) for o in ("sgd", "adam")
                                         for lr in (1e-2, 1e-3, 1e-4) for T in (5, 6)
                                         for s in (0, 1, 2)}
    assert len({c.cell_id for c in cells}) == len(cells)
    # the seeds of one setting share a group; the group differs from every other setting's
    assert len({c.group_id for c in cells}) == 2 * 3 * 2


def test_cell_id_derives_from_the_complete_config():
    """The same cell in two sweeps has the same id; any change of config (a default spelled
    out changes nothing) gives another."""
    a = {c.config.optimizer["lr"]: c.cell_id for c in tiny({"optimizer.lr": [1e-2, 1e-3]},
                                                           seeds=(0,)).cells()}
    spelled = json.loads(json.dumps(TINY_BASE))
    spelled["optimizer"] = {"name": "sgd", "momentum": 0.0}  # sgd's defaults, written out
    b = SweepSpec.from_dict({"base": spelled, "seeds": [0], "axes": {"optimizer.lr": [1e-3]}})
    assert b.cells()[0].cell_id == a[1e-3]
    longer = tiny({"optimizer.lr": [1e-3]}, seeds=(0,))
    config = longer.cells()[0].config.with_overrides({"train.steps": 21})
    assert cell_ids(config)[0] != a[1e-3]


def test_component_entries_scope_their_options():
    spec = tiny({"optimizer": [{"name": "sgd", "momentum": 0.9}, "adam"],
                 "optimizer.lr": [1e-2]}, seeds=(0,))
    by_name = {c.config.optimizer["name"]: c.config.optimizer for c in spec.cells()}
    assert by_name["sgd"]["momentum"] == 0.9 and "momentum" not in by_name["adam"]


def test_an_option_that_does_not_apply_to_every_component_is_refused():
    with pytest.raises(ConfigError) as info:
        tiny({"optimizer": ["sgd", "adam"], "optimizer.momentum": [0.9]})
    message = str(info.value)
    for part in ("cell adam momentum=0.9", "optimizer 'adam' has no option 'momentum'",
                 "beta1", "[[grid]]"):
        assert part in message, message


def test_several_grids_pool_their_cells_with_their_own_seeds():
    spec = SweepSpec.from_dict({
        "base": TINY_BASE, "seeds": [0],
        "grid": [{"axes": {"optimizer": ["sgd"], "optimizer.momentum": [0.0, 0.9]},
                  "seeds": [0, 1, 2]},
                 {"axes": {"optimizer": ["adam"]}},
                 {"axes": {"optimizer": ["sgd"], "optimizer.momentum": [0.0]}}]})  # a repeat
    cells = spec.cells()
    names = [(c.config.optimizer["name"], c.config.optimizer.get("momentum"), c.seed)
             for c in cells]
    assert sorted(names, key=str) == sorted(
        [("sgd", m, s) for m in (0.0, 0.9) for s in (0, 1, 2)] + [("adam", None, 0)], key=str)


@pytest.mark.parametrize("data,words", [
    ({"axes": {"optimizer.lr": 0.1}}, ["axis 'optimizer.lr'", "non-empty list"]),
    ({"axes": {"train.seed": [1, 2]}}, ["seeds", "not an axis"]),
    ({"axes": {"optimiser.lr": [1]}}, ["unknown section 'optimiser'", "task, model"]),
    ({"axes": {"optimizer.lr": [-1.0]}}, ["cell lr=-1", "lr", "> 0"]),
    ({"axes": {"optimizer": ["sgdd"]}}, ["sgdd", "path-sgd"]),
    ({"seeds": [0, 0]}, ["seed twice"]),
    ({"seeds": []}, ["seeds", "non-empty"]),
    ({"sedes": [0]}, ["unknown key 'sedes'", "seeds"]),
    ({"axes": {}, "grid": [{"axes": {}}]}, ["either [axes]", "not both"]),
    ({"grid": [{"axes": {}, "seed": [1]}]}, ["grid 1", "unknown key 'seed'"]),
])
def test_bad_sweep_files_name_what_is_wrong(data, words):
    with pytest.raises(ConfigError) as info:
        SweepSpec.from_dict({"base": TINY_BASE, **data})
    for word in words:
        assert word in str(info.value), str(info.value)


def test_cli_refuses_a_sweep_with_an_unknown_option_before_any_cell_starts(tmp_path, capsys):
    spec = write_toml(tmp_path / "bad.toml", TINY_TOML.replace('"optimizer.lr"',
                                                               '"optimizer.momentun"'))
    code, out, err = run_main(capsys, ["sweep", spec, "--out", str(tmp_path / "out"),
                                       "--executor", "serial"])
    assert code == 2 and "has no option 'momentun'" in one_line(err)
    assert not os.path.exists(tmp_path / "out")  # nothing started, nothing written


def test_presets_are_valid_sweeps():
    for name in ("compare", "path-sgd-table2", "path-sgd-table2-full"):
        cells = read_spec(name).cells()
        assert cells and all(c.config.model["activation"] == "relu" for c in cells)


# ----------------------------------------------------------------------------- executors
def test_local_pool_and_dask_cluster_give_the_results_of_a_serial_run(tmp_path):
    """A cell is a pure function of its config: on 2 pool workers, on a Dask LocalCluster of
    2 worker processes and in this process, every record of every cell is identical."""
    pytest.importorskip("dask.distributed")
    spec = tiny({"optimizer": ["sgd", "adam"], "optimizer.lr": [1e-2, 1e-3]})
    results = {}
    for executor in ("serial", "local", "dask"):
        run = run_sweep(spec, str(tmp_path / executor), executor=executor, workers=2,
                        progress=False, report=False, echo=lambda *_: None)
        assert run.complete and len(run.ran) == 8 and run.counts == {"done": 8}
        results[executor] = outcomes(tmp_path / executor)
    assert results["local"] == results["serial"]
    assert results["dask"] == results["serial"]


def test_cells_record_their_host_wall_time_and_metrics(tmp_path):
    spec = tiny({"optimizer.lr": [1e-2]}, seeds=(0,))
    run_sweep(spec, str(tmp_path), executor="serial", progress=False, report=False,
              echo=lambda *_: None)
    with Store(str(tmp_path), readonly=True) as store:
        (row,) = store.cells()
        history = store.history(row["cell_id"])
    evals = [r for r in history if r["kind"] == "eval"]
    assert row["status"] == "done" and row["step"] == 20 and row["host"] and row["seconds"] > 0
    assert row["final_metric"] == evals[-1]["mse"] == row["final"]["mse"]
    assert row["best_metric"] == min(r["mse"] for r in evals)
    (test,) = [r for r in history if r["kind"] == "test"]
    assert row["test_metric"] == test["mse"] != row["final_metric"]  # its own split
    assert json.loads(row["config"] if isinstance(row["config"], str) else
                      json.dumps(row["config"]))["train"]["seed"] == 0


def test_dask_without_dask_installed_is_one_clear_line(monkeypatch, tmp_path, capsys):
    for name in ("dask", "dask.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as when not installed
    spec = write_toml(tmp_path / "s.toml", TINY_TOML)
    code, _, err = run_main(capsys, ["sweep", spec, "--out", str(tmp_path / "o"),
                                     "--executor", "dask"])
    assert code == 2 and "pip install 'rnnlab[dask]'" in one_line(err)


def test_a_scheduler_address_needs_the_dask_executor(tmp_path, capsys):
    spec = write_toml(tmp_path / "s.toml", TINY_TOML)
    code, _, err = run_main(capsys, ["sweep", spec, "--scheduler", "tcp://127.0.0.1:1",
                                     "--out", str(tmp_path / "o")])
    assert code == 2 and "--executor dask" in one_line(err)


# ----------------------------------------------------------------------------- failures
def test_failing_and_diverging_cells_are_recorded_while_the_others_finish(tmp_path):
    """Path-SGD on a tanh network is refused when its run builds (a failed cell with the
    reason); lr = 1e6 without clipping diverges (step and reason); the rest are done."""
    spec = SweepSpec.from_dict({
        "base": dict(TINY_BASE, train=dict(TINY_BASE["train"], clip=0.0)), "seeds": [0],
        "grid": [{"axes": {"optimizer": ["path-sgd"], "model.activation": ["relu", "tanh"]}},
                 {"axes": {"optimizer": ["sgd"], "optimizer.lr": [1e-2, 1e6]}}]})
    run = run_sweep(spec, str(tmp_path), executor="local", workers=2, progress=False,
                    report=False, echo=lambda *_: None)
    assert run.counts == {"done": 2, "failed": 1, "diverged": 1} and run.complete
    with Store(str(tmp_path), readonly=True) as store:
        rows = {row["label"]: row for row in store.cells()}
    failed = rows["path-sgd activation=tanh"]
    assert failed["status"] == "failed" and "ConfigError" in failed["error"]
    assert "tanh" in failed["reason"] and failed["test_metric"] is None
    diverged = rows["sgd lr=1e+06"]
    assert diverged["status"] == "diverged" and 1 <= diverged["step"] < 20
    assert "not finite" in diverged["reason"] or "is nan" in diverged["reason"] \
        or "is inf" in diverged["reason"]
    assert rows["sgd lr=0.01"]["status"] == rows["path-sgd activation=relu"]["status"] == "done"


def test_failed_cells_rerun_only_when_asked(tmp_path):
    spec = tiny({"optimizer": ["path-sgd"], "model.activation": ["tanh"]}, seeds=(0,))
    quiet = {"progress": False, "report": False, "echo": lambda *_: None}
    assert run_sweep(spec, str(tmp_path), executor="serial", **quiet).counts == {"failed": 1}
    assert run_sweep(spec, str(tmp_path), executor="serial", **quiet).ran == []
    assert len(run_sweep(spec, str(tmp_path), executor="serial", retry_failed=True,
                         **quiet).ran) == 1


# ----------------------------------------------------------------------------- resuming
def _spawn_sweep(spec, out, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    # Ctrl-C as from a terminal: a shell that starts the tests in the background (`cmd &`,
    # nohup) has them ignore SIGINT, which a child would inherit and keep
    return subprocess.Popen([sys.executable, "-m", "rnnlab", "sweep", spec, "--out", out,
                             "--workers", "1", "--no-progress"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_done(out, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.communicate()}")
        if os.path.exists(os.path.join(out, "sweep.sqlite")):
            try:
                with sqlite3.connect(os.path.join(out, "sweep.sqlite")) as db:
                    done = db.execute("select count(*) from cells where status='done'"
                                      ).fetchone()[0]
            except sqlite3.OperationalError:  # the driver is still creating the tables
                done = 0
            if done >= n:
                return
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"fewer than {n} cells done in {timeout} s")


# cells of about a second each, so that the driver is caught with some finished, some not
SLOW_TOML = TINY_TOML.replace("steps = 20", "steps = 1500").replace(
    'optimizer = ["sgd", "adam"]', 'optimizer = ["sgd", "adam", "gsgd"]')


@pytest.mark.parametrize("how", ["crash", "Ctrl-C", "SIGTERM"])
def test_a_stopped_driver_resumes_without_losing_or_repeating_a_cell(tmp_path, how):
    """A crash (SIGKILL to the driver and its workers), Ctrl-C (SIGINT to them all, as a
    terminal sends it) or SIGTERM to the driver; then the same command again."""
    spec = write_toml(tmp_path / "s.toml", SLOW_TOML)
    out = str(tmp_path / "out")
    proc = _spawn_sweep(spec, out, tmp_path)
    _wait_for_done(out, 2, proc)
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGKILL if how == "crash" else signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if how != "crash":
        assert proc.returncode == (143 if how == "SIGTERM" else 130), err
        assert "rerun the same command to continue" in one_line(err)
    before = {k: v for k, v in outcomes(out).items() if v[0] == "done"}
    assert 2 <= len(before) < 12, "the sweep was not caught in the middle"

    again = _spawn_sweep(spec, out, tmp_path)
    stdout, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"{len(before)} already finished, {12 - len(before)} to run" in stdout
    after = outcomes(out)
    assert all(v[0] == "done" for v in after.values()) and len(after) == 12
    assert {k: after[k] for k in before} == before  # nothing finished was lost or redone
    with sqlite3.connect(os.path.join(out, "sweep.sqlite")) as db:
        per_cell = db.execute("select count(distinct cell_id), count(*) from history "
                              "where kind='test'").fetchone()
    assert per_cell == (12, 12)  # one test record per cell: no cell recorded twice


def test_a_larger_sweep_in_the_same_folder_runs_only_the_new_cells(tmp_path):
    quiet = {"executor": "serial", "progress": False, "report": False, "echo": lambda *_: None}
    first = run_sweep(tiny({"optimizer.lr": [1e-2]}), str(tmp_path), **quiet)
    wider = tiny({"optimizer.lr": [1e-3, 1e-2]})
    second = run_sweep(wider, str(tmp_path), **quiet)
    assert len(first.ran) == 2 and second.skipped == 2 and len(second.ran) == 2
    assert not set(first.ran) & set(second.ran)
    with Store(str(tmp_path), readonly=True) as store:  # listed in the order of the new spec
        assert [row["cell_id"] for row in store.cells()] == [c.cell_id for c in wider.cells()]


def test_one_driver_per_sweep_folder(tmp_path):
    from rnnlab.errors import SinkError
    from rnnlab.train.sinks import lock_folder
    lock = lock_folder(str(tmp_path), "sweep folder")
    try:
        with pytest.raises(SinkError, match="in use by another sweep"):
            run_sweep(tiny({"optimizer.lr": [1e-2]}), str(tmp_path), executor="serial",
                      progress=False, echo=lambda *_: None)
    finally:
        lock.close()


# ----------------------------------------------------------------------------- reports
def _fake(store, spec, values):
    """Record made-up outcomes: values maps (lr, seed) -> (status, valid, test)."""
    cells = spec.cells()
    store.add_cells(cells)
    for cell in cells:
        status, valid, test = values[(cell.config.optimizer["lr"], cell.seed)]
        history = [{"kind": "eval", "step": 10, "mse": 0.5},
                   {"kind": "eval", "step": 20, "mse": valid}]
        store.record(cell.cell_id, {
            "status": status, "step": 20, "metric": "mse", "threshold": 0.01,
            "baseline": 1 / 6, "better": "lower", "history": history, "seconds": 1.0,
            "final": {"mse": valid}, "test": {} if test is None else {"mse": test}})


def test_report_statistics_and_selection_on_known_values(tmp_path):
    """Medians, IQR, solved/diverged counts and the choice of lr on the validation median (a
    diverged seed counts as the worst value), against numbers worked out by hand."""
    spec = tiny({"optimizer.lr": [1e-2, 1e-3]}, seeds=(0, 1, 2))
    values = {(1e-2, 0): ("done", 0.001, 0.002), (1e-2, 1): ("diverged", 0.0005, None),
              (1e-2, 2): ("diverged", 0.0004, None),
              (1e-3, 0): ("done", 0.004, 0.003), (1e-3, 1): ("done", 0.02, 0.03),
              (1e-3, 2): ("done", 0.008, 0.005)}
    with Store(str(tmp_path)) as store:
        _fake(store, spec, values)
        groups = {g["axes"]["optimizer.lr"]: g for g in group_rows(store.cells())}
    fast, slow = groups[1e-2], groups[1e-3]
    assert (fast["diverged"], fast["solved"], fast["test_median"]) == (2, 1, 0.002)
    assert fast["valid_median"] == float("inf")  # two of three diverged
    assert slow["test_median"] == 0.005 and slow["solved"] == 2 and slow["diverged"] == 0
    assert slow["test_q25"] == pytest.approx(0.004) and slow["test_q75"] == pytest.approx(0.0175)
    assert slow["test_best"] == 0.003 and slow["steps_to_threshold"] == 20
    best = select_best(list(groups.values()), ("optimizer.lr",))
    assert [g["axes"]["optimizer.lr"] for g in best.values()] == [1e-3]
    text, *_ = format_report(str(tmp_path))
    assert "| base -> lr=0.001 | 3 | 0.005 |" in text and "| lr=0.001 * |" in text


def test_report_files_and_a_report_while_cells_are_pending(tmp_path, capsys):
    spec = tiny({"optimizer.lr": [1e-2, 1e-3]}, seeds=(0, 1))
    with Store(str(tmp_path)) as store:
        store.add_cells(spec.cells())
    code, out, _ = run_main(capsys, ["report", str(tmp_path)])  # nothing finished yet
    assert code == 0 and "4 pending" in out
    run_sweep(spec, str(tmp_path), executor="serial", progress=False, echo=lambda *_: None)
    for name in ("report.md", "report.csv", "curves-base.png", "cost-base.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "report.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("group_id,optimizer.lr,n,test_median") and len(lines) == 3
    assert sum(line.endswith(",1") for line in lines[1:]) == 1  # one lr selected


def test_cells_recording_gradient_flow_get_a_flow_figure_per_group(tmp_path):
    spec = SweepSpec.from_dict({
        "base": {**json.loads(json.dumps(TINY_BASE)),
                 "train": {**TINY_BASE["train"], "flow_every": 10}},
        "seeds": [0], "axes": {"model": [{"name": "elman", "hidden": 4},
                                         {"name": "nru", "hidden": 4}]}})
    run_sweep(spec, str(tmp_path), executor="serial", progress=False, echo=lambda *_: None)
    flows = sorted(p.name for p in tmp_path.glob("flow-*.png"))
    assert flows == ["flow-elman_hidden=4.png", "flow-nru_hidden=4.png"]
    with Store(str(tmp_path), readonly=True) as store:
        cell = next(c for c in store.cells() if c["config"]["model"]["name"] == "nru")
        records = [r for r in store.history(cell["cell_id"]) if r["kind"] == "flow"]
    assert [r["step"] for r in records] == [0, 10] and "memory_change" in records[0]


def test_report_of_a_folder_without_a_sweep_is_one_line(tmp_path, capsys):
    code, _, err = run_main(capsys, ["report", str(tmp_path)])
    assert code == 2 and "holds no sweep" in one_line(err)


def test_the_store_reads_with_plain_sqlite_and_pandas(tmp_path):
    run_sweep(tiny({"optimizer.lr": [1e-2]}), str(tmp_path), executor="serial",
              progress=False, report=False, echo=lambda *_: None)
    with sqlite3.connect(tmp_path / "sweep.sqlite") as db:
        rows = db.execute("select optimizer, lr, status, seed from cells order by seed").fetchall()
    assert rows == [("sgd", 0.01, "done", 0), ("sgd", 0.01, "done", 1)]
    if shutil.which("sqlite3"):  # the sqlite3 shell, where the machine has it
        shell = subprocess.run(["sqlite3", str(tmp_path / "sweep.sqlite"),
                                "select count(*) from cells where status = 'done'"],
                               capture_output=True, text=True, check=True)
        assert shell.stdout.strip() == "2"
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_sql("select * from history where kind = 'eval'",
                            sqlite3.connect(tmp_path / "sweep.sqlite"))
    assert len(frame) == 2 * 3 and set(frame["step"]) == {0, 10, 20}


# ----------------------------------------------------------------------------- the CLI
def test_sweep_cli_set_dry_run_and_run(tmp_path, capsys):
    spec = write_toml(tmp_path / "s.toml", TINY_TOML)
    out = str(tmp_path / "out")
    code, text, _ = run_main(capsys, ["sweep", spec, "--out", out, "--dry-run",
                                      "--set", "seeds=[0]", "--set", "base.train.steps=5"])
    assert code == 0 and "4 cells; 0 finished" in text and not os.path.exists(out)
    code, text, _ = run_main(capsys, ["sweep", spec, "--out", out, "--executor", "serial",
                                      "--set", "seeds=[0]", "--set", "base.train.steps=5",
                                      "--no-progress"])
    assert code == 0 and "(4 done, 0 diverged, 0 failed, 0 pending)" in text
    assert "## Selected" in text  # the report is printed at the end
    with Store(out, readonly=True) as store:
        assert {row["step"] for row in store.cells()} == {5}
    code, text, _ = run_main(capsys, ["sweep", spec, "--out", out, "--dry-run",
                                      "--set", "seeds=[0]", "--set", "base.train.steps=5"])
    assert "4 cells; 4 finished" in text and text.count(" done ") == 4


def test_compare_is_the_preset_with_its_flags(tmp_path, capsys):
    code, text, _ = run_main(capsys, ["compare", "--dry-run", "--T", "12", "--steps", "7",
                                      "--seeds", "2", "--out", str(tmp_path)])
    lines = text.strip().splitlines()
    assert code == 0 and lines[-1].startswith("24 cells")  # 4 optimizers x 3 lrs x 2 seeds
    spec = read_spec("compare", {"base.task.T": 12, "base.train.steps": 7, "seeds": [0, 1]})
    assert [line.split()[0] for line in lines[:-1]] == [c.cell_id for c in spec.cells()]
    names = {c.config.optimizer["name"] for c in spec.cells()}
    assert names == {"sgd", "path-sgd", "gsgd", "adam"}
    assert {c.config.optimizer["lr"] for c in spec.cells()} == {1e-2, 1e-3, 1e-4}


@pytest.mark.parametrize("argv,words", [
    (["sweep", "no-such-sweep"], ["no-such-sweep does not exist", "compare"]),
    (["sweep", "compare", "--set", "seeds"], ["KEY=VALUE"]),
    (["sweep", "compare", "--set", "base.train.steps=-1"], ["steps", ">= 0"]),
    (["sweep", "compare", "--workers", "0"], ["--workers"]),
])
def test_sweep_cli_bad_input_is_one_line(tmp_path, capsys, argv, words):
    code, _, err = run_main(capsys, argv + ["--out", str(tmp_path / "o"), "--dry-run"])
    assert code == 2
    for word in words:
        assert word in one_line(err), err


def test_ctrl_c_in_a_serial_sweep_stops_the_sweep_not_just_the_cell(tmp_path, monkeypatch):
    """Under the serial executor Ctrl-C reaches the run itself, which stops with status
    "stopped": the driver must stop there (recording nothing for that cell), not go on."""
    run_module = sys.modules["rnnlab.train.run"]
    calls = {"n": 0}
    real = run_module.train_step

    def interrupted_second_cell(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:  # in the second cell (20 steps each)
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(run_module, "train_step", interrupted_second_cell)
    result = run_sweep(tiny({"optimizer.lr": [1e-2, 1e-3]}), str(tmp_path), executor="serial",
                       progress=False, report=False, echo=lambda *_: None)
    assert result.stopped == "interrupted" and len(result.ran) == 1
    assert result.counts == {"done": 1, "pending": 3}


def test_a_cell_runs_with_every_blas_limited_scipys_included(tmp_path):
    """threadpoolctl limits the libraries loaded when it is called: scipy's wheels bring an
    OpenBLAS of their own (PSGD's triangular solves use it), which must be limited too. In a
    fresh interpreter, as a worker starts (here scipy is loaded by other tests already)."""
    config = tiny({"optimizer.lr": [1e-2]}, seeds=(0,)).cells()[0].config.to_dict()
    code = f"""
import json, sys
import rnnlab.train
from threadpoolctl import threadpool_info
from rnnlab.experiments.executors import run_cell
assert "scipy" not in sys.modules
seen = {{}}
def spy(config, sink, progress=None):
    seen["pools"] = [(p["filepath"], p["num_threads"]) for p in threadpool_info()
                     if p["user_api"] == "blas"]
    raise RuntimeError("stop here")
rnnlab.train.run = spy
outcome = run_cell({{"config": {config!r}, "blas_threads": 1}})
print(json.dumps([outcome["error"], seen["pools"]]))
"""
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, check=True)
    error, pools = json.loads(done.stdout.strip().splitlines()[-1])
    assert "stop here" in error
    assert pools and all(n == 1 for _, n in pools), pools
    assert any("scipy" in path for path, _ in pools), pools
