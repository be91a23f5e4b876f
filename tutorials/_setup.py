"""What every tutorial does first (``from _setup import FAST, OUT, draw, finish, save_figure``).

- As a script, figures are drawn off-screen (Agg); in a notebook the kernel's backend is kept.
- In a source checkout without ``pip install -e .``, the repository root goes on ``sys.path``.
- ``FAST`` is True when ``RNNLAB_FAST`` is set to anything but "" or "0" (the tests set it).
- ``OUT`` is the folder for figures: ``RNNLAB_TUTORIAL_OUT``, default ``./runs/tutorials``.
- ``draw`` is ``tutorials/_draw.py``: the tutorials' figure functions, so a chapter cell makes a
  figure with one named call and no plotting code of its own.
- ``save_figure(fig, name)`` writes ``OUT / name`` and, as a script, closes the figure; in a
  notebook it leaves it open so that it shows under the cell.
- ``finish(chapter, FIGURES)`` is a chapter's last call: it checks that the chapter saved exactly
  the figures it declares and prints ``"<chapter>: all checks passed"``, the line
  ``tests/test_tutorials.py`` requires at the end of the output (see ``tutorials/README.md``).
"""
import os
import sys
import time
from pathlib import Path

import matplotlib

# ipykernel is imported by every Jupyter kernel and by no script run.
IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:  # a script draws off-screen; a notebook keeps its own (inline) backend
    matplotlib.use("Agg")

try:
    import rnnlab  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`: use the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _draw as draw  # noqa: E402  (after the backend is chosen: it imports pyplot)

FAST = os.environ.get("RNNLAB_FAST", "0").strip() not in ("", "0")
OUT = Path(os.environ.get("RNNLAB_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)

_START = time.perf_counter()
_SAVED = {}  # figure name -> path, in the order saved (a re-run notebook cell saves it again)


def save_figure(fig, name, dpi=120):
    """Save ``fig`` as ``OUT / name`` and return that path.

    ``name`` is a bare file name ending in ``.png`` that the chapter lists in its ``FIGURES``.
    As a script the figure is closed (its memory is freed and nothing is left to show); in a
    notebook (ipykernel loaded) it stays open, so the inline backend shows it under the cell.
    """
    if Path(name).name != name or not name.endswith(".png"):
        raise ValueError(f"figure name must be a bare file name ending in .png, got {name!r}")
    path = OUT / name
    fig.savefig(path, dpi=dpi)
    _SAVED[name] = path
    import matplotlib.pyplot as plt

    if not IN_NOTEBOOK:
        plt.close(fig)
    elif not plt.fignum_exists(getattr(fig, "number", -1)):
        # a Figure made without pyplot (rnnlab's own plots) is not shown by the inline backend
        from IPython.display import display

        display(fig)
    print(f"figure saved to {path.resolve()}")
    return path


def finish(chapter, figures):
    """End a chapter: check its figures, then print ``"<chapter>: all checks passed"``.

    Called in the chapter's last cell, after every assert, so the line is printed only when
    every cell before it ran without an error. Raises ``AssertionError`` if the figures saved
    by ``save_figure`` differ from ``figures`` (the chapter's ``FIGURES`` declaration), and
    ``RuntimeError`` under ``python -O``, where the chapter's asserts were skipped.
    """
    if not __debug__:
        raise RuntimeError(f"{chapter}: asserts are disabled (python -O), so nothing was checked")
    missing = [n for n in figures if n not in _SAVED]
    undeclared = [n for n in _SAVED if n not in figures]
    assert not missing and not undeclared, (
        f"{chapter}: FIGURES declares {list(figures)} but the chapter saved {list(_SAVED)} "
        f"(missing {missing}, undeclared {undeclared})")
    print(f"{chapter} finished in {time.perf_counter() - _START:.1f} s; "
          f"{len(figures)} figure(s) in {OUT.resolve()}")
    print(f"{chapter}: all checks passed")
