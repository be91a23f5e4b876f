"""The kappa^(2)/kappa^(1) table (``rnnlab.experiments.kappa_table``, Fig. 2 of path-sgd): its
entries are the norms of the library's kappa functions, the expected values of the trend come
from independent computations (path enumeration, a closed form for H = 1), bad options are one
line, the files are written and the figure draws."""
from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnlab import ConfigError, ElmanSpec
from rnnlab.cli import _Parser
from rnnlab.experiments import kappa_table as kt
from rnnlab.paths import norms

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(T=(3, 5), H=(2, 3), seeds=(0, 1), init_scale=0.1, n_in=3, n_out=2)
ARGV_SMALL = ["--T", "3,5", "--H", "2,3", "--seeds", "0,1", "--n-in", "3", "--n-out", "2",
              "--no-progress"]


def _parser():
    return kt.add_kappa_table_arguments(_Parser(prog="kappa-table"))


def _independent_params(spec, seed, scale):
    """The documented draw, written out: U[-scale, scale] in param_shapes() order."""
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-scale, scale, size=s) for k, s in spec.param_shapes().items()}


@pytest.fixture(scope="module")
def small_table():
    return kt.kappa_table(**SMALL)


def test_entries_equal_norms_computed_directly(small_table):
    for i, T in enumerate(SMALL["T"]):
        for j, H in enumerate(SMALL["H"]):
            spec = ElmanSpec(SMALL["n_in"], (H,), SMALL["n_out"], "relu", True, "every")
            for s, seed in enumerate(SMALL["seeds"]):
                p = _independent_params(spec, seed, SMALL["init_scale"])
                k1 = norms.kappa1_fast(spec, p, T)
                n1 = np.sqrt(sum(np.sum(v ** 2) for v in k1.values()))
                for form, fn in (("corrected", norms.kappa2_fast),
                                 ("paper", norms.kappa2_paper_matrix_form)):
                    k2 = fn(spec, p, T)
                    n2 = np.sqrt(sum(np.sum(v ** 2) for v in k2.values()))
                    rec = k2["layer1.W_rec"]
                    expected = {"all": n2 / n1,
                                "W_rec": np.linalg.norm(rec) / np.linalg.norm(k1["layer1.W_rec"]),
                                "W_rec_entry_max": np.max(rec / k1["layer1.W_rec"])}
                    for measure, value in expected.items():
                        # same float64 arithmetic up to summation order: a few ulps
                        assert small_table.values[form, measure][i, j, s] == \
                            pytest.approx(value, rel=1e-12), (T, H, seed, form, measure)
    st = small_table.summary("corrected", "all")
    v = small_table.values["corrected", "all"]
    np.testing.assert_allclose(st["mean"], v.mean(axis=2), rtol=1e-15)
    np.testing.assert_allclose(st["std"], v.std(axis=2, ddof=1), rtol=1e-15)
    assert np.all(st["min"] <= st["mean"]) and np.all(st["mean"] <= st["max"])


def _closed_form_ratio(T, a, r, c):
    """H = n_in = n_out = 1, no biases, outputs at every step: a path enters at step s and
    leaves at t >= s, using w_rec k = t - s times, so with x = r^2
    gamma^2 = a^2 c^2 sum_k (T - k) x^k and, from c_i (2 c_i - 1) per use count,
    kappa1(r) = a^2 c^2 sum_k (T-k) k x^(k-1), kappa2(r) = a^2 c^2 sum_k (T-k) 2k(k-1) x^(k-1),
    kappa1(a) = c^2 sum_k (T-k) x^k, kappa1(c) = a^2 sum_k (T-k) x^k."""
    x, k = r * r, np.arange(T, dtype=float)
    w = T - k
    k1_r = a * a * c * c * np.sum(w * k * x ** np.maximum(k - 1, 0))
    k2_r = a * a * c * c * np.sum(w * 2 * k * (k - 1) * x ** np.maximum(k - 1, 0))
    s = np.sum(w * x ** k)
    return k2_r / math.sqrt(k1_r ** 2 + (c * c * s) ** 2 + (a * a * s) ** 2), k2_r / k1_r


def test_h1_column_matches_a_closed_form_and_grows_with_T():
    Ts = (2, 3, 4, 6, 10)
    table = kt.kappa_table(T=Ts, H=(1,), seeds=(0, 3), init_scale=0.9, n_in=1, n_out=1,
                           bias="none", forms=("corrected",))
    for s, seed in enumerate((0, 3)):
        spec = ElmanSpec(1, (1,), 1, "relu", False, "every")
        p = _independent_params(spec, seed, 0.9)
        a, r, c = (float(p[k].ravel()[0]) for k in ("layer1.W_in", "layer1.W_rec", "out.W"))
        expected = [_closed_form_ratio(T, a, r, c) for T in Ts]
        got_all = table.values["corrected", "all"][:, 0, s]
        got_rec = table.values["corrected", "W_rec"][:, 0, s]
        # fast formulas vs a closed-form sum: round-off only
        np.testing.assert_allclose(got_all, [e[0] for e in expected], rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(got_rec, [e[1] for e in expected], rtol=1e-10, atol=1e-300)
        assert got_all[0] == 0.0          # T = 2: no path uses w_rec twice
        # the paper's trend in T, on the independently computed values
        assert np.all(np.diff([e[0] for e in expected]) > 0)


def test_trend_on_a_tiny_grid_agrees_with_path_enumeration():
    Ts, Hs = (3, 4, 5), (1, 2)
    table = kt.kappa_table(T=Ts, H=Hs, seeds=(0, 1), init_scale=0.5, n_in=1, n_out=1,
                           bias="uniform", forms=("corrected",))
    expected = np.zeros((len(Ts), len(Hs), 2))
    for j, H in enumerate(Hs):
        spec = ElmanSpec(1, (H,), 1, "relu", True, "every")
        for s, seed in enumerate((0, 1)):
            p = _independent_params(spec, seed, 0.5)
            for i, T in enumerate(Ts):
                parts = norms.kappa_enumeration(spec, p, T)   # counting vectors, no fast formula
                n1 = np.sqrt(sum(np.sum(v ** 2) for v in parts.kappa1.values()))
                n2 = np.sqrt(sum(np.sum(v ** 2) for v in parts.kappa2.values()))
                expected[i, j, s] = n2 / n1
    got = table.values["corrected", "all"]
    # enumeration sums thousands of products in another order: round-off only
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # the trend the table shows is the trend of the independent values
    np.testing.assert_array_equal(np.sign(np.diff(got, axis=0)), np.sign(np.diff(expected, axis=0)))
    np.testing.assert_array_equal(np.sign(np.diff(got, axis=1)), np.sign(np.diff(expected, axis=1)))


@pytest.mark.parametrize("argv,flag", [
    (["--T", "0"], "--T"), (["--T", "1"], "--T"), (["--T", "a,b"], "--T"),
    (["--T", "5,5"], "--T"), (["--T", ""], "--T"), (["--H", "0"], "--H"),
    (["--seeds", "-1"], "--seeds"), (["--init-scale", "0"], "--init-scale"),
    (["--init-scale", "nan"], "--init-scale"), (["--init-scale", "-0.1"], "--init-scale"),
    (["--form", "printed"], "--form"), (["--norm", "W_in"], "--norm"),
    (["--n-in", "0"], "--n-in"), (["--bias", "yes"], "--bias"),
])
def test_bad_options_are_one_line(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err, err


def test_config_errors_are_one_line_and_stop_before_anything_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    args = _parser().parse_args(ARGV_SMALL + ["--out", str(blocker)])
    with pytest.raises(ConfigError) as exc:
        kt.main_kappa_table(args)
    assert "\n" not in str(exc.value) and "--out" in str(exc.value)

    out = tmp_path / "never"
    args = _parser().parse_args(["--H", "5000", "--n-in", "10000", "--out", str(out)])
    with pytest.raises(ConfigError) as exc:
        kt.main_kappa_table(args)
    assert "\n" not in str(exc.value) and "parameters" in str(exc.value)
    assert not out.exists()

    for bad in (dict(T=()), dict(T=(1,)), dict(H=(2, 2)), dict(seeds=(-1,)),
                dict(init_scale=float("inf")), dict(forms=("printed",)), dict(bias="maybe")):
        with pytest.raises(ConfigError) as exc:
            kt.kappa_table(**dict(SMALL, **bad))
        assert "\n" not in str(exc.value)


def test_files_are_written_and_match_the_table(capsys, tmp_path):
    out = tmp_path / "kappa"
    assert kt.main_kappa_table(ARGV_SMALL + ["--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    files = {k: out / v for k, v in kt.FILES.items()}
    assert all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    assert files["markdown"].read_text() == stdout
    assert "kappa2_fast" in stdout and "kappa2_paper_matrix_form" in stdout
    assert files["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = kt.kappa_table(**SMALL)
    rows = list(csv.DictReader(files["csv"].open()))
    assert len(rows) == 2 * 2 * len(kt.FORMS) * len(kt.MEASURES)
    for row in rows:
        i, j = SMALL["T"].index(int(row["T"])), SMALL["H"].index(int(row["H"]))
        st = table.summary(row["form"], row["measure"])
        for key in ("mean", "std", "min", "max"):
            assert float(row[key]) == pytest.approx(st[key][i, j], rel=1e-12)
    seeds = list(csv.DictReader(files["seeds_csv"].open()))
    assert len(seeds) == len(rows) * len(SMALL["seeds"])
    row = next(r for r in seeds if r["form"] == "paper" and r["measure"] == "W_rec"
               and r["T"] == "5" and r["H"] == "3" and r["seed"] == "1")
    assert float(row["value"]) == pytest.approx(table.values["paper", "W_rec"][1, 1, 1],
                                                rel=1e-12)


def test_one_form_and_the_W_rec_norm(capsys, tmp_path):
    argv = ARGV_SMALL + ["--form", "corrected", "--norm", "W_rec", "--out", str(tmp_path)]
    assert kt.main_kappa_table(argv) == 0
    text = capsys.readouterr().out
    assert "Norms over W_rec only" in text
    assert "kappa2_paper_matrix_form" not in text and "printed / corrected" not in text


def test_figure_draws_both_forms_one_form_and_overflow(tmp_path):
    table = kt.kappa_table(**SMALL)
    fig = kt.heatmap_figure(table)
    assert len([a for a in fig.axes if a.images]) == 2
    fig.savefig(io.BytesIO(), format="png")
    # U[-3, 3] with H = 5: W~ has spectral radius ~15, kappa overflows float64 by T = 400
    big = kt.kappa_table(T=(10, 400), H=(5,), seeds=(0,), init_scale=3.0, n_in=3, n_out=2,
                         forms=("corrected",))
    assert np.isfinite(big.values["corrected", "all"][0, 0, 0])
    assert np.isnan(big.values["corrected", "all"][1, 0, 0])
    assert "overflow" in kt.markdown(big)
    fig = kt.heatmap_figure(big, norm="W_rec")
    assert len([a for a in fig.axes if a.images]) == 1
    fig.savefig(tmp_path / "big.png")


def test_building_the_parser_imports_nothing_heavy():
    code = ("import argparse, sys\n"
            "from rnnlab.experiments.kappa_table import add_kappa_table_arguments\n"
            "add_kappa_table_arguments(argparse.ArgumentParser()).parse_args([])\n"
            "print([m for m in ('rnnlab.paths.norms', 'matplotlib', 'tqdm') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_module_entry_point_reports_errors_in_one_line(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    done = subprocess.run([sys.executable, "-m", "rnnlab.experiments.kappa_table", "--out",
                           str(blocker)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "is a file" in done.stderr
