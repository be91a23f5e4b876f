"""A model, a loss and a batch turned into the objective value and its gradient.

This is the unit every consumer shares: the trainer's step, the gradient checker's closures, and
optimizers that re-evaluate the loss (PSGD's second gradient, Hessian-free's loss closure).
"""
from __future__ import annotations


def loss_value(model, params, x, targets, loss, mask=None, state=None) -> float:
    """The loss of ``model`` at ``params`` on one batch.

    Parameters
    ----------
    model : a model with ``forward(params, x, state)`` (e.g. :class:`rnnlab.models.ElmanRNN`)
    x : (T, B, n_in)
    targets, mask : as the loss expects for the model's outputs
    loss : callable ``loss(outputs, targets, mask) -> (value, d_outputs)``
    state : list of (B, H_i), optional initial hidden state
    """
    y, _ = model.forward(params, x, state)
    return loss(y, targets, mask)[0]


def loss_and_grads(model, params, x, targets, loss, mask=None, state=None):
    """The loss, its gradient with respect to ``params`` (BPTT), and the forward cache.

    Returns ``(value, grads, cache)``; ``cache.final_state`` is the hidden state to carry into the
    next chunk in truncated BPTT (the gradient does not flow through it).
    """
    y, cache = model.forward(params, x, state)
    value, dy = loss(y, targets, mask)
    grads, _ = model.backward(params, dy, cache)
    return value, grads, cache
