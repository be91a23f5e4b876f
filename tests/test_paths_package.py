"""``import rnnlab.paths`` exposes its submodules and the names the README and the paths tutorial
use, ``__all__`` is accurate, and importing stays cheap (submodules load on first use;
``import rnnlab`` imports neither ``rnnlab.paths`` nor matplotlib)."""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rnnlab.paths

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "tutorials" / "02_paths.py"
SUBMODULES = ("basis", "checks", "claims", "exact", "norms", "plants", "reduction",
              "reduction_checks", "rescale", "support", "unrolled", "verify_cli")


def _fresh(code: str) -> list:
    """sys.modules (sorted) after running ``code`` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                           "print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_rnnlab_imports_neither_the_paths_nor_matplotlib():
    loaded = _fresh("import rnnlab")
    assert not [m for m in loaded if m.startswith(("rnnlab.paths", "matplotlib"))]


def test_import_rnnlab_paths_is_lazy_and_exposes_every_submodule():
    loaded = _fresh("import rnnlab.paths")
    assert [m for m in loaded if m.startswith("rnnlab.paths")] == ["rnnlab.paths"]
    loaded = _fresh("import rnnlab.paths\n"
                    f"mods = [getattr(rnnlab.paths, n) for n in {SUBMODULES!r}]")
    assert {f"rnnlab.paths.{n}" for n in SUBMODULES} <= set(loaded)
    assert "matplotlib" not in loaded


def test_all_is_accurate():
    names = rnnlab.paths.__all__
    assert len(names) == len(set(names)) and sorted(names) == list(names)
    assert set(SUBMODULES) <= set(names)
    for name in names:
        value = getattr(rnnlab.paths, name)
        if name in SUBMODULES:
            assert value is importlib.import_module(f"rnnlab.paths.{name}")
        else:     # a re-exported name is the submodule's own object, listed in its __all__
            home = value.__module__ if hasattr(value, "__module__") else None
            owner = importlib.import_module(home) if home else None
            assert owner is None or name in getattr(owner, "__all__", [name])
    assert set(names) <= set(dir(rnnlab.paths))
    with pytest.raises(AttributeError):
        rnnlab.paths.no_such_name
    namespace = {}
    exec("from rnnlab.paths import *", namespace)
    assert set(names) <= set(namespace)


def test_submodule_all_lists_are_accurate():
    for name in SUBMODULES:
        module = importlib.import_module(f"rnnlab.paths.{name}")
        for public in getattr(module, "__all__", ()):
            assert hasattr(module, public), f"rnnlab.paths.{name}.__all__ lists {public}"


def _tutorial_uses():
    """(module, name) pairs the tutorial imports from rnnlab.paths or reads off a paths module."""
    tree = ast.parse(TUTORIAL.read_text())
    uses, aliases = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnlab.paths"):
            for alias in node.names:
                uses.add((node.module, alias.name))
                full = f"{node.module}.{alias.name}"
                if alias.name in SUBMODULES and node.module == "rnnlab.paths":
                    aliases[alias.asname or alias.name] = full
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            uses.add((aliases[node.value.id], node.attr))
    return uses


def test_names_the_tutorial_uses_exist():
    uses = _tutorial_uses()
    assert ("rnnlab.paths", "UnrolledGraph") in uses    # the scan does find the imports
    missing = [f"{m}.{n}" for m, n in sorted(uses)
               if not hasattr(importlib.import_module(m), n)]
    assert not missing, f"tutorials/02_paths.py uses names rnnlab.paths lacks: {missing}"


def test_names_the_readme_uses_exist():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Path geometry")
    section = text[start:text.index("\n## ", start + 1)]
    ticks = set(re.findall(r"`([^`]+)`", section))
    files = {t.split("/")[-1] for t in ticks if re.fullmatch(r"(paths/)?\w+\.py", t)}
    assert files, "the README section names no module files"
    for f in files:
        assert (ROOT / "rnnlab" / "paths" / f).is_file(), f"README names rnnlab/paths/{f}"
    for dotted in (t for t in ticks if re.fullmatch(r"(rnnlab\.)?paths(\.\w+)*", t)):
        obj = rnnlab
        for part in dotted.removeprefix("rnnlab.").split("."):
            obj = getattr(obj, part)
    modules = [importlib.import_module(f"rnnlab.paths.{n}") for n in SUBMODULES]
    for name in (t for t in ticks if re.fullmatch(r"[a-z_]\w*", t) and "_" in t):
        assert any(hasattr(m, name) for m in modules), f"README names {name}"
