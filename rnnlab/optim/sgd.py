"""Stochastic gradient descent with optional (Nesterov) momentum."""
from __future__ import annotations

from ..errors import ConfigError
from ..options import Option
from .base import Optimizer


class SGD(Optimizer):
    """p <- p - lr * d, with d = g (plain), v (momentum) or g + momentum * v (Nesterov),
    where v <- momentum * v + g (the PyTorch convention; no dampening).

    Options: ``lr`` (> 0, default 0.01), ``momentum`` (in [0, 1), default 0), ``nesterov``
    (default False; needs momentum > 0).
    """

    name = "sgd"
    options = (
        Option.number("lr", 0.01, "learning rate", minimum=0),
        Option.number("momentum", 0.0, "momentum, in [0, 1)", minimum=0, inclusive=True,
                      below=1),
        Option.flag("nesterov", False, "Nesterov momentum (needs momentum > 0)"),
    )

    def _validate(self, hp):
        if hp["nesterov"] and hp["momentum"] == 0:
            raise ConfigError("nesterov=True needs momentum > 0")

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
