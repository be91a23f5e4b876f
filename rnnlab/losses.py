"""Losses (value, gradient and Gauss-Newton curvature) and metrics.

Shapes: ``outputs : (..., K)``, where the leading dimensions are the scored positions, e.g.
(B,) for an output at the last step or (T, B) for outputs at every step. ``mask``, if given, has
the leading shape and holds 1 at the positions that count and 0 elsewhere; ``count`` is the
number of positions that count (all of them without a mask).

Normalisations (the same in the value, the gradient and the curvature):

- :class:`MSE` divides the sum of squared errors by ``count * K``: the mean over scored
  positions *and* output components;
- :class:`SoftmaxCrossEntropy` divides the sum of per-position cross-entropies (nats) by
  ``count``: the mean over scored positions.

A loss is an object (:class:`Loss`) with

- ``value_and_grad(outputs, targets, mask=None) -> (value, d_outputs)``: the loss as a Python
  float and its gradient with respect to ``outputs`` (same shape and dtype as ``outputs``);
  calling the loss, ``loss(outputs, targets, mask)``, does the same;
- ``gn_product(outputs, targets, mask, r_outputs) -> H r``: the product of the loss's Hessian
  with respect to the outputs, H = d^2 loss / d outputs^2, with ``r_outputs`` (same shape as
  outputs). This is the output curvature of the Gauss-Newton matrix G = J^T H J (J the Jacobian
  of the outputs with respect to the parameters; see
  :func:`rnnlab.objective.gauss_newton_product`). Both losses are convex in their outputs, so H,
  and with it G, is positive semi-definite.

The module-level instances :data:`mse` and :data:`softmax_cross_entropy` are what the rest of
rnnlab uses; :data:`LOSSES` maps the names the CLI accepts to them.
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


def _check_direction(outputs, r_outputs):
    validate.float_array("r_outputs", r_outputs, shape=tuple(outputs.shape), finite=False)
    if r_outputs.dtype != outputs.dtype:
        raise ConfigError(f"r_outputs must have the outputs' dtype {outputs.dtype}; "
                          f"got {r_outputs.dtype}")


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


class Loss:
    """A loss on a model's outputs: its value, gradient and Gauss-Newton output curvature.

    Subclasses set :attr:`name` and implement :meth:`value_and_grad` and :meth:`gn_product`.
    Calling the object is :meth:`value_and_grad`.
    """

    name = "loss"

    def value_and_grad(self, outputs, targets, mask=None):
        """``(value, d_outputs)``: the loss (a Python float) and its gradient with respect to
        ``outputs`` (same shape and dtype)."""
        raise NotImplementedError

    def gn_product(self, outputs, targets, mask, r_outputs):
        """``H r``: the Hessian of the loss with respect to ``outputs`` times ``r_outputs``
        (same shape as ``outputs``); zero at masked positions."""
        raise NotImplementedError

    def __call__(self, outputs, targets, mask=None):
        return self.value_and_grad(outputs, targets, mask)

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSE(Loss):
    """Mean squared error with linear outputs, normalised by (scored positions x K).

    value = sum(mask * (outputs - targets)**2) / (count * K), with ``count`` the number of
    scored positions and K = ``outputs.shape[-1]``; d_outputs = 2 mask (outputs - targets) /
    (count * K); output Hessian H = 2 / (count * K) * diag(mask), a constant.
    """

    name = "mse"

    def value_and_grad(self, outputs, targets, mask=None):
        """Value and gradient.

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

    def gn_product(self, outputs, targets, mask, r_outputs):
        """The output Hessian times ``r_outputs``: 2 / (count * K) * mask * r.

        Parameters
        ----------
        outputs : (..., K)
            Only their shape and dtype matter (the curvature of MSE is constant).
        targets : (..., K)
            Unused (the curvature does not depend on them); kept so all losses share one
            signature.
        mask : leading shape of outputs, or None
        r_outputs : (..., K), same shape and dtype as outputs

        Returns
        -------
        (..., K)
        """
        validate.float_array("outputs", outputs, finite=False)
        _check_direction(outputs, r_outputs)
        mask, count = _mask_and_count("mse", outputs, mask)
        out = r_outputs * (2.0 / (count * outputs.shape[-1]))
        if mask is not None:
            out *= mask[..., None]
        return out


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy on logits with integer class targets, normalised by the number of
    scored positions.

    value = sum over scored positions of -log softmax(logits)[target], divided by ``count``
    (nats); d_logits = (p - one_hot(targets)) * mask / count with p = softmax(logits); output
    Hessian per position (diag(p) - p p^T) * mask / count, independent of the targets.
    """

    name = "cross_entropy"

    def value_and_grad(self, logits, targets, mask=None):
        """Value and gradient.

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
        # -log softmax[target] = log Z - s[target] and softmax = exp(s) / Z. The target entries
        # are read and updated by integer indexing, not through a (..., K) one-hot array.
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

    def gn_product(self, logits, targets, mask, r_outputs):
        """The output Hessian times ``r_outputs``: (p * r - p * sum_k(p * r)) * mask / count,
        with p = softmax(logits) (stable: the row maximum is subtracted first).

        Parameters
        ----------
        logits : (..., K)
        targets : integer array with the leading shape of logits
            Unused (the Hessian of cross-entropy on logits does not depend on them); kept so
            all losses share one signature.
        mask : leading shape of logits, or None
        r_outputs : (..., K), same shape and dtype as logits

        Returns
        -------
        (..., K)
        """
        xp = backend.get_xp()
        validate.float_array("logits", logits, finite=False)
        _check_direction(logits, r_outputs)
        mask, count = _mask_and_count("softmax_cross_entropy", logits, mask)
        p = xp.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        pr = p * r_outputs
        out = pr - p * pr.sum(axis=-1, keepdims=True)
        if mask is not None:
            out *= mask[..., None]
        out /= count
        return out


#: Mean squared error (:class:`MSE`); ``mse(outputs, targets, mask) -> (value, d_outputs)``.
mse = MSE()
#: Softmax cross-entropy (:class:`SoftmaxCrossEntropy`);
#: ``softmax_cross_entropy(logits, targets, mask) -> (value, d_logits)``.
softmax_cross_entropy = SoftmaxCrossEntropy()


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


LOSSES = {loss.name: loss for loss in (mse, softmax_cross_entropy)}


def get_loss(name: str) -> Loss:
    """The loss called ``name`` (one of :data:`LOSSES`: ``"mse"``, ``"cross_entropy"``)."""
    validate.choice("loss", name, tuple(LOSSES))
    return LOSSES[name]
