"""What every tutorial does first (imported as ``from _setup import FAST, OUT``).

- As a script, figures are drawn off-screen (Agg); in a notebook the kernel's backend is kept.
- In a source checkout without ``pip install -e .``, the repository root goes on ``sys.path``.
- ``FAST`` is True when ``RNNLAB_FAST`` is set to anything but "" or "0" (the tests set it).
- ``OUT`` is the folder for figures: ``RNNLAB_TUTORIAL_OUT``, default ``./runs/tutorials``.
"""
import os
import sys
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # a script draws off-screen; a notebook keeps its own backend
    matplotlib.use("Agg")

try:
    import rnnlab  # noqa: F401
except ModuleNotFoundError:  # a source checkout without `pip install -e .`: use the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FAST = os.environ.get("RNNLAB_FAST", "0").strip() not in ("", "0")
OUT = Path(os.environ.get("RNNLAB_TUTORIAL_OUT", "runs/tutorials"))
OUT.mkdir(parents=True, exist_ok=True)
