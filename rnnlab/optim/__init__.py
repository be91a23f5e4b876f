"""Optimizers behind one interface (:class:`Optimizer`), and gradient clipping."""
from .. import validate
from .adam import Adam
from .base import Optimizer
from .clip import clip_grad_norm
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, **hyperparameters) -> Optimizer:
    """The optimizer called ``name`` (one of :data:`OPTIMIZERS`) with the given settings."""
    validate.choice("optimizer", name, tuple(OPTIMIZERS))
    return OPTIMIZERS[name](**hyperparameters)


__all__ = ["Adam", "OPTIMIZERS", "Optimizer", "SGD", "clip_grad_norm", "make_optimizer"]
