"""Optimizers behind one interface (:class:`Optimizer`), built by name, and gradient clipping.

:data:`OPTIMIZERS` is the registry; a new optimizer is a new module whose class declares
``options`` and ``needs`` plus one ``OPTIMIZERS.register(name, Class)`` line.
"""
from .adam import Adam
from .base import NEEDS, OPTIMIZERS, Optimizer
from .clip import clip_grad_norm
from .gsgd import GSGD
from .hessian_free import HessianFree
from .path_sgd import PathAdam, PathSGD
from .psgd import PSGD
from .sgd import SGD

# The registry: one line per optimizer, in the order help texts list them.
OPTIMIZERS.register("sgd", SGD)
OPTIMIZERS.register("adam", Adam)
OPTIMIZERS.register("path-sgd", PathSGD)
OPTIMIZERS.register("path-adam", PathAdam)
OPTIMIZERS.register("gsgd", GSGD)
OPTIMIZERS.register("hf", HessianFree)
OPTIMIZERS.register("psgd", PSGD)


def make_optimizer(name: str, **hyperparameters) -> Optimizer:
    """The optimizer called ``name`` (one of :data:`OPTIMIZERS`) with the given options."""
    return OPTIMIZERS.get(name)(**hyperparameters)


__all__ = ["Adam", "GSGD", "HessianFree", "NEEDS", "OPTIMIZERS", "Optimizer", "PathAdam",
           "PathSGD", "PSGD", "SGD", "clip_grad_norm", "make_optimizer"]
