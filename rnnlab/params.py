"""Parameters as a plain, ordered, named mapping, and the few operations every consumer needs.

A model's parameters are a ``dict`` whose keys encode layer and role (``"layer1.W_in"``,
``"layer1.W_rec"``, ``"layer1.b"``, ``"out.W"``, ``"out.b"``) in a fixed order; gradients use the
same keys. Path graphs, optimizers, checkpoints and the gradient checker walk this mapping.

One flatten serves everyone: :func:`flatten` concatenates the arrays in order (entries of each
array in C order) and returns the inverse; :func:`unflatten` rebuilds a dict from a vector and a
layout; :func:`host_vector` is the float64 host vector the path-geometry code works with. A
*layout* is a mapping name -> shape, or a model spec (its ``param_shapes()``, which fixes the
order); without one the order is that of the dict itself.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .errors import ConfigError


def layout(shapes) -> list:
    """``[(name, shape, start, stop)]``: where each array lies in the flat vector, for a mapping
    name -> shape or a spec with ``param_shapes()`` (arrays in that order, entries in C order)."""
    if hasattr(shapes, "param_shapes"):
        shapes = shapes.param_shapes()
    out, start = [], 0
    for name, shape in shapes.items():
        shape = tuple(int(n) for n in shape)
        stop = start + math.prod(shape)
        out.append((name, shape, start, stop))
        start = stop
    return out


def _arrays(params: dict, where, host: bool) -> list:
    """The arrays of ``params`` in ``layout`` order, checked against it (float64 host copies of
    the values when ``host``)."""
    names = [name for name, *_ in where]
    if list(params) != names:
        raise ConfigError(f"params must have the keys {names} in that order; got {list(params)}")
    out = []
    for name, shape, _, _ in where:
        a = params[name]
        if host:
            a = np.asarray(backend.to_host(a), dtype=np.float64)
        if tuple(a.shape) != shape:
            raise ConfigError(f"{name} must have shape {shape}; got {tuple(a.shape)}")
        out.append(a)
    return out


def _check_vector(vec, where):
    size = where[-1][3] if where else 0
    if tuple(vec.shape) != (size,):
        raise ConfigError(f"a flat parameter vector must have shape ({size},); got "
                          f"{tuple(vec.shape)}")
    return vec


def _split(vec, where, host: bool) -> dict:
    """The inverse of concatenation: a dict of the arrays of ``where`` cut from ``vec`` (views of a
    backend vector; float64 host copies when ``host``)."""
    if host:
        vec = np.asarray(backend.to_host(vec), dtype=np.float64)
    _check_vector(vec, where)
    out = {}
    for name, shape, start, stop in where:
        part = vec[start:stop].reshape(shape)
        out[name] = part.copy() if host else part
    return out


def flatten(params: dict, shapes=None, *, host: bool = False):
    """Concatenate all parameters into one 1-D array.

    Parameters
    ----------
    params : dict name -> array
    shapes : mapping name -> shape, or a model spec, optional
        The layout to follow and check (keys in that order, each array of that shape). Default:
        the dict's own keys, order and shapes.
    host : bool
        ``True``: a float64 NumPy vector whatever the backend, and ``unflatten`` returns float64
        host copies. ``False``: a vector on the active backend in the arrays' dtype, and
        ``unflatten`` returns views of the vector it is given.

    Returns
    -------
    vector : (m,)
    unflatten : callable
        ``unflatten(vector)`` rebuilds a new dict with the same keys, shapes and order (used by the
        gradient checker, curvature solvers and checkpoints).
    """
    if shapes is None:
        shapes = {k: tuple(v.shape) for k, v in params.items()}
    where = layout(shapes)
    arrays = _arrays(params, where, host)
    if host:
        vector = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    else:
        xp = backend.get_xp()
        vector = xp.concatenate([xp.ravel(a) for a in arrays]) if arrays else xp.zeros(0)

    def unflatten(vec):
        return _split(vec, where, host)

    return vector, unflatten


def unflatten(vector, shapes, *, host: bool = False) -> dict:
    """The dict of ``shapes``' arrays cut from an (m,) ``vector`` (the inverse of
    :func:`flatten` with the same layout): views of a backend vector, or float64 host copies
    with ``host=True``."""
    return _split(vector, layout(shapes), host)


def host_vector(params, shapes) -> np.ndarray:
    """``params`` as one float64 host vector in the order of ``shapes``.

    ``params`` is a dict (host or device arrays, checked against the layout) or an already flat
    vector of the right length (returned as a float64 host array).
    """
    if isinstance(params, dict):
        return flatten(params, shapes, host=True)[0]
    return _check_vector(np.asarray(backend.to_host(params), dtype=np.float64), layout(shapes))


def zeros_like(params: dict) -> dict:
    """A dict of zero arrays with the keys, shapes and dtypes of ``params``."""
    xp = backend.get_xp()
    return {k: xp.zeros_like(v) for k, v in params.items()}


def global_norm(grads: dict) -> float:
    """The Euclidean norm of all arrays in ``grads`` taken together (a host float)."""
    xp = backend.get_xp()
    total = sum(xp.vdot(g, g) for g in grads.values())
    return float(xp.sqrt(total))
