"""Argument checks shared by models, tasks, optimizers and the CLI.

Each raises :class:`rnnlab.errors.ConfigError` with a message that names the parameter and what is
allowed, so the CLI can print it as one line.
"""
from __future__ import annotations

import math
import numbers

from . import backend
from .errors import ConfigError


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def positive_float(name: str, value, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a finite number {bound}; got {value}")
    return value


def choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def float_array(name: str, a, shape=None, dtype=None, finite: bool = True):
    """Check that ``a`` is a floating array of the active backend with the given shape.

    ``shape`` is a tuple whose ``None`` entries match any size; ``dtype``, if given, must match;
    ``finite`` also rejects NaN and inf (data and parameters; a model's outputs are allowed to
    be non-finite so that training can detect divergence itself). Returns ``a`` unchanged.
    """
    xp = backend.get_xp()
    if not isinstance(a, xp.ndarray):
        raise ConfigError(f"{name} must be a {backend.backend_name()} array; "
                          f"got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise ConfigError(f"{name} must have a floating dtype (float32 or float64); got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ConfigError(f"{name} has dtype {a.dtype} but the parameters are {dtype}; "
                          f"cast it with .astype('{dtype}')")
    if shape is not None:
        ok = a.ndim == len(shape) and all(s is None or s == n for s, n in zip(shape, a.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ConfigError(f"{name} must have shape {want}; got {tuple(a.shape)}")
    if finite and not bool(xp.isfinite(a).all()):
        raise ConfigError(f"{name} contains NaN or inf values")
    return a
