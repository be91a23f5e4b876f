"""The adding problem (Hochreiter & Schmidhuber 1997) in the form of Le et al. 2015.

Each sequence has T steps and two input channels: channel 0 holds values U[0, 1], channel 1 is a
marker that is 1 at exactly two steps, one drawn uniformly from [0, T/2) and one from [T/2, T),
and 0 elsewhere. The target, read at the last step, is the sum of the two marked values; the
loss is the squared error at the last step (``../shared/notes/tasks.md`` section 1.1, the
[uRNN]/Le et al. version used by ``path-sgd-relu-rnn.md`` Table 2).

Predicting the constant 1 (the mean of the sum) gives MSE = Var(U1 + U2) = 2/12 = 1/6 ~ 0.167,
the chance level that learning curves are read against.

Solved: held-out MSE < 0.01 (:attr:`AddingProblem.threshold`), 6 % of the chance level; the
sum is then read off to about +-0.1. ``path-sgd-relu-rnn.md`` Table 2 prints MSE x 100 rounded
to an integer, so its "0" is an MSE below 0.005, stricter than this; sweeps report the MSE
itself beside the threshold.
"""
from __future__ import annotations

import numpy as np

from .. import backend, validate
from ..losses import mse
from ..options import Option
from .base import Task


class AddingProblem(Task):
    """Adding problem of length ``T`` (T >= 2).

    ``batch(rng, B)`` returns ``x : (T, B, 2)``, ``targets : (B, 1)`` and ``mask = None``.
    """

    name = "adding"
    loss = "mse"
    n_in = 2
    n_out = 1
    outputs = "last"
    metric_name = "mse"
    threshold = 0.01
    options = (Option.integer("T", 100, "sequence length", minimum=2),)

    def __init__(self, T: int, dtype=None):
        self.T = validate.positive_int("T", T, minimum=2)
        self.dtype = backend.resolve_dtype(dtype)

    def __repr__(self):
        return f"AddingProblem(T={self.T})"

    def batch(self, rng, batch_size: int):
        """One batch drawn on the host with ``rng`` (a ``numpy.random.Generator``), moved to the
        active backend once."""
        B = validate.positive_int("batch_size", batch_size)
        T, half = self.T, self.T // 2
        values = rng.random((T, B), dtype=self.dtype)
        first = rng.integers(0, half, size=B)
        second = rng.integers(half, T, size=B)
        columns = np.arange(B)
        x = np.zeros((T, B, 2), dtype=self.dtype)
        x[..., 0] = values
        x[first, columns, 1] = 1
        x[second, columns, 1] = 1
        targets = (values[first, columns] + values[second, columns])[:, None]
        return backend.to_device(x), backend.to_device(targets), None

    def metric(self, outputs, targets, mask=None) -> dict:
        return {"mse": mse(outputs, targets, mask)[0]}

    def baseline(self) -> dict:
        return {"mse": 1.0 / 6.0}
