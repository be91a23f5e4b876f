"""Gradient-norm clipping (Pascanu, Mikolov & Bengio 2013).

A function the trainer calls between the loss and the optimizer step; never part of a loss.
"""
from __future__ import annotations

import math

from .. import params as P


def clip_grad_norm(grads: dict, max_norm: float | None) -> float:
    """Scale ``grads`` in place so their global norm is at most ``max_norm``.

    Returns the norm *before* clipping (a host float; may be inf or nan, which the trainer
    checks). ``max_norm=None`` only measures.
    """
    norm = P.global_norm(grads)
    # a non-finite norm is left for the trainer to report; scaling by max_norm / inf would turn
    # the gradients into NaNs (and warn)
    if max_norm is not None and math.isfinite(norm) and norm > max_norm:
        factor = max_norm / norm
        for g in grads.values():
            g *= factor
    return norm
