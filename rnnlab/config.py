"""The configuration of a run: a task, a model and an optimizer, each with its own options, and
the training settings.

A config is nested the way a TOML or JSON file holds it::

    [task]                      # the problem and its options
    name = "adding"
    T = 150
    [model]                     # the network and its options
    name = "elman"
    hidden = 64
    activation = "relu"
    [optimizer]                 # the update rule and its hyper-parameters
    name = "adam"
    lr = 1e-3
    [train]                     # steps, batch, clipping, evaluation, checkpoints, seed, backend
    steps = 8000
    clip = 1.0

Every section's options are declared once by their owner (``TASKS``, ``MODELS``,
``OPTIMIZERS`` and :data:`SETTINGS`), which gives defaults and checks to the Python API, config
files and the command line alike. A section left out, or an option left out, takes its default;
an unknown section or option is an error listing what is allowed.

A run is a pure function of its config (seed included): the initial weights, every training
batch and the held-out set are derived from ``train.seed``. :meth:`RunConfig.run_id` derives a
short id from the whole config except ``train.steps`` (so a longer run of the same config
continues it), which names a run's folder when none is given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib

from . import backend
from .errors import ConfigError
from .models import MODELS
from .optim import OPTIMIZERS
from .options import Option, resolve
from .tasks import TASKS

# Seed streams: independent random streams derived from the one user seed.
STREAM_INIT, STREAM_TRAIN, STREAM_EVAL, STREAM_TEST = 1, 2, 3, 4

SETTINGS = (
    Option.integer("steps", 1000, "training steps (batches)", minimum=0),
    Option.integer("batch", 50, "sequences per step", minimum=1),
    Option.number("clip", 1.0, "max global gradient norm (0: no clipping)", minimum=0,
                  inclusive=True),
    Option.integer("truncate", 0, "truncated BPTT chunk length (0: full BPTT)", minimum=0),
    Option.integer("eval_every", 100, "steps between evaluations", minimum=1),
    Option.integer("eval_size", 1000, "held-out sequences", minimum=1),
    Option.integer("test_size", 1000, "test sequences, scored once when a run finishes "
                   "(0: none)", minimum=0),
    Option.integer("eval_batch", 1000, "sequences per evaluation chunk (bounds its memory)",
                   minimum=1),
    Option.integer("checkpoint_every", 0, "steps between checkpoints (0: at every evaluation)",
                   minimum=0),
    Option.integer("flow_every", 0, "steps between gradient-flow records: per-step "
                   "||dLoss/dh_t|| and memory use (0: none)", minimum=0),
    Option.flag("stop_when_solved", False, "end the run at the first evaluation that reaches "
                "the task's threshold (suites that count failures within a budget)"),
    Option.integer("seed", 0, "seed of weights, batches and held-out set", minimum=0),
    Option("backend", None, "array backend (RNNLAB_BACKEND when not given, else numpy)",
           lambda name, value: _check_backend(name, value), str, "choice", backend.BACKENDS),
    Option.choice("dtype", "float32", "training dtype", ("float32", "float64")),
)

def _check_backend(name, value):
    if value is None:  # the default: the environment's choice, recorded in the config
        text = os.environ.get("RNNLAB_BACKEND", "numpy").strip().lower() or "numpy"
        if text not in backend.BACKENDS:
            raise ConfigError(f"RNNLAB_BACKEND must be one of {', '.join(backend.BACKENDS)}; "
                              f"got {os.environ['RNNLAB_BACKEND']!r}")
        return text
    if value not in backend.BACKENDS:
        raise ConfigError(f"{name} must be one of {', '.join(backend.BACKENDS)}; got {value!r}")
    return value


# section -> (registry, default component name); "train" holds SETTINGS instead
COMPONENTS = {"task": (TASKS, "adding"), "model": (MODELS, "elman"),
              "optimizer": (OPTIMIZERS, "sgd")}
SECTIONS = ("task", "model", "optimizer", "train")


def _component(section: str, value) -> dict:
    """``{"name": ..., **all options}`` for a section given as a name or a partial dict."""
    registry, default = COMPONENTS[section]
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"config section {section!r} must be a table with a name and options; "
                          f"got {value!r}")
    given = dict(value)
    name = given.pop("name", default)
    registry.get(name)  # an unknown name: the error lists the registered ones
    return {"name": name, **registry.resolve(name, given)}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's task, model, optimizer (each ``{"name": ..., **options}``) and training settings.

    Construct with names or partial dicts; every section is completed with defaults and checked::

        RunConfig(task={"name": "adding", "T": 50}, optimizer={"name": "adam", "lr": 1e-3},
                  train={"steps": 2000})
    """

    task: dict = dataclasses.field(default_factory=dict)
    model: dict = dataclasses.field(default_factory=dict)
    optimizer: dict = dataclasses.field(default_factory=dict)
    train: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for section in COMPONENTS:
            object.__setattr__(self, section, _component(section, getattr(self, section)))
        if not isinstance(self.train, dict):
            raise ConfigError(f"config section 'train' must be a table; got {self.train!r}")
        train = resolve("config section 'train'", SETTINGS, self.train)
        train["backend"] = _check_backend("backend", train["backend"])
        object.__setattr__(self, "train", train)

    # ------------------------------------------------------------------ views
    def options(self, section: str) -> dict:
        """The options of ``section`` without its ``name``."""
        return {k: v for k, v in getattr(self, section).items() if k != "name"}

    def to_dict(self) -> dict:
        """The complete nested config (JSON-serialisable)."""
        return {s: dict(getattr(self, s)) for s in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def run_id(self) -> str:
        """12 hex digits derived from everything but ``train.steps`` (see the module doc)."""
        data = self.to_dict()
        data["train"] = {k: v for k, v in data["train"].items() if k != "steps"}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def differences(self, other: "RunConfig", ignore=("train.steps",)) -> list:
        """Dotted keys whose values differ between the two configs (``ignore`` left out)."""
        a, b = _dotted(self.to_dict()), _dotted(other.to_dict())
        return [k for k in dict.fromkeys([*a, *b]) if k not in ignore and a.get(k) != b.get(k)]

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """A config from nested data (a loaded TOML/JSON file); unknown sections are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a table of sections; got {type(data).__name__}")
        # "environment" (what a run folder's config.json records about the machine) describes
        # where a run ran, not the run: it is read past
        unknown = [k for k in data if k not in SECTIONS and k != "environment"]
        if unknown:
            raise ConfigError(f"unknown config section {unknown[0]!r}; allowed: "
                              f"{', '.join(SECTIONS)}")
        return cls(**{k: data[k] for k in SECTIONS if k in data})

    @classmethod
    def from_file(cls, path: str) -> "RunConfig":
        """Read a ``.toml`` (standard library ``tomllib``) or ``.json`` config file."""
        return cls.from_dict(read_file(path))

    def with_overrides(self, overrides: dict) -> "RunConfig":
        """A new config with dotted ``overrides`` applied (see :func:`apply_overrides`)."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides))


def read_file(path: str) -> dict:
    """The nested data of a ``.toml`` or ``.json`` config file, not yet checked."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid "
                          f"{'JSON' if path.endswith('.json') else 'TOML'}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None


def apply_overrides(data: dict, overrides: dict) -> dict:
    """Nested config ``data`` with dotted ``overrides`` applied (``{"optimizer": "adam",
    "optimizer.lr": 0.01, "train.steps": 50}``), as a new dict (checked when a RunConfig is made
    from it).

    A component's name (``"optimizer"`` or ``"optimizer.name"``) is applied first; changing it
    drops the old component's options, which belong to their owner, so only options given here
    (or the new component's defaults) apply.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a table of sections; got {type(data).__name__}")
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    names, options = {}, {}
    for key, value in overrides.items():
        section, _, option = key.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in {key!r}; allowed: "
                              f"{', '.join(SECTIONS)}")
        if section in COMPONENTS and option in ("", "name"):
            names[section] = value
        elif not option:
            raise ConfigError(f"{key!r} names a section; give section.option=value")
        else:
            options[(section, option)] = value
    for section, name in names.items():
        table = data.get(section)
        current = table if isinstance(table, str) else (table or {}).get(
            "name", COMPONENTS[section][1])
        if name != current:
            data[section] = {"name": name}
    for (section, option), value in options.items():
        table = data.get(section, {})
        data[section] = {"name": table} if isinstance(table, str) else dict(table)
        data[section][option] = value
    return data


def _dotted(data: dict) -> dict:
    return {f"{s}.{k}": v for s, table in data.items() for k, v in table.items()}


def options_help() -> str:
    """Every registered task's, model's and optimizer's options with defaults, and the training
    settings, as ``--help`` shows them."""
    lines = []
    for section, (registry, _) in COMPONENTS.items():
        lines.append(f"{section} options (--{section} NAME, then --OPTION or --set "
                     f"{section}.OPTION=VALUE):")
        for name in registry:
            described = " ".join(o.describe() for o in registry.options(name)) or "(none)"
            lines.append(f"  {name}: {described}")
    lines.append("train settings (--SETTING or --set train.SETTING=VALUE): "
                 + " ".join(o.describe() for o in SETTINGS))
    return "\n".join(lines)
