"""Optimizers behind one interface (:class:`Optimizer`), built by name, and gradient clipping.

:data:`OPTIMIZERS` is the registry; a new optimizer is a new module whose class declares
``options`` and ``needs`` plus one ``OPTIMIZERS.register(name, Class)`` line.
"""
from .adam import Adam
from .base import NEEDS, OPTIMIZERS, Optimizer
from .clip import clip_grad_norm
from .sgd import SGD

# The registry: one line per optimizer, in the order help texts list them.
OPTIMIZERS.register("sgd", SGD)
OPTIMIZERS.register("adam", Adam)


def make_optimizer(name: str, **hyperparameters) -> Optimizer:
    """The optimizer called ``name`` (one of :data:`OPTIMIZERS`) with the given options."""
    return OPTIMIZERS.get(name)(**hyperparameters)


__all__ = ["Adam", "NEEDS", "OPTIMIZERS", "Optimizer", "SGD", "clip_grad_norm",
           "make_optimizer"]
