# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 05 — Sweeps: many runs, one table
#
# Chapter 04 compared three update rules with one learning rate each, one seed, one run per
# rule. A claim like "Adam beats Path-SGD on the adding problem" needs more: every rule at its
# own best learning rate, several seeds, the rate chosen on held-out data and the result quoted
# on data the choice never saw. That is a **sweep**: a grid of runs described once, run anywhere,
# and read back as one table. This chapter:
#
# 1. writes a sweep as data (the same nesting as a TOML sweep file) and expands it into cells;
# 2. shows that a cell is known by its config: the same cell in two sweeps has the same id, and
#    an option that does not fit every optimizer on an axis is refused before anything runs;
# 3. runs it into a folder, runs it again (nothing to do) and runs a larger grid in the same
#    folder (only the new cells run);
# 4. reads the results with plain SQL (`sqlite3` from the standard library);
# 5. prints the report (the learning rate selected per optimizer on the validation median, its
#    test metric) and checks the selection independently; learning curves and a heat map;
# 6. runs the same cells from the command line on a process pool and checks that the numbers are
#    identical to the ones computed here.
#
# `RNNLAB_FAST=1` shrinks the sizes; the last cell prints `05_sweeps: all checks passed` only if
# every assert before it held. Numbers quoted in the text are from the full-size run.

# %%
from _setup import FAST, OUT, draw, finish, save_figure  # first: Agg in scripts, repo on the path

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

import rnnlab
from rnnlab import backend
from rnnlab.experiments.driver import run_sweep
from rnnlab.experiments.report import format_report
from rnnlab.experiments.store import Store
from rnnlab.experiments.sweep import SweepSpec, axes_label, cell_ids, read_spec

FIGURES = ("05_selected_curves.png", "05_validation_grid.png")
print(f"rnnlab {rnnlab.__version__}, backend {backend.backend_name()}, fast mode {FAST}")

# %% [markdown]
# ## 1. A sweep is data
#
# A sweep file holds a `[base]` run config (the nesting of chapter 03's `RunConfig`: task, model,
# optimizer, train), the `[axes]` to vary and the `seeds`. At full size this chapter's sweep is
#
# ```toml
# seeds = [0, 1, 2]
#
# [base]
# task = {name = "adding", T = 30}
# model = {name = "elman", hidden = 48, activation = "relu", init = "identity", init_scale = 0.01}
#
# [base.train]
# steps = 1500
# batch = 50
# clip = 1.0
# eval_every = 75
# eval_size = 500
# test_size = 500
#
# [axes]
# optimizer = ["sgd", {name = "path-sgd", lr_units = "sgd"}, "gsgd", "adam"]
# "optimizer.lr" = [1e-2, 1e-3]
# ```
#
# (`[base.train]` is the table `train` inside `[base]`, the same as an inline
# `train = {steps = 1500, ...}` line in `[base]`; section 6 writes it that way.) An axis key is a
# dotted path into the config (`"optimizer.lr"`, `"task.T"`, `"model.hidden"`), or a section
# alone to vary a component; a component's entry is its name, or a table with its name and
# options of its own: `{name = "path-sgd", lr_units = "sgd"}` makes Path-SGD's first step as
# long as SGD's at the same rate, so both share one learning-rate grid (in its own path units
# the grid would be five orders of magnitude off: chapter 04). In Python the same nesting is a
# dict, and `SweepSpec.from_dict` reads it; `read_spec(path)` reads the TOML file.

# %%
T, HIDDEN, STEPS = (10, 8, 60) if FAST else (30, 48, 1500)
BATCH, EVAL_EVERY, EVAL_SIZE = (20, 10, 200) if FAST else (50, 75, 500)
SEEDS = [0, 1] if FAST else [0, 1, 2]
OPTIMIZERS = ["sgd", {"name": "path-sgd", "lr_units": "sgd"}, "gsgd", "adam"]
LRS = [1e-2, 1e-3]
BASE = {"task": {"name": "adding", "T": T},
        "model": {"name": "elman", "hidden": HIDDEN, "activation": "relu", "init": "identity",
                  "init_scale": 0.01},
        "train": {"steps": STEPS, "batch": BATCH, "clip": 1.0, "eval_every": EVAL_EVERY,
                  "eval_size": EVAL_SIZE, "test_size": EVAL_SIZE}}
sweep = {"seeds": SEEDS, "base": BASE,
         "axes": {"optimizer": OPTIMIZERS, "optimizer.lr": LRS}}

spec = SweepSpec.from_dict(sweep, source="tutorial-05")
cells = spec.cells()
print(f"{len(cells)} cells = {len(OPTIMIZERS)} optimizers x {len(LRS)} learning rates x "
      f"{len(SEEDS)} seeds, in {len({c.group_id for c in cells})} groups of seeds")
for cell in cells[:len(SEEDS) + 1] + [cells[len(LRS) * len(SEEDS)]]:
    print(f"  {cell.cell_id}  group {cell.group_id}  seed {cell.seed}  {cell.label}")
assert len(cells) == len(OPTIMIZERS) * len(LRS) * len(SEEDS)
assert len({c.group_id for c in cells}) == len(OPTIMIZERS) * len(LRS)
assert [c.seed for c in cells[:len(SEEDS)]] == SEEDS            # seeds vary fastest
assert cells[0].label == "sgd lr=0.01" and cells[len(SEEDS)].label == "sgd lr=0.001"

path_sgd = cells[len(LRS) * len(SEEDS)]
print("a Path-SGD cell's optimizer section, defaults filled in:", path_sgd.config.optimizer)
assert path_sgd.config.optimizer["lr_units"] == "sgd" and path_sgd.config.optimizer["lr"] == 0.01

# %% [markdown]
# The grid is the product of the axes, with the seeds innermost; each cell is a complete,
# checked `RunConfig` (every option its owner declares, defaults filled in). Cells that differ
# only in `train.seed` share a **group id**: a group is one setting, and the report's statistics
# (median, quartiles, best seed) are taken over it.
#
# A file can also hold several `[[grid]]` tables, each with its own `axes` (and optionally
# `seeds`), whose cells are pooled; a cell two grids both produce appears once.
#
# ## 2. Cells are known by their config
#
# A cell's id is a hash of its complete config, seed and steps included. Nothing else goes in:
# not the sweep it came from, not its position, not where it runs. So the same run described by
# a different sweep, here a one-cell sweep with SGD in the base config instead of on an axis, is
# the same cell:

# %%
lone = SweepSpec.from_dict({"base": {**BASE, "optimizer": {"name": "sgd", "lr": 0.01}},
                            "seeds": [SEEDS[0]]}).cells()
assert len(lone) == 1
twin = next(c for c in cells if c.label == "sgd lr=0.01" and c.seed == SEEDS[0])
print(f"one-cell sweep: {lone[0].cell_id} ({lone[0].label}); the grid's "
      f"{twin.label!r}, seed {twin.seed}: {twin.cell_id}")
assert (lone[0].cell_id, lone[0].group_id) == (twin.cell_id, twin.group_id)
assert cell_ids(twin.config) == (twin.cell_id, twin.group_id)   # the id is a function of config

longer = twin.config.with_overrides({"train.steps": STEPS + 1})
print(f"with one more step: cell id {cell_ids(longer)[0]}; run id {longer.run_id()} "
      f"(unchanged: {twin.config.run_id()})")
assert cell_ids(longer)[0] != twin.cell_id          # a different result, so a different cell
assert longer.run_id() == twin.config.run_id()      # a run folder can be resumed to more steps

# %% [markdown]
# Why this works: a cell is a **pure function of its config**. Every random number a run draws
# (initial weights, training batches, the validation set, the test set) comes from its own
# stream derived from `train.seed`; the run keeps its records in memory and hands them back; it
# reads no global state and shares nothing with other cells. Its outcome therefore depends on
# the config alone, not on the order cells run in or the process that runs them (given the same
# software: the store records the driver's versions, BLAS and CPU in its `meta` table, as
# `driver_environment`). That is what lets a sweep skip finished cells, run them on any
# executor, and pool cells from different sweep files in one folder. The array backend is part
# of the config (`train.backend`): a cell run with `RNNLAB_BACKEND=cupy` is a different cell.
# And since the id covers every option with its default, an rnnlab that adds an option gives
# every cell a new id: a sweep folder is reused by the rnnlab that wrote it, not across such an
# upgrade.
#
# Because every cell is checked while the spec is built, a mistake in the grid is found before
# any cell runs. An option on an axis must apply to every component the grid pairs it with;
# momentum beside Adam is refused, never silently dropped:

# %%
try:
    SweepSpec.from_dict({"base": BASE, "seeds": SEEDS,
                         "axes": {"optimizer": ["sgd", "adam"],
                                  "optimizer.momentum": [0.0, 0.9]}})
except rnnlab.ConfigError as error:
    message = str(error)
    print("ConfigError:", message)
else:
    raise AssertionError("momentum on an axis beside adam was accepted")
assert "'adam' has no option 'momentum'" in message
assert "its options: lr, beta1, beta2, eps" in message

# %% [markdown]
# Scoped to the component that has it, in its entry, it is fine:

# %%
scoped = SweepSpec.from_dict({"base": BASE, "seeds": SEEDS,
                              "axes": {"optimizer": [{"name": "sgd", "momentum": 0.9}, "adam"],
                                       "optimizer.lr": LRS}}).cells()
for cell in scoped[::len(SEEDS)]:
    print(f"  {cell.label:<24} {cell.config.optimizer}")
assert len(scoped) == 2 * len(LRS) * len(SEEDS)
assert all(c.config.optimizer["momentum"] == 0.9 for c in scoped
           if c.config.optimizer["name"] == "sgd")
assert all("momentum" not in c.config.optimizer for c in scoped
           if c.config.optimizer["name"] == "adam")

# %% [markdown]
# ## 3. Running a sweep
#
# `run_sweep(spec, folder)` adds the cells the folder does not hold yet, hands every unfinished
# one to an executor and records each outcome as it arrives, one SQLite transaction per cell.
# Here the executor is `"serial"`: the cells run one after another in this process, so the
# chapter runs anywhere (a script, a notebook, a test). The default, `"local"`, is a process
# pool with one worker per core; `"dask"` sends the cells to a Dask cluster (a `LocalCluster`,
# or any scheduler address: SLURM or PBS through dask-jobqueue, Kubernetes). All three call the
# same function on the same config, so they give identical numbers: section 6 checks that for
# the local pool.
#
# Every cell runs with its BLAS limited to one thread (`blas_threads=1`, the default). With one
# worker per core, a multi-threaded BLAS in each worker would start cores x cores threads that
# fight over the cores; and a BLAS can split a matrix product differently for a different
# thread count, which changes the rounding. With the same limit everywhere, the place a cell
# runs does not change its numbers.
#
# The sweep folders go beside the figure folder, not in it: the report writes PNG files of its
# own, and `OUT` holds only the figures this chapter declares. With the default `OUT` that is
# `runs/tutorials-sweeps/`.

# %%
SWEEPS = OUT.parent / f"{OUT.name}-sweeps"
FOLDER = SWEEPS / "05_sweep"
shutil.rmtree(FOLDER, ignore_errors=True)     # a rerun of the chapter starts from an empty folder

first = run_sweep(spec, str(FOLDER), executor="serial", progress=False, report=False)
print(first.summary())
assert sorted(first.ran) == sorted(c.cell_id for c in cells)
assert first.skipped == 0 and first.complete and sum(first.counts.values()) == len(cells)
_, _, best_first, _ = format_report(str(FOLDER))   # what the first grid selects, for later
picked_first = {g["cells"][0]["optimizer"]: g["axes"]["optimizer.lr"]
                for g in best_first.values()}

# %% [markdown]
# The same command again finds every cell finished and runs nothing (a sweep stopped by Ctrl-C,
# a kill or a lost machine continues the same way: recorded cells are kept, the rest run):

# %%
again = run_sweep(spec, str(FOLDER), executor="serial", progress=False, report=False)
print(again.summary())
assert again.ran == [] and again.skipped == len(cells) and again.complete

# %% [markdown]
# A larger sweep in the same folder runs only what is new. Adding a learning rate of 0.1 to the
# axis adds one cell per optimizer and seed; the cells of the first grid are found by their ids:

# %%
LRS_WIDE = [1e-1] + LRS
wider_sweep = {**sweep, "axes": {"optimizer": OPTIMIZERS, "optimizer.lr": LRS_WIDE}}
wider = SweepSpec.from_dict(wider_sweep, source="tutorial-05-wider")
new = {c.cell_id for c in wider.cells()} - {c.cell_id for c in cells}
third = run_sweep(wider, str(FOLDER), executor="serial", progress=False)
print(third.summary())
assert len(new) == len(OPTIMIZERS) * len(SEEDS)
assert set(third.ran) == new and third.skipped == len(cells) and third.complete
print("the sweep folder holds:", sorted(os.listdir(FOLDER)))

# %% [markdown]
# Where results go: everything is in the folder. `sweep.sqlite` holds every cell and every
# metrics record; when the driver ends (also when it is stopped by Ctrl-C) it writes the report
# of section 5: `report.md`, `report.csv`, and figures, `curves-*.png` (the validation curves of
# the selected groups) and `cost-*.png` (the same runs against their cost in forward-pass
# equivalents). The first two calls above passed `report=False` to skip that; the last wrote
# it. `.lock` keeps a second driver out of the folder while one runs. Nothing else is left
# there: the cells keep their records in memory (`MemorySink`) and hand them to the driver,
# which alone writes the database.
#
# ## 4. The store is plain SQL
#
# `sweep.sqlite` is an ordinary SQLite file with three tables: `cells` (one row per cell: its
# config and axes as JSON, optimizer, lr, seed, status, the validation metric at the end
# `final_metric`, its best `best_metric`, `test_metric`, wall time, host and pid), `history`
# (every metrics record of every cell) and `meta` (the last sweep file run here, the rnnlab
# version). The standard library reads it; so do the `sqlite3` shell and
# `pandas.read_sql("select * from cells", sqlite3.connect(path))`, also while a sweep writes.

# %%
with contextlib.closing(sqlite3.connect(FOLDER / "sweep.sqlite")) as db:
    rows = db.execute("SELECT optimizer, lr, seed, status, final_metric, test_metric, pid "
                      "FROM cells ORDER BY position, seed").fetchall()
    by_status = db.execute("SELECT status, count(*) FROM cells GROUP BY status").fetchall()
    by_kind = db.execute("SELECT kind, count(*) FROM history GROUP BY kind").fetchall()
    cpu_seconds = db.execute("SELECT sum(seconds) FROM cells").fetchone()[0]


def number(value):
    return "-" if value is None else f"{value:.4g}"


print(f"{'optimizer':<10} {'lr':>6}  {'status':<9} {'final (valid)':>13} {'test':>9}"
      f"   (seed {SEEDS[0]})")
for optimizer, lr, seed, status, final, test, _ in sorted(rows, key=lambda r: (r[0], -r[1])):
    if seed == SEEDS[0]:
        print(f"{optimizer:<10} {lr:>6g}  {status:<9} {number(final):>13} {number(test):>9}")
print("cells by status:", dict(by_status), "| history records by kind:", dict(by_kind))
print(f"{len(rows)} cells, {cpu_seconds:.1f} s of training in all")
assert len(rows) == len(OPTIMIZERS) * len(LRS_WIDE) * len(SEEDS)
assert sum(n for _, n in by_status) == len(rows) and "pending" not in dict(by_status)
assert {pid for *_, pid in rows} == {os.getpid()}   # the serial executor ran them all here

# %% [markdown]
# ## 5. The report: selected on the validation split, test reported
#
# Each run sees three independent data sets, drawn from streams of its seed: training batches,
# a **validation** set evaluated every `eval_every` steps, and a **test** set scored once, when
# the run finishes. The report picks, for every optimizer, the learning rate whose group has the
# best median validation metric at the end of training (a diverged or failed cell counts as
# the worst value), and quotes that group's **test** metric. The test set takes no part in the
# choice, so the quoted number is not flattered by it: picking the rate on the test set and
# quoting the test set would report the luckiest of the grid's values, not what the method does
# on new data. (The Path-SGD paper grid-searched its learning rates, over 1e-2, 1e-3 and 1e-4 on
# the adding problem, without saying on which split it chose; for the IRNN it ran ten
# initialisations and kept the best, which the report's `test best` column mirrors.)
#
# `format_report(folder)` returns the markdown (the same text `rnnlab report DIR` prints and
# writes as `report.md`), the groups, the selected group per setting and the axes selected over:

# %%
text, groups, best, select = format_report(str(FOLDER))
print(text)
assert select == ("optimizer.lr",)          # the default: select the learning rate
assert len(groups) == len(OPTIMIZERS) * len(LRS_WIDE) and len(best) == len(OPTIMIZERS)

# %% [markdown]
# The selection again, from the SQL rows alone: the median over seeds of the final validation
# metric per (optimizer, lr), infinity for a cell that did not finish well, and the smallest
# median per optimizer (mse: lower is better). It must pick what the report picked, and the
# report's test median must be the median of the selected group's test metrics.

# %%
valid, test = {}, {}
for optimizer, lr, seed, status, final, test_metric, _ in rows:
    ok = status == "done" and final is not None
    valid.setdefault((optimizer, lr), []).append(final if ok else np.inf)
    if status == "done" and test_metric is not None:
        test.setdefault((optimizer, lr), []).append(test_metric)
median = {key: float(np.median(v)) for key, v in valid.items()}
picked = {}
for (optimizer, lr), m in median.items():
    if optimizer not in picked or m < median[optimizer, picked[optimizer]]:
        picked[optimizer] = lr

report_picks = {g["cells"][0]["optimizer"]: g["axes"]["optimizer.lr"] for g in best.values()}
print("selected from the SQL rows:", picked)
print("selected by the report:    ", report_picks)
print("selected before lr=0.1 was added:", picked_first)
assert picked == report_picks
for g in best.values():
    key = (g["cells"][0]["optimizer"], g["axes"]["optimizer.lr"])
    assert g["valid_median"] == median[key]
    if key in test:
        assert np.isclose(g["test_median"], np.median(test[key]), rtol=1e-12, atol=0)
    else:
        assert g["test_median"] is None

# %% [markdown]
# At full size (T = 30, 48 units, 1500 steps, three seeds) only Adam solves the task (test
# mse < 0.01) in this budget: at lr = 0.01 its median test mse is 0.0022, all three seeds
# solved (the validation mse first fell below 0.01 at step 750 in the median seed), while SGD,
# Path-SGD and G-SGD end near the trivial baseline of 1/6 (predicting the mean sum, 1) at their
# selected rates. Widening the grid changed one choice: Path-SGD moved from 0.01 to the new 0.1
# (validation median 0.158 against 0.179). Adam at 0.1 diverged in all three seeds within its
# first two steps (an infinite gradient norm) and counts as the worst value; note that the
# `final_metric` column of a diverged cell holds its last good evaluation (here the one at step
# 0, mse 1.13), which is why the selection must look at `status` and not only at the number.
# G-SGD at 0.001 ends far above where it started (median validation mse 40, against 1.13 at
# step 0): its first step sets every skeleton weight to +1 (`skeleton_init`, chapter 04), a
# large change of this IRNN, whose other weights start within ±0.01; the first evaluation
# after it (step 75) reads about 2.4e4 at lr = 0.001 and 250 at lr = 0.01, and the small rate
# has not climbed back down in 1500 steps. These are short runs of a small network: the point
# is the mechanics, not a verdict on the methods (chapter 04 and `rnnlab compare` train longer).
#
# The learning curves of the selected groups come from the `history` table
# (`Store.history(cell_id)`: every record of a cell, in order); the median and quartiles across
# seeds at each evaluation step. The last point of each median curve is the group's validation
# median, the number the selection read.

# %%
curves = {}
with Store(str(FOLDER), readonly=True) as store:
    for key, g in best.items():
        finished = [c for c in g["cells"] if c["status"] == "done"]
        if not finished:
            continue
        evals = [[(r["step"], r[g["metric"]]) for r in store.history(c["cell_id"])
                  if r["kind"] == "eval"] for c in finished]
        steps = [s for s, _ in evals[0]]
        assert all([s for s, _ in e] == steps for e in evals)   # finished runs: same steps
        table = np.array([[v for _, v in e] for e in evals])
        assert table.shape == (len(finished), STEPS // EVAL_EVERY + 1)   # step 0 included
        curve = (np.array(steps), np.median(table, axis=0), np.percentile(table, 25, axis=0),
                 np.percentile(table, 75, axis=0))
        if len(finished) == g["n"]:
            assert curve[1][-1] == g["valid_median"]    # the last evaluation is final_metric
        curves[f"{key} at lr={g['axes']['optimizer.lr']:g}"] = curve
assert curves
some = next(iter(best.values()))
save_figure(draw.sweep_curves(curves, some["baseline"], some["threshold"],
                              f"adding problem, T={T}, IRNN with {HIDDEN} units: each optimizer "
                              f"at its selected lr, {len(SEEDS)} seeds", some["metric"]),
            "05_selected_curves.png")

# %% [markdown]
# And the whole grid at once: the median validation metric of every group, the selected rate
# of each optimizer outlined (the same numbers as the `valid median` column above).

# %%
names = [o if isinstance(o, str) else o["name"] for o in OPTIMIZERS]
grid = np.array([[median[name, lr] for lr in LRS_WIDE] for name in names])
assert grid.shape == (len(OPTIMIZERS), len(LRS_WIDE))
save_figure(draw.sweep_heatmap(grid, [axes_label({"optimizer": o}) for o in OPTIMIZERS],
                               LRS_WIDE, [LRS_WIDE.index(picked[n]) for n in names],
                               f"median validation {some['metric']} after {STEPS} steps "
                               f"(inf: the median seed diverged)", some["metric"]),
            "05_validation_grid.png")

# %% [markdown]
# ## 6. The same sweep from the command line, on a process pool
#
# The command line runs sweep files: `rnnlab sweep SPEC --out DIR` (SPEC a TOML file or a
# preset's name; `--executor local|dask|serial`, `--workers N`, `--set KEY=VALUE` to change the
# file's data, `--dry-run` to list the cells and which are finished), `rnnlab report DIR` to
# print and rewrite a folder's report at any time (also while its sweep runs), and
# `rnnlab compare`, the preset `compare.toml`: the Path-SGD paper's IRNN set-up for the adding
# problem (100 ReLU units, identity recurrence, other weights from U[-0.01, 0.01], its grid of
# learning rates 1e-2, 1e-3 and 1e-4), here with T = 50 and 3000 steps, under SGD, Path-SGD,
# G-SGD and Adam, three seeds. Reading a preset runs nothing:

# %%
compare = read_spec("compare")
axes = compare.grids[0].axes
print("rnnlab compare:", axes, f"seeds {list(compare.grids[0].seeds)}: "
      f"{len(compare.cells())} cells")
assert len(compare.cells()) == (np.prod([len(v) for v in axes.values()])
                                * len(compare.grids[0].seeds)) == 36
assert len(read_spec("compare", {"seeds": [0], "base.train.steps": 500}).cells()) == 12

# %% [markdown]
# Now this chapter's wider sweep as a TOML file, run by `rnnlab sweep` in a subprocess with the
# local executor (two worker processes) and only the first seed (`--set 'seeds=[0]'`). Its
# cells are a subset of the ones computed above in this process, and must come back with the
# same ids and bit-identical numbers. (The local pool starts its workers with "spawn", which
# re-imports the main script in every worker: a script of your own that calls
# `run_sweep(..., executor="local")` needs the usual `if __name__ == "__main__":` guard. The
# command line has it, which is why this chapter goes through it.)

# %%
toml_text = f"""seeds = {SEEDS}

[base]
task = {{name = "adding", T = {T}}}
model = {{name = "elman", hidden = {HIDDEN}, activation = "relu", init = "identity", \
init_scale = 0.01}}
train = {{steps = {STEPS}, batch = {BATCH}, clip = 1.0, eval_every = {EVAL_EVERY}, \
eval_size = {EVAL_SIZE}, test_size = {EVAL_SIZE}}}

[axes]
optimizer = ["sgd", {{name = "path-sgd", lr_units = "sgd"}}, "gsgd", "adam"]
"optimizer.lr" = {LRS_WIDE}
"""
assert tomllib.loads(toml_text) == wider_sweep      # the file and the dict are the same sweep
spec_file = SWEEPS / "05_sweep.toml"
spec_file.write_text(toml_text, encoding="utf-8")

LOCAL = SWEEPS / "05_sweep_local"
shutil.rmtree(LOCAL, ignore_errors=True)
repo = str(Path(rnnlab.__file__).resolve().parent.parent)   # for a checkout without pip install
env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get(
    "PYTHONPATH")) if p))
command = [sys.executable, "-m", "rnnlab", "sweep", str(spec_file), "--out", str(LOCAL),
           "--executor", "local", "--workers", "2", "--set", f"seeds=[{SEEDS[0]}]",
           "--no-progress"]
print("$ rnnlab", " ".join(command[3:]))
done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
assert done.returncode == 0, done.stderr[-3000:]
lines = done.stdout.strip().splitlines()
print(lines[0])
print(lines[-1])

# %%
with Store(str(LOCAL), readonly=True) as pool, Store(str(FOLDER), readonly=True) as here:
    pool_rows = pool.cells()
    here_rows = {r["cell_id"]: r for r in here.cells()}
    for r in pool_rows:
        mine = here_rows[r["cell_id"]]          # the same cell, found by its id
        assert (r["status"], r["step"], r["final_metric"], r["test_metric"]) == \
               (mine["status"], mine["step"], mine["final_metric"], mine["test_metric"])
        assert pool.history(r["cell_id"]) == here.history(r["cell_id"])   # every record
pids = {r["pid"] for r in pool_rows}
print(f"{len(pool_rows)} cells from worker processes {sorted(pids)} (this process is "
      f"{os.getpid()}): statuses, final, test metrics and every history record identical")
assert len(pool_rows) == len(OPTIMIZERS) * len(LRS_WIDE)
assert os.getpid() not in pids and 1 <= len(pids) <= 2

# %% [markdown]
# ## Summary
#
# - A sweep is data: a `[base]` run config, `[axes]` (dotted option paths, or a component with
#   entries that carry their own options), `seeds`, optionally several `[[grid]]` tables; the
#   cells are the product, each a complete, checked config, all checked before anything runs.
# - A cell's id is a hash of its complete config: the same run in any sweep is the same cell, a
#   folder accumulates cells, and rerunning or widening a sweep runs only what is missing.
#   That is sound because a cell is a pure function of its config (seeded streams, no shared
#   state), with BLAS held to one thread per worker so that no executor changes the numbers.
# - Results go to one folder: `sweep.sqlite` (plain SQLite: `cells`, `history`, `meta`) and the
#   report (`report.md`, `report.csv`, PNG curves), rewritten by `rnnlab report DIR`.
# - The report selects a learning rate per optimizer on the median **validation** metric and
#   quotes its **test** metric; diverged and failed cells count as the worst value.
#
# ## Exercises
#
# 1. Add `"task.T" = [T, 2 * T]` to the axes. How many cells run in the same folder, and what
#    does the report select per (optimizer, T)? Where do the curves go?
# 2. Give SGD momentum in a `[[grid]]` of its own beside the plain grid, and let the report
#    select over momentum too (`[report] select = ["optimizer.lr", "optimizer.momentum"]`).
# 3. Stop `rnnlab sweep` with Ctrl-C half way, run `rnnlab report DIR` (the pending cells are
#    counted), then the same command again: which cells run?
# 4. Run section 6 with `--executor dask` (`pip install 'rnnlab[dask]'`) and check the numbers
#    against the serial ones the same way.

# %%
finish("05_sweeps", FIGURES)
