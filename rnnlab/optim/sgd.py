"""Stochastic gradient descent with optional (Nesterov) momentum."""
from __future__ import annotations

from .. import validate
from ..errors import ConfigError
from .base import Optimizer


class SGD(Optimizer):
    """p <- p - lr * d, with d = g (plain), v (momentum) or g + momentum * v (Nesterov),
    where v <- momentum * v + g (the PyTorch convention; no dampening).

    Parameters
    ----------
    lr : float > 0
    momentum : float in [0, 1)
    nesterov : bool, needs momentum > 0
    """

    name = "sgd"

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        lr = validate.positive_float("lr", lr)
        momentum = validate.positive_float("momentum", momentum, allow_zero=True)
        if momentum >= 1:
            raise ConfigError(f"momentum must be in [0, 1); got {momentum}")
        if nesterov and momentum == 0:
            raise ConfigError("nesterov=True needs momentum > 0")
        super().__init__(lr=lr, momentum=momentum, nesterov=bool(nesterov))

    def _update(self, params, grads, **needs):
        lr, mu = self.hyperparameters["lr"], self.hyperparameters["momentum"]
        for name, p in params.items():
            g = grads[name]
            if mu == 0:
                p -= lr * g
                continue
            v = self._slot("velocity", name, p)
            v *= mu
            v += g
            if self.hyperparameters["nesterov"]:
                p -= lr * (g + mu * v)
            else:
                p -= lr * v
