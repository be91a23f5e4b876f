"""The claims table behind ``rnnlab verify``: it passes on the library, FAILs on planted bugs,
and accepts checks registered from other modules."""
from __future__ import annotations

import pytest

from rnnlab import ConfigError
from rnnlab.paths import verify

SMALL = dict(layers=(1, 2), widths=(2,), T=3, seeds=(0,), instances=1)


@pytest.fixture(scope="module")
def clean_results():
    return verify.run_checks(**SMALL, include_reduction=False)


def test_every_claim_passes(clean_results):
    failed = [(r.claim, r.error_text, r.note) for r in clean_results if not r.passed]
    assert not failed, verify.format_table(clean_results)
    assert len(clean_results) >= 15
    assert all(r.instances > 0 for r in clean_results)
    table = verify.format_table(clean_results)
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
    results = verify.run_checks(**SMALL, include_reduction=False, plant=plant)
    failing = [r for r in results if not r.passed]
    assert any(claim_text in r.claim for r in failing), verify.format_table(results)
    assert "FAIL" in verify.format_table(results)


def test_main_verify_exit_codes(capsys):
    argv = ["--layers", "1", "--widths", "2", "--instances", "1", "--no-reduction"]
    assert verify.main_verify(argv + ["--only", "gamma^2"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert verify.main_verify(argv + ["--only", "kappa", "--plant", "kappa_factor"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_registered_checks_run_and_crashes_become_fail_rows():
    saved = list(verify.CHECKS)
    try:
        @verify.register_check("a test claim that always holds", "test", group="extra")
        def _ok(ctx):
            tally = verify.Tally(tolerance=1e-12)
            for case in ctx.cases():
                tally.add(0.0)
            return tally

        @verify.register_check("a test claim whose check crashes", "test", group="extra")
        def _boom(ctx):
            raise RuntimeError("deliberate")

        results = verify.run_checks(**SMALL, include_reduction=False, only="a test claim")
        assert [r.passed for r in results] == [True, False]
        assert results[0].instances == 8 and results[0].error == 0.0
        assert "RuntimeError: deliberate" in results[1].note
    finally:
        verify.CHECKS[:] = saved


def test_reduction_group_is_skipped_on_request():
    saved = list(verify.CHECKS)
    try:
        verify.register_check("a reduction claim", "gsgd", group="reduction_checks")(
            lambda ctx: verify.Tally())
        names = [r.claim for r in verify.run_checks(**SMALL, include_reduction=False,
                                                    only="a reduction claim")]
        assert names == []
    finally:
        verify.CHECKS[:] = saved


def test_enumeration_claims_shorten_the_unroll_to_fit_the_limit():
    results = verify.run_checks(layers=(1,), widths=(2,), T=5, instances=1, max_paths=60,
                                include_reduction=False, only="gamma^2: explicit path sum")
    assert len(results) == 1 and results[0].passed
    assert "T lowered on 4 instances" in results[0].note


def test_bad_arguments():
    with pytest.raises(ConfigError, match="plant must be one of"):
        verify.run_checks(plant="nonsense")
    with pytest.raises(ConfigError, match="T must be"):
        verify.run_checks(T=0)


@pytest.mark.slow
def test_full_default_table_passes():
    # this part's claims only; the reduction-graph claims have their own tests
    results = verify.run_checks(layers=(1, 2, 3), widths=(1, 2, 3), T=4, seeds=(0, 1),
                                instances=2, include_reduction=False)
    assert all(r.passed for r in results), verify.format_table(results)
