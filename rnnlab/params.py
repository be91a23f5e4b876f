"""Parameters as a plain, ordered, named mapping, and the few operations every consumer needs.

A model's parameters are a ``dict`` whose keys encode layer and role (``"layer1.W_in"``,
``"layer1.W_rec"``, ``"layer1.b"``, ``"out.W"``, ``"out.b"``) in a fixed order; gradients use the
same keys. Path graphs, optimizers, checkpoints and the gradient checker walk this mapping.
"""
from __future__ import annotations

import math

from . import backend


def flatten(params: dict):
    """Concatenate all parameters into one 1-D array.

    Returns ``(vector, unflatten)`` where ``unflatten(vector)`` rebuilds a new dict with the same
    keys, shapes and order (used by the gradient checker, curvature solvers and checkpoints).
    """
    xp = backend.get_xp()
    names = list(params)
    shapes = [tuple(params[k].shape) for k in names]
    sizes = [math.prod(s) for s in shapes]
    vector = xp.concatenate([xp.ravel(params[k]) for k in names]) if names else xp.zeros(0)

    def unflatten(vec):
        if vec.shape != (sum(sizes),):
            raise ValueError(f"vector must have shape ({sum(sizes)},); got {tuple(vec.shape)}")
        out, start = {}, 0
        for name, shape, size in zip(names, shapes, sizes):
            out[name] = vec[start:start + size].reshape(shape)
            start += size
        return out

    return vector, unflatten


def zeros_like(params: dict) -> dict:
    """A dict of zero arrays with the keys, shapes and dtypes of ``params``."""
    xp = backend.get_xp()
    return {k: xp.zeros_like(v) for k, v in params.items()}


def copy(params: dict) -> dict:
    """A deep copy of ``params`` (new arrays, same keys and order)."""
    return {k: v.copy() for k, v in params.items()}


def global_norm(grads: dict) -> float:
    """The Euclidean norm of all arrays in ``grads`` taken together (a host float)."""
    xp = backend.get_xp()
    total = sum(xp.vdot(g, g) for g in grads.values())
    return float(xp.sqrt(total))


def count(params: dict) -> int:
    """The number of scalar parameters."""
    return sum(int(v.size) for v in params.values())
