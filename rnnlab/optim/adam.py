"""Adam (Kingma & Ba 2015) with bias correction."""
from __future__ import annotations

import math

from .. import backend, validate
from ..errors import ConfigError
from .base import Optimizer


class Adam(Optimizer):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr * (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps) at step k.

    Parameters
    ----------
    lr : float > 0
    beta1, beta2 : float in [0, 1)
    eps : float > 0
    """

    name = "adam"

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        lr = validate.positive_float("lr", lr)
        for key, beta in (("beta1", beta1), ("beta2", beta2)):
            validate.positive_float(key, beta, allow_zero=True)
            if beta >= 1:
                raise ConfigError(f"{key} must be in [0, 1); got {beta}")
        eps = validate.positive_float("eps", eps)
        super().__init__(lr=lr, beta1=float(beta1), beta2=float(beta2), eps=eps)

    def _update(self, params, grads, **needs):
        xp = backend.get_xp()
        hp = self.hyperparameters
        b1, b2, k = hp["beta1"], hp["beta2"], self.steps
        step_size = hp["lr"] * math.sqrt(1 - b2 ** k) / (1 - b1 ** k)
        eps_hat = hp["eps"] * math.sqrt(1 - b2 ** k)  # eps moved inside the bias correction
        for name, p in params.items():
            g = grads[name]
            m = self._slot("m", name, p)
            v = self._slot("v", name, p)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= step_size * m / (xp.sqrt(v) + eps_hat)
