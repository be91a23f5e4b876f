"""Argument checks shared by models, tasks, optimizers and the CLI.

Each raises :class:`rnnlab.errors.ConfigError` with a message that names the parameter and what is
allowed, so the CLI can print it as one line.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy

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


def plain_array(name: str, a, xp=None):
    """Check that ``a`` is an array of the active backend with plain array semantics.

    Subclasses that change what arithmetic and reductions mean are refused: a
    ``numpy.ma.MaskedArray`` hides masked entries from ``isfinite(a).all()`` (and from sums),
    a ``numpy.matrix`` turns ``*`` into a matrix product. ``numpy.memmap`` is a plain array on
    disk and is accepted. Returns ``a`` unchanged.
    """
    xp = xp or backend.get_xp()
    kind = type(a)
    if kind is xp.ndarray or (kind is numpy.memmap and xp is numpy):
        return a
    where = xp.__name__  # "numpy" or "cupy"
    if not isinstance(a, xp.ndarray):
        raise ConfigError(f"{name} must be a {where} array; got {kind.__name__}")
    if isinstance(a, numpy.ma.MaskedArray):
        raise ConfigError(f"{name} must be a plain {where} array, not a masked array (its mask "
                          f"would hide NaN or inf from the checks); pass a.filled(value) or "
                          f"numpy.asarray(a)")
    raise ConfigError(f"{name} must be a plain {where} array, not the subclass "
                      f"{kind.__name__} (it changes what arithmetic means); pass "
                      f"numpy.asarray(a)")


def float_array(name: str, a, shape=None, dtype=None, finite: bool = True):
    """Check that ``a`` is a floating array of the active backend with the given shape.

    ``shape`` is a tuple whose ``None`` entries match any size; ``dtype``, if given, must match;
    ``finite`` also rejects NaN and inf (data and parameters; a model's outputs are allowed to
    be non-finite so that training can detect divergence itself). Returns ``a`` unchanged.
    """
    xp = backend.get_xp()
    plain_array(name, a, xp)
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


PARAM_DTYPES = (numpy.dtype("float32"), numpy.dtype("float64"))


def param_arrays(name: str, params, shapes: dict, dtype=None, finite: bool = False):
    """Check a parameter mapping against ``shapes`` (name -> shape, in the model's order).

    ``params`` must be a dict with exactly the keys of ``shapes`` in that order; each value a
    plain array of the active backend (:func:`plain_array`) with exactly its shape; all of one
    floating dtype, float32 or float64 (``dtype``, if given, that one). ``finite`` also rejects
    NaN and inf (a pass over every entry: for construction, not for every forward call).
    ``name`` names the mapping in messages (``"params"``, ``"v"``). Returns the shared dtype.

    The common case costs one key-list comparison and, per array, a type, a dtype and a shape
    comparison; the detailed diagnosis runs only once something is wrong.
    """
    xp = backend.get_xp()
    if type(params) is not dict or list(params) != list(shapes):
        _diagnose_keys(name, params, shapes)
    if dtype is None:  # the first array's, which must itself be float32 or float64
        first = next(iter(shapes))
        dtype = getattr(params[first], "dtype", None)
        # compared as dtypes: reading dtype.name costs more than the rest of the check
        if not isinstance(dtype, numpy.dtype) or dtype not in PARAM_DTYPES:
            label = _label(name, first)
            plain_array(label, params[first], xp)
            raise ConfigError(f"{label} must be float32 or float64; got {dtype}")
    for key, shape in shapes.items():
        a = params[key]
        if type(a) is not xp.ndarray or a.dtype != dtype or a.shape != shape:
            _diagnose_array(name, key, a, shape, params, shapes, dtype, xp)
    if finite:
        for key in shapes:
            if not bool(xp.isfinite(params[key]).all()):
                raise ConfigError(f"{_label(name, key)} contains NaN or inf values")
    return dtype


def _label(name, key):
    """How messages name one array of a mapping: ``layer1.b`` for the parameters themselves,
    ``v['layer1.b']`` for another mapping with their keys."""
    return key if name == "params" else f"{name}[{key!r}]"


def _diagnose_keys(name, params, shapes):
    want = list(shapes)
    if not isinstance(params, Mapping):
        raise ConfigError(f"{name} must be a dict of arrays with the keys {want}; "
                          f"got {type(params).__name__}")
    got = list(params)
    if got == want:  # a dict subclass with the right keys
        return
    missing = [k for k in want if k not in params]
    unknown = [k for k in got if k not in shapes]
    detail = "; ".join(part for part in (missing and f"missing {missing}",
                                         unknown and f"unknown {unknown}") if part)
    raise ConfigError(f"{name} must have the keys {want} in that order; got {got}"
                      + (f" ({detail})" if detail else " (out of order)"))


def _diagnose_array(name, key, a, shape, params, shapes, dtype, xp):
    """Raise the ConfigError that says what is wrong with ``params[key]``; return if nothing is
    (a ``numpy.memmap``)."""
    label = _label(name, key)
    plain_array(label, a, xp)
    if a.dtype.kind != "f":
        raise ConfigError(f"{label} must have a floating dtype (float32 or float64); "
                          f"got {a.dtype}")
    if tuple(a.shape) != tuple(shape):
        raise ConfigError(f"{label} must have shape {tuple(shape)}; got {tuple(a.shape)}")
    if a.dtype != dtype:
        dtypes = {str(params[k].dtype) for k in shapes if hasattr(params[k], "dtype")}
        if name == "params":
            raise ConfigError(f"params must share one dtype; got {sorted(dtypes)} "
                              f"({key} is {a.dtype})")
        raise ConfigError(f"{label} has dtype {a.dtype} but the parameters are {dtype}; "
                          f"cast it with .astype('{dtype}')")
