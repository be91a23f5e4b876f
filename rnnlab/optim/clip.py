"""Gradient-norm clipping (Pascanu, Mikolov & Bengio 2013).

A function the trainer calls between the loss and the optimizer step; never part of a loss.
"""
from __future__ import annotations

import math
import numbers

from .. import params as P
from ..errors import ConfigError


def clip_grad_norm(grads: dict, max_norm: float | None) -> float:
    """Scale ``grads`` in place so their global norm is at most ``max_norm``.

    Returns the norm *before* clipping (a host float; may be inf or nan, which the trainer
    checks). ``max_norm`` is a finite number > 0, or None to only measure (the trainer passes
    ``clip or None``: its ``clip = 0`` means no clipping).
    """
    if max_norm is not None:
        if (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
                or not math.isfinite(max_norm) or max_norm <= 0):
            raise ConfigError(f"max_norm must be a finite number > 0, or None to only measure; "
                              f"got {max_norm!r}")
        max_norm = float(max_norm)
    norm = P.global_norm(grads)
    # a non-finite norm is left for the trainer to report; scaling by max_norm / inf would turn
    # the gradients into NaNs (and warn)
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        factor = max_norm / norm
        for g in grads.values():
            g *= factor
    return norm
