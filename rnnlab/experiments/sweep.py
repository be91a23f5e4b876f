"""Sweep files: a grid of runs described once, expanded into cells, each one ``run(config)``.

A sweep file (TOML) holds a base run config in the same nesting as the ``config.json`` a run
writes (``task``, ``model``, ``optimizer``, ``train``), the axes to vary, and the seeds::

    seeds = [0, 1, 2]

    [base]
    task = {name = "adding", T = 50}
    model = {name = "elman", hidden = 64, activation = "relu", init = "identity"}
    train = {steps = 2000, batch = 50, clip = 1.0}

    [axes]
    optimizer = ["sgd", {name = "path-sgd", lr_units = "sgd"}, "gsgd"]
    "optimizer.lr" = [1e-2, 1e-3, 1e-4]
    "task.T" = [50, 100]

The grid is the product of the axes and the seeds (here 3 x 3 x 2 x 3 = 54 cells). An axis key
is a dotted path into the config, ``SECTION.OPTION`` (``"optimizer.lr"``, ``"model.hidden"``,
``"train.batch"``), or a section alone (``optimizer``, same as ``"optimizer.name"``) to vary a
component; a component's entry is its name or a table with its name and options of its own.

**Options that belong to some components only are scoped, never dropped.** An option on an axis
must apply to every component its grid pairs it with: ``"optimizer.momentum"`` beside
``optimizer = ["sgd", "adam"]`` is an error, reported before any cell starts, naming the cell
and the component's options. To vary such an option, put it in that component's entry
(``optimizer = [{name = "sgd", momentum = 0.9}, "adam"]``) or give the component a grid of its
own: a file may hold several ``[[grid]]`` tables, each with its ``axes`` (and optionally its
``seeds``), whose cells are pooled::

    [[grid]]                       # SGD at its grid, ten restarts
    axes = {optimizer = ["sgd"], "optimizer.lr" = [1e-2, 1e-3, 1e-4]}
    seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

    [[grid]]                       # SGD with momentum
    axes = {optimizer = ["sgd"], "optimizer.momentum" = [0.5, 0.9]}

Options the ``[base]`` gives a component apply while the cell keeps that component; a cell that
switches to another one starts from the new component's defaults (as ``--optimizer`` does on the
command line).

**Cells are known by their config.** A cell's id is a hash of its complete config (every
option, defaults filled in, steps and seed included), so the same cell in two sweeps, or in an
edited sweep file, is the same cell: a sweep folder accumulates cells, and rerunning a sweep
(or running a larger one in the same folder) runs only the cells it does not hold yet. Cells
differing only in ``train.seed`` form a group, the unit of the report's statistics.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import tomllib

from ..config import COMPONENTS, SECTIONS, RunConfig, apply_overrides
from ..errors import ConfigError

SPEC_KEYS = ("base", "axes", "seeds", "grid", "report")
GRID_KEYS = ("axes", "seeds")
PRESETS = os.path.join(os.path.dirname(__file__), "presets")


def _digest(data, n: int = 16) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a sweep.

    Attributes
    ----------
    cell_id : str
        16 hex digits derived from the complete config (see the module docstring).
    group_id : str
        The same, with ``train.seed`` left out: cells differing only in seed share it.
    config : RunConfig
    axes : dict
        Axis key -> this cell's value, in the order of the sweep file (labels, reports).
    """

    cell_id: str
    group_id: str
    config: RunConfig
    axes: dict

    @property
    def seed(self) -> int:
        return self.config.train["seed"]

    @property
    def label(self) -> str:
        """The axes' values, e.g. ``"sgd lr=0.01"`` (see :func:`axes_label`)."""
        return axes_label(self.axes)


def cell_ids(config: RunConfig) -> tuple:
    """(cell id, group id) of a config (see :class:`Cell`)."""
    data = config.to_dict()
    without_seed = dict(data, train={k: v for k, v in data["train"].items() if k != "seed"})
    return _digest(data), _digest(without_seed)


def axes_label(axes: dict, leave_out=()) -> str:
    """A short label of axis values: a component by its entry (``sgd``,
    ``path-sgd(lr_units=sgd)``), an option as ``option=value`` (``lr=0.01``, ``T=100``)."""
    parts = []
    for key, value in axes.items():
        if key in leave_out:
            continue
        section, _, option = key.partition(".")
        parts.append(_text(value) if not option else f"{option}={_text(value)}")
    return " ".join(parts) or "base"


def _text(value) -> str:
    """An axis value as a label: a name, a number, or ``name(option=value, ...)``."""
    if isinstance(value, dict):
        options = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '?')}({options})" if options else str(value.get("name"))
    return format(value, "g") if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Grid:
    """One grid: ordered axes (key -> list of values) and its seeds."""

    axes: dict
    seeds: tuple


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file: the base config (nested data), its grids, and report settings.

    Build with :func:`read_spec` (a file or a preset name) or :meth:`from_dict`; :meth:`cells`
    expands and checks every cell before anything runs.
    """

    base: dict
    grids: tuple
    report: dict
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "SweepSpec":
        """A spec from the nested data of a sweep file (see the module docstring)."""
        where = f"sweep {source}"
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a sweep file is a table; got {type(data).__name__}")
        unknown = [k for k in data if k not in SPEC_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a sweep file holds "
                              f"{', '.join(SPEC_KEYS)}")
        base = data.get("base", {})
        if not isinstance(base, dict):
            raise ConfigError(f"{where}: [base] must be a table holding a run config; got "
                              f"{base!r}")
        if "grid" in data and "axes" in data:
            raise ConfigError(f"{where}: give either [axes] (one grid) or [[grid]] tables "
                              "(several), not both")
        top_seeds = _seeds(data.get("seeds", [0]), f"{where}: seeds")
        entries = data.get("grid", [{"axes": data.get("axes", {})}])
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}: grid must be a list of [[grid]] tables")
        grids = []
        for number, entry in enumerate(entries, start=1):
            what = f"{where}: grid {number}" if "grid" in data else where
            if not isinstance(entry, dict):
                raise ConfigError(f"{what}: a [[grid]] is a table with axes and seeds")
            extra = [k for k in entry if k not in GRID_KEYS]
            if extra:
                raise ConfigError(f"{what}: unknown key {extra[0]!r}; a [[grid]] holds "
                                  f"{', '.join(GRID_KEYS)}")
            seeds = (_seeds(entry["seeds"], f"{what}: seeds") if "seeds" in entry
                     else top_seeds)
            grids.append(Grid(_axes(entry.get("axes", {}), what), seeds))
        report = data.get("report", {})
        if not isinstance(report, dict) or any(k not in ("select",) for k in report):
            raise ConfigError(f"{where}: [report] may hold select (a list of axis keys)")
        spec = cls(base, tuple(grids), dict(report), source)
        spec.cells()  # every cell checked now, before anything runs
        return spec

    def to_dict(self) -> dict:
        """The spec as sweep-file data (what :meth:`from_dict` reads)."""
        return {"base": self.base, "report": self.report,
                "grid": [{"axes": g.axes, "seeds": list(g.seeds)} for g in self.grids]}

    def cells(self) -> list:
        """Every cell of every grid, in file order, each config complete and checked; a cell
        that two grids both hold appears once."""
        cells = {}
        for grid in self.grids:
            keys = list(grid.axes)
            for values in itertools.product(*grid.axes.values()):
                axes = dict(zip(keys, values))
                for seed in grid.seeds:
                    config = self._config(axes, seed)
                    cell_id, group_id = cell_ids(config)
                    cells.setdefault(cell_id, Cell(cell_id, group_id, config, axes))
        return list(cells.values())

    def _config(self, axes: dict, seed: int) -> RunConfig:
        overrides, components = {}, {}
        for key, value in axes.items():
            section, _, option = key.partition(".")
            if section in COMPONENTS and option in ("", "name"):
                entry = value if isinstance(value, dict) else {"name": value}
                overrides[section] = entry["name"]
                components[section] = entry
                for name, v in entry.items():
                    if name != "name":
                        overrides[f"{section}.{name}"] = v
            else:
                overrides[key] = value
        overrides["train.seed"] = seed
        try:
            return RunConfig.from_dict(apply_overrides(self.base, overrides))
        except ConfigError as exc:
            label = axes_label(axes)
            hint = ""
            if "has no option" in str(exc):
                hint = ("; an [axes] option applies to every component of its grid: give it "
                        "in that component's entry (optimizer = [{name = \"sgd\", momentum = "
                        "0.9}, \"adam\"]) or in a [[grid]] of its own")
            raise ConfigError(f"sweep {self.source}: cell {label} (seed {seed}): "
                              f"{exc}{hint}") from None


def _seeds(value, what) -> tuple:
    if (not isinstance(value, list) or not value
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in value)):
        raise ConfigError(f"{what} must be a non-empty list of integers >= 0; got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{what} lists a seed twice: {value!r}")
    return tuple(value)


def _axes(axes, what) -> dict:
    if not isinstance(axes, dict):
        raise ConfigError(f"{what}: axes must be a table of KEY = [values]; got {axes!r}")
    checked = {}
    for key, values in axes.items():
        section, _, option = key.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"{what}: axis {key!r}: unknown section {section!r}; allowed: "
                              f"{', '.join(SECTIONS)}")
        if key == "train.seed":
            raise ConfigError(f"{what}: seeds are the top-level seeds list, not an axis")
        if not option and section not in COMPONENTS:
            raise ConfigError(f"{what}: axis {key!r} names a section; give SECTION.OPTION")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{what}: axis {key!r} must be a non-empty list of values; got "
                              f"{values!r}")
        if section in COMPONENTS and option in ("", "name"):
            for v in values:
                if not (isinstance(v, str) or (isinstance(v, dict) and "name" in v)):
                    raise ConfigError(f"{what}: axis {key!r}: each entry is a {section} name "
                                      f"or a table with its name and options; got {v!r}")
            key = section
        if key in checked:
            raise ConfigError(f"{what}: axis {key!r} is given twice")
        checked[key] = list(values)
    return checked


def preset_names() -> list:
    """The sweep files shipped with rnnlab (``rnnlab sweep NAME``)."""
    return sorted(f[:-5] for f in os.listdir(PRESETS) if f.endswith(".toml"))


def spec_path(name_or_path: str) -> str:
    """The file a sweep argument names: a path, or the name of a preset."""
    if os.path.isfile(name_or_path):
        return name_or_path
    preset = os.path.join(PRESETS, f"{name_or_path}.toml")
    if os.path.sep not in name_or_path and os.path.isfile(preset):
        return preset
    raise ConfigError(f"sweep file {name_or_path} does not exist (presets: "
                      f"{', '.join(preset_names())})")


def read_spec(name_or_path: str, overrides: dict | None = None) -> SweepSpec:
    """The sweep a file (or preset) describes, with dotted ``overrides`` of its data applied
    first (``{"base.train.steps": 500, "seeds": [0]}``); every cell is checked."""
    path = spec_path(name_or_path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sweep file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"sweep file {path} cannot be read ({exc.strerror or exc})") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value, path)
    return SweepSpec.from_dict(data, source=path)


def _set_dotted(data: dict, key: str, value, path: str) -> None:
    """``data[a][b][c] = value`` for ``key = "a.b.c"`` (tables created as needed)."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} in {path} is not a table")
        node = child
    node[last] = value


def parse_value(text: str):
    """A ``--set`` value as TOML reads it (``500``, ``1e-3``, ``[0, 1]``, ``true``,
    ``"adam"``); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


__all__ = ["Cell", "Grid", "SweepSpec", "axes_label", "cell_ids", "parse_value", "preset_names", "read_spec",
           "spec_path"]
