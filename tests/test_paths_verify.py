"""The claims table behind ``rnnlab verify``: it passes on the library, FAILs on planted bugs,
accepts checks registered from other modules, and its command line builds without importing
the checks."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab import ConfigError
from rnnlab.paths import checks, plants, verify_cli

ROOT = Path(__file__).resolve().parents[1]

SMALL = dict(layers=(1, 2), widths=(2,), T=3, seeds=(0,), instances=1)


@pytest.fixture(scope="module")
def clean_results():
    return checks.run_checks(**SMALL, include_reduction=False)


def test_every_claim_passes(clean_results):
    failed = [(r.claim, r.error_text, r.note) for r in clean_results if not r.passed]
    assert not failed, checks.format_table(clean_results)
    assert len(clean_results) >= 15
    assert all(r.instances > 0 for r in clean_results)
    table = checks.format_table(clean_results)
    assert "PASS" in table and "FAIL" not in table and "exact" in table
    assert f"{len(clean_results)} claims checked, {len(clean_results)} passed, 0 failed" in table


def test_claims_cite_sources_and_errors_are_within_tolerance(clean_results):
    for r in clean_results:
        assert r.source and ("path-sgd" in r.source or "gsgd" in r.source)
        if r.error is not None and r.tolerance is not None and "NOT" not in r.claim:
            assert r.error <= r.tolerance


@pytest.mark.parametrize("plant,claim_text", [
    ("kappa_factor", "kappa (kappa^(1) + corrected"),
    ("kappa2_paper", "kappa (kappa^(1) + corrected"),
    ("activation_mask", "output = sum over paths"),
    ("rescale_transpose", "leaves the function unchanged"),
])
def test_planted_bug_makes_the_table_fail(plant, claim_text):
    results = checks.run_checks(**SMALL, include_reduction=False, plant=plant)
    failing = [r for r in results if not r.passed]
    assert any(claim_text in r.claim for r in failing), checks.format_table(results)
    assert "FAIL" in checks.format_table(results)


def test_main_verify_exit_codes(capsys):
    argv = ["--layers", "1", "--widths", "2", "--instances", "1", "--no-reduction"]
    assert verify_cli.main_verify(argv + ["--only", "gamma^2"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert verify_cli.main_verify(argv + ["--only", "kappa", "--plant", "kappa_factor"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_registered_checks_run_and_crashes_become_fail_rows():
    saved = list(checks.CHECKS)
    try:
        @checks.register_check("a test claim that always holds", "test", group="extra")
        def _ok(ctx):
            tally = checks.Tally(tolerance=1e-12)
            for case in ctx.cases():
                tally.add(0.0)
            return tally

        @checks.register_check("a test claim whose check crashes", "test", group="extra")
        def _boom(ctx):
            raise RuntimeError("deliberate")

        results = checks.run_checks(**SMALL, include_reduction=False, only="a test claim")
        assert [r.passed for r in results] == [True, False]
        assert results[0].instances == 8 and results[0].error == 0.0
        assert "RuntimeError: deliberate" in results[1].note
    finally:
        checks.CHECKS[:] = saved


def test_reduction_group_is_skipped_on_request():
    saved = list(checks.CHECKS)
    try:
        checks.register_check("a reduction claim", "gsgd", group="reduction_checks")(
            lambda ctx: checks.Tally())
        names = [r.claim for r in checks.run_checks(**SMALL, include_reduction=False,
                                                    only="a reduction claim")]
        assert names == []
    finally:
        checks.CHECKS[:] = saved


def test_enumeration_claims_shorten_the_unroll_to_fit_the_limit():
    results = checks.run_checks(layers=(1,), widths=(2,), T=5, instances=1, max_paths=60,
                                include_reduction=False, only="gamma^2: explicit path sum")
    assert len(results) == 1 and results[0].passed
    assert "T lowered on 4 instances" in results[0].note


def test_bad_arguments():
    with pytest.raises(ConfigError, match="plant must be one of"):
        checks.run_checks(plant="nonsense")
    with pytest.raises(ConfigError, match="T must be"):
        checks.run_checks(T=0)


@pytest.mark.slow
def test_full_default_table_passes():
    # this part's claims only; the reduction-graph claims have their own tests
    results = checks.run_checks(layers=(1, 2, 3), widths=(1, 2, 3), T=4, seeds=(0, 1),
                                instances=2, include_reduction=False)
    assert all(r.passed for r in results), checks.format_table(results)


def test_the_plants_are_the_cli_choices_and_each_one_is_used():
    # every planted bug has a description, is offered by --plant, and is tested to FAIL a row
    # (the four above, the three reduction plants in test_paths_basis.py)
    parser = verify_cli.add_verify_arguments(argparse.ArgumentParser())
    choices = next(a.choices for a in parser._actions if a.dest == "plant")
    assert sorted(choices) == sorted(plants.PLANTS) and len(plants.PLANTS) == 7
    assert all(plants.PLANTS.values())
    assert checks.PLANTS is plants.PLANTS


HEAVY = ["rnnlab.paths.checks", "rnnlab.paths.claims", "rnnlab.paths.reduction_checks",
         "rnnlab.paths.norms", "rnnlab.paths.unrolled", "rnnlab.paths.reduction",
         "rnnlab.paths.basis", "rnnlab.paths.exact", "rnnlab.paths.rescale", "matplotlib"]


@pytest.mark.parametrize("module", ["rnnlab.paths.verify_cli"])
def test_building_the_cli_imports_no_checks_path_modules_or_matplotlib(module):
    # a fresh interpreter: this test process has long imported everything
    code = (f"import argparse, json, sys, importlib\n"
            f"m = importlib.import_module({module!r})\n"
            f"m.add_verify_arguments(argparse.ArgumentParser())\n"
            f"print(json.dumps(sorted(sys.modules)))\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert module in loaded                       # the probe did import what it tests
    heavy = sorted(m for m in loaded if m in HEAVY or m.startswith("matplotlib."))
    assert not heavy, f"building the verify CLI imported {heavy}"


def test_python_m_rnnlab_verify_runs_and_fails_on_a_plant():
    # the real command line, through rnnlab.cli: exit 0 on the library, 1 with a planted bug
    argv = [sys.executable, "-m", "rnnlab", "verify", "--layers", "1", "--widths", "2",
            "--instances", "1", "--no-reduction", "--only", "kappa (kappa^(1) + corrected"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    ok = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert ok.returncode == 0 and "1 claims checked, 1 passed, 0 failed" in ok.stdout, ok.stderr
    bad = subprocess.run(argv + ["--plant", "kappa_factor"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 1 and "FAIL" in bad.stdout, bad.stderr


def _cli(argv):
    """rnnlab.cli.main's exit code, whether it returns it or argparse exits with it."""
    from rnnlab import cli
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("flag,value", [
    ("--layers", ""), ("--layers", "0"), ("--layers", "1,x"),
    ("--widths", "0"), ("--widths", "-1"), ("--widths", " , "),
    ("--seeds", ""), ("--seeds", "-1"),
    ("--T", "0"), ("--T", "two"), ("--instances", "0"), ("--max-paths", "0"),
])
def test_bad_list_and_count_flags_are_one_line_on_stderr(capsys, flag, value):
    # old: an empty list ran every claim on nothing and printed a table of FAIL rows (exit 1);
    # the counts failed inside run_checks naming the Python argument (T, max_paths), not the flag
    code = _cli(["verify", "--no-reduction", f"{flag}={value}"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"rnnlab verify: error: argument {flag}" in err
    assert (">= 0" if flag == "--seeds" else ">= 1") in err


@pytest.mark.parametrize("argv,match", [
    (["--only", "no claim has this text"], "matches none of the"),
    (["--only", "reduction graph", "--no-reduction"], "--no-reduction skips"),
])
def test_only_matching_nothing_is_one_line_on_stderr(capsys, argv, match):
    # old: "0 claims checked" (or only skipped claims) printed as a table, exit 1
    code = _cli(["verify", "--layers", "1", "--widths", "2", "--instances", "1"] + argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("rnnlab: error: --only ") and match in err


def test_only_hint_names_claims_that_exist():
    # the --only error suggests 'gamma^2' and 'kappa': both must select claims
    checks.load_checks()
    for text in ("gamma^2", "kappa"):
        assert any(text in c.claim.lower() for c in checks.CHECKS)


def test_main_verify_with_a_list_reports_bad_flags_in_one_line(capsys):
    # main_verify(argv) parses with the same one-line parser as the rnnlab command
    with pytest.raises(SystemExit) as exc:
        verify_cli.main_verify(["--widths", ""])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == "" and len(err.splitlines()) == 1
    assert "argument --widths" in err
