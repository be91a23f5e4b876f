"""Every tutorial runs to completion as a script in fast mode and writes at least one figure.

Each ``tutorials/NN_*.py`` runs in its own subprocess (no notebook kernel, so no kernel
flakiness) with ``RNNLAB_FAST=1``, the Agg backend, and its output folder in a temporary
directory; a new tutorial is picked up by the glob without editing this file.
"""
from __future__ import annotations

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


def _tail(text, lines: int = 40) -> str:
    """The last ``lines`` lines of a process's output (bytes after a timeout, else str)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def test_tutorials_exist():
    assert TUTORIALS, f"no tutorials/[0-9][0-9]_*.py found under {ROOT}"


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs_in_fast_mode(script, tmp_path):
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
    assert result.returncode == 0, (
        f"{script.name} exited with {result.returncode}\n--- stdout ---\n{_tail(result.stdout)}"
        f"\n--- stderr ---\n{_tail(result.stderr)}")
    figures = sorted(out.rglob("*.png"))
    assert figures, f"{script.name} wrote no PNG under RNNLAB_TUTORIAL_OUT={out}"
