"""The configuration of a training run: everything a run depends on besides its code.

A run is a pure function of its :class:`TrainConfig` (seed included): the model's initial
weights, every training batch and the evaluation set are derived from ``seed`` (see
:func:`rnnlab.backend.derive_seed`), so the same config gives the same numbers on NumPy.
"""
from __future__ import annotations

import dataclasses
import json

from .. import backend, validate
from ..errors import ConfigError
from ..models import ACTIVATIONS, INITS, MODELS
from ..optim import OPTIMIZERS
from ..tasks import TASKS

# Seed streams: independent random streams derived from the one user seed.
STREAM_INIT, STREAM_TRAIN, STREAM_EVAL = 1, 2, 3


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run (all JSON-serialisable).

    ``clip`` is the maximum global gradient norm (0 disables clipping). ``truncate`` is the chunk
    length k of truncated BPTT (0: full BPTT): each batch is processed in chunks of k steps, the
    hidden state carried from chunk to chunk, the gradient stopped at chunk boundaries, and the
    parameters updated after every chunk that has scored outputs. ``steps`` counts batches.
    """

    task: str = "adding"
    T: int = 100
    model: str = "elman"
    layers: int = 1
    hidden: int = 100
    activation: str = "relu"
    init: str = "identity"
    gain: float = 1.0
    init_scale: float = 0.01
    bias: bool = True
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    clip: float = 1.0
    batch: int = 50
    steps: int = 1000
    truncate: int = 0
    eval_every: int = 100
    eval_size: int = 1000
    checkpoint_every: int = 0
    seed: int = 0
    backend: str = "numpy"
    dtype: str = "float32"
    out: str = "runs/train"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that is not allowed."""
        validate.choice("task", self.task, tuple(TASKS))
        validate.choice("model", self.model, MODELS)
        validate.choice("activation", self.activation, ACTIVATIONS)
        validate.choice("init", self.init, INITS)
        validate.choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        validate.choice("backend", self.backend, backend.BACKENDS)
        validate.choice("dtype", self.dtype, ("float32", "float64"))
        validate.positive_int("T", self.T)
        validate.positive_int("layers", self.layers)
        validate.positive_int("hidden", self.hidden)
        validate.positive_int("batch", self.batch)
        validate.positive_int("steps", self.steps, minimum=0)
        validate.positive_int("truncate", self.truncate, minimum=0)
        validate.positive_int("eval_every", self.eval_every)
        validate.positive_int("eval_size", self.eval_size)
        validate.positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        validate.positive_int("seed", self.seed, minimum=0)
        validate.positive_float("lr", self.lr)
        validate.positive_float("gain", self.gain, allow_zero=True)
        validate.positive_float("init_scale", self.init_scale)
        validate.positive_float("momentum", self.momentum, allow_zero=True)
        validate.positive_float("clip", self.clip, allow_zero=True)
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"out must be a folder path; got {self.out!r}")

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints (``checkpoint_every``, or ``eval_every`` if 0)."""
        return self.checkpoint_every or self.eval_every

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
