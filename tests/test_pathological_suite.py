"""``rnnlab pathological``: the suite as a sweep, and its Tables I and II from store rows."""
from __future__ import annotations

import pytest

from rnnlab.errors import ConfigError
from rnnlab.experiments.pathological import (OPTIMIZERS, PUBLISHED, failure_tables,
                                             format_tables, suite_spec)
from test_cli import run_main


def _row(problem, T, optimizer, status="done", reached=100):
    return {"status": status, "steps_to_threshold": reached if status == "done" else None,
            "config": {"task": {"name": problem, "T": T}, "optimizer": dict(optimizer)}}


def test_the_suite_is_problems_x_lengths_x_seeds_per_optimizer():
    spec = suite_spec(["addition", "xor"], [30, 50], seeds=range(3),
                      optimizers=["hf-structural", "psgd"], hidden=8, steps={"psgd": 77})
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 3 * 2
    for cell in cells:
        c = cell.config
        assert c.train["stop_when_solved"] and c.train["dtype"] == "float64"
        if c.optimizer["name"] == "hf":
            assert c.train["clip"] == 0.0 and c.train["batch"] == 1000
        else:
            assert c.train["steps"] == 77
    with pytest.raises(ConfigError, match="unknown suite optimizer 'lbfgs'"):
        suite_spec(optimizers=["lbfgs"])


def test_failure_counts_and_the_longest_length_without_a_failure():
    hf, psgd = OPTIMIZERS["hf-structural"], OPTIMIZERS["psgd"]
    rows = [_row("addition", 30, hf), _row("addition", 30, hf),
            _row("addition", 50, hf), _row("addition", 50, hf, reached=None),  # never solved
            _row("addition", 100, hf),                       # after a failure: not counted
            _row("xor", 30, psgd, "diverged"), _row("xor", 50, psgd),
            _row("xor", 30, psgd, "pending")]                # not finished: not counted
    table1, table2 = failure_tables(rows)
    assert table1["hf-structural"]["addition"] == {30: (0, 2), 50: (1, 2), 100: (0, 1)}
    assert table1["psgd"]["xor"] == {30: (1, 1), 50: (0, 1)}
    assert table2["addition"]["hf-structural"] == 30 and table2["xor"]["psgd"] == 0
    text = format_tables(rows)
    assert "| Addition | 0/2 | 1/2 | 0/1 | 0/5 0/5 0/5 2/5 |" in text
    # Table II: a column per optimizer run, then the paper's HF Tikhonov / structural / PSGD
    assert "| Addition | 30 | - | 100 / 100 / 100 |" in text
    assert "| XOR | - | < 30 | 30 / 50 / 50 |" in text


def test_published_tables_hold_the_papers_numbers():
    assert PUBLISHED["table1_psgd"]["xor"] == ("0/5", "0/5", "3/5", "1/1")
    assert PUBLISHED["table2"]["memory5"] == ("< 30", "200", "200")
    assert len(PUBLISHED["table2"]) == len(PUBLISHED["table1_psgd"]) == 8


def test_cli_dry_run_lists_the_suite(tmp_path, capsys):
    code, out, _ = run_main(capsys, ["pathological", "--problems", "addition", "--lengths", "30",
                                     "--seeds", "2", "--optimizers", "psgd", "sgd",
                                     "--out", str(tmp_path), "--dry-run"])
    assert code == 0 and out.strip().splitlines()[-1].startswith("4 cells")
    code, _, err = run_main(capsys, ["pathological", "--steps", "psgd", "--dry-run",
                                     "--out", str(tmp_path)])
    assert code == 2 and "OPT=N" in err
