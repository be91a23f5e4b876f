"""Losses (value and gradient) and metrics.

Shapes: ``outputs : (..., K)``, where the leading dimensions are the scored positions, e.g.
(B,) for an output at the last step or (T, B) for outputs at every step. ``mask``, if given, has
the leading shape and holds 1 at the positions that count and 0 elsewhere; averages are taken
over the positions that count.

Every loss returns ``(value, d_outputs)``: the mean loss as a Python float and its gradient with
respect to ``outputs`` (same shape and dtype as ``outputs``).
"""
from __future__ import annotations

import math

from . import backend, validate
from .errors import ConfigError


def _mask_and_count(name, outputs, mask):
    """The mask as a float array of the leading shape (None when not given: every position
    counts) and the number of positions that count."""
    lead = tuple(outputs.shape[:-1])
    if mask is None:
        return None, math.prod(lead)
    if tuple(mask.shape) != lead:
        raise ConfigError(f"mask must have shape {lead} (the outputs' leading shape); "
                          f"got {tuple(mask.shape)}")
    mask = mask.astype(outputs.dtype, copy=False)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ConfigError("mask must hold only 0 and 1")
    count = float(mask.sum())
    if count == 0:
        raise ConfigError(f"mask selects no position to score in {name}")
    return mask, count


def mse(outputs, targets, mask=None):
    """Mean squared error over scored positions and output components.

    Parameters
    ----------
    outputs : (..., K)
    targets : (..., K), same shape as outputs
    mask : leading shape of outputs, optional

    Returns
    -------
    value : float
        sum(mask * (outputs - targets)**2) / (number of scored positions * K)
    d_outputs : (..., K)
    """
    validate.float_array("outputs", outputs, finite=False)
    validate.float_array("targets", targets, shape=tuple(outputs.shape))
    mask, count = _mask_and_count("mse", outputs, mask)
    diff = outputs - targets.astype(outputs.dtype, copy=False)
    if mask is not None:
        diff *= mask[..., None]
    denom = count * outputs.shape[-1]
    value = float((diff * diff).sum()) / denom
    return value, diff * (2.0 / denom)


def log_softmax(logits):
    """log softmax over the last axis, stable (the row maximum is subtracted first)."""
    xp = backend.get_xp()
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def _check_targets(logits, targets):
    xp = backend.get_xp()
    lead = tuple(logits.shape[:-1])
    if not isinstance(targets, xp.ndarray) or targets.dtype.kind not in "iu":
        raise ConfigError(f"targets must be an integer array of class indices with shape {lead}")
    if tuple(targets.shape) != lead:
        raise ConfigError(f"targets must have shape {lead}; got {tuple(targets.shape)}")
    k = logits.shape[-1]
    if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= k):
        raise ConfigError(f"targets must be class indices in [0, {k - 1}]")


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean softmax cross-entropy (in nats) over scored positions.

    Parameters
    ----------
    logits : (..., K)
    targets : integer array with the leading shape of logits, values in [0, K)
    mask : leading shape of logits, optional

    Returns
    -------
    value : float
    d_logits : (..., K)
        (softmax(logits) - one_hot(targets)) * mask / count
    """
    xp = backend.get_xp()
    validate.float_array("logits", logits, finite=False)
    _check_targets(logits, targets)
    mask, count = _mask_and_count("softmax_cross_entropy", logits, mask)
    # One exp pass serves both results: with s = logits - rowmax and Z = sum(exp(s)),
    # -log softmax[target] = log Z - s[target] and softmax = exp(s) / Z. The target entries are
    # read and updated by integer indexing, not through a (..., K) one-hot array.
    k = logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    d = xp.exp(shifted)
    total = d.sum(axis=-1, keepdims=True)
    d /= total
    rows, cols = xp.arange(targets.size), targets.reshape(-1)
    nll = xp.log(total[..., 0]) - shifted.reshape(-1, k)[rows, cols].reshape(targets.shape)
    d.reshape(-1, k)[rows, cols] -= 1  # d is contiguous, so the reshape is a view
    if mask is not None:
        nll = nll * mask
        d *= mask[..., None]
    d /= count
    return float(nll.sum()) / count, d


def error_rate(logits, targets, mask=None) -> float:
    """Fraction of scored positions whose arg-max class differs from the target."""
    _check_targets(logits, targets)
    mask, count = _mask_and_count("error_rate", logits, mask)
    wrong = (logits.argmax(axis=-1) != targets).astype(logits.dtype)
    if mask is not None:
        wrong = wrong * mask
    return float(wrong.sum()) / count


def bits_per_character(cross_entropy_nats: float) -> float:
    """Convert a mean cross-entropy in nats per character into bits per character."""
    return cross_entropy_nats / math.log(2.0)


LOSSES = {"mse": mse, "cross_entropy": softmax_cross_entropy}


def get_loss(name: str):
    """The loss function called ``name`` (one of :data:`LOSSES`)."""
    validate.choice("loss", name, tuple(LOSSES))
    return LOSSES[name]
