"""Adam (Kingma & Ba 2015) with bias correction."""
from __future__ import annotations

import math

from .. import backend
from ..options import Option
from .base import Optimizer


class Adam(Optimizer):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr * (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps) at step k.

    Options: ``lr`` (> 0, default 1e-3), ``beta1``, ``beta2`` (in [0, 1), defaults 0.9 and
    0.999), ``eps`` (> 0, default 1e-8).
    """

    name = "adam"
    options = (
        Option.number("lr", 1e-3, "learning rate", minimum=0),
        Option.number("beta1", 0.9, "first-moment decay, in [0, 1)", minimum=0, inclusive=True,
                      below=1),
        Option.number("beta2", 0.999, "second-moment decay, in [0, 1)", minimum=0,
                      inclusive=True, below=1),
        Option.number("eps", 1e-8, "denominator guard", minimum=0),
    )

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
