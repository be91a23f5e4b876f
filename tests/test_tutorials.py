"""Every tutorial runs to the end as a script in fast mode and writes the figures it declares.

Each ``tutorials/NN_*.py`` runs in its own subprocess (no notebook kernel, so no kernel
flakiness) with ``RNNLAB_FAST=1``, the Agg backend, and its output folder in a temporary
directory; a new tutorial is picked up by the glob without editing this file. Two things make a
run count as passed (see ``tutorials/README.md``):

- **the final line.** A chapter's last cell calls ``_setup.finish``, which prints
  ``"NN_topic: all checks passed"``; the test requires it as the last line of stdout. Python
  stops at the first failing assert, so the line proves that every assert before it ran (and
  ``finish`` refuses to print it under ``python -O``, where asserts are skipped);
- **the declared figures.** A chapter declares, at top level, ``FIGURES = ("NN_name.png", ...)``;
  the test reads that tuple from the source without running it (``ast``) and requires exactly
  those PNG files, each a real PNG, in the output folder.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
# Fast mode is meant to finish in seconds; 120 s leaves room for a loaded CI machine while still
# turning a hang or an accidental full-size run into a failure.
TIMEOUT_S = 120
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOW_TO_DECLARE = ("declare the chapter's figures at top level, e.g. "
                  "FIGURES = (\"NN_topic_plot.png\",), and save each with "
                  "_setup.save_figure(fig, name) (tutorials/README.md, 'Tests')")


def _tail(text, lines: int = 40) -> str:
    """The last ``lines`` lines of a process's output (bytes after a timeout, else str)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def declared_figures(script: Path) -> tuple[str, ...]:
    """The ``FIGURES`` tuple a chapter assigns at top level, read without running the chapter.

    Raises ``ValueError`` with a message saying what is wrong and how to declare it: no (or more
    than one) top-level ``FIGURES = ...``, a value that is not a literal tuple or list of
    strings, an empty one, a name that is not a bare ``.png`` file name, a name without the
    chapter's ``NN_`` prefix (chapters share one output folder), or a repeated name.
    """
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    nodes = [node for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "FIGURES" for t in node.targets)]
    if len(nodes) != 1:
        found = "no" if not nodes else f"{len(nodes)}"
        raise ValueError(f"{script.name}: {found} top-level FIGURES assignment; {HOW_TO_DECLARE}")
    try:
        figures = ast.literal_eval(nodes[0].value)
    except ValueError:
        raise ValueError(f"{script.name}: FIGURES (line {nodes[0].lineno}) is not a literal "
                         f"tuple of strings; {HOW_TO_DECLARE}") from None
    if not isinstance(figures, (tuple, list)) or not all(isinstance(f, str) for f in figures):
        raise ValueError(f"{script.name}: FIGURES must be a tuple of file names, got "
                         f"{figures!r}; {HOW_TO_DECLARE}")
    if not figures:
        raise ValueError(f"{script.name}: FIGURES is empty; every chapter saves at least one "
                         f"figure; {HOW_TO_DECLARE}")
    prefix = script.name[:3]  # "NN_"
    bad = [f for f in figures
           if Path(f).name != f or not f.endswith(".png") or not f.startswith(prefix)]
    if bad:
        raise ValueError(f"{script.name}: FIGURES names {bad} are not bare '{prefix}*.png' file "
                         "names (the prefix keeps chapters from overwriting each other's "
                         "figures in the shared output folder)")
    if len(set(figures)) != len(figures):
        raise ValueError(f"{script.name}: FIGURES repeats a name: {list(figures)}")
    return tuple(figures)


def final_line(script: Path) -> str:
    """The line ``_setup.finish`` prints last, which a passing chapter's stdout must end with."""
    return f"{script.stem}: all checks passed"


def test_tutorials_exist():
    assert TUTORIALS, f"no tutorials/[0-9][0-9]_*.py found under {ROOT}"


@pytest.mark.parametrize("source, problem", [
    ("x = 1\n", "no top-level FIGURES"),
    ("def f():\n    FIGURES = ('00_a.png',)\n", "no top-level FIGURES"),
    ("FIGURES = ('00_a.png',)\nFIGURES = ('00_b.png',)\n", "2 top-level FIGURES"),
    ("FIGURES = tuple(['00_a.png'])\n", "not a literal"),
    ("FIGURES = ()\n", "FIGURES is empty"),
    ("FIGURES = ('00_a.svg',)\n", "are not bare"),
    ("FIGURES = ('01_a.png',)\n", "are not bare"),
    ("FIGURES = ('sub/00_a.png',)\n", "are not bare"),
    ("FIGURES = ('00_a.png', '00_a.png')\n", "repeats a name"),
])
def test_figure_declaration_is_checked(tmp_path, source, problem):
    """A chapter without a usable FIGURES declaration fails with a message that says why."""
    script = tmp_path / "00_new.py"
    script.write_text(source)
    with pytest.raises(ValueError, match=problem):
        declared_figures(script)
    script.write_text("FIGURES = ('00_a.png', '00_b.png')  # a comment\n")
    assert declared_figures(script) == ("00_a.png", "00_b.png")


def test_save_figure_leaves_figures_open_in_a_notebook(tmp_path):
    """``save_figure`` closes the figure in a script and keeps it open under a Jupyter kernel
    (faked by an ``ipykernel`` entry in ``sys.modules``), so a notebook shows it inline."""
    code = ("import sys, types\n"
            "if sys.argv[1] == 'notebook':\n"
            "    sys.modules['ipykernel'] = types.ModuleType('ipykernel')\n"
            "from _setup import IN_NOTEBOOK, save_figure\n"
            "import matplotlib.pyplot as plt\n"
            "fig = plt.figure()\n"
            "path = save_figure(fig, '00_probe.png')\n"
            "print(IN_NOTEBOOK, plt.fignum_exists(fig.number), path.is_file())\n")
    env = dict(os.environ, MPLBACKEND="Agg", RNNLAB_TUTORIAL_OUT=str(tmp_path / "figures"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tutorials"), str(ROOT),
                                                      env.get("PYTHONPATH")]))
    for mode, expected in (("script", "False False True"), ("notebook", "True True True")):
        result = subprocess.run([sys.executable, "-c", code, mode], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=TIMEOUT_S)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == expected, (mode, result.stdout)


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode(script, tmp_path):
    try:
        figures = declared_figures(script)  # before running: a missing declaration fails fast
    except ValueError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem:
        pytest.fail(problem)
    out = tmp_path / "figures"
    env = dict(os.environ)
    env.update(RNNLAB_FAST="1", MPLBACKEND="Agg", RNNLAB_TUTORIAL_OUT=str(out))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # -W error::RuntimeWarning: the same policy as the test suite (setup.cfg), so an overflow or
    # invalid value in a tutorial fails here instead of printing a warning nobody reads.
    command = [sys.executable, "-W", "error::RuntimeWarning", str(script)]
    try:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name} did not finish within {TIMEOUT_S} s in fast mode; "
                    f"last output:\n{_tail(exc.stdout)}")
    report = f"\n--- stdout ---\n{_tail(result.stdout)}\n--- stderr ---\n{_tail(result.stderr)}"
    assert result.returncode == 0, f"{script.name} exited with {result.returncode}{report}"

    lines = [line.rstrip() for line in result.stdout.splitlines() if line.strip()]
    expected = final_line(script)
    assert lines and lines[-1] == expected, (
        f"{script.name} exited with 0 but its output does not end with {expected!r}, so its "
        "last cell (finish(...), after every assert) did not run or printed something else; "
        f"end the chapter with finish({script.stem!r}, FIGURES){report}")

    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    missing = sorted(set(figures) - set(written))
    undeclared = sorted(set(written) - set(figures))
    assert not missing, (f"{script.name} declares FIGURES {list(figures)} but did not write "
                         f"{missing} under RNNLAB_TUTORIAL_OUT={out} (it wrote {written})")
    assert not undeclared, (f"{script.name} wrote {undeclared}, which its FIGURES "
                            f"{list(figures)} does not declare; add them to FIGURES")
    for name in figures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{script.name}: {name} is not a PNG file"
