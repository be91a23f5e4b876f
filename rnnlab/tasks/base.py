"""The task protocol: what the trainer, the CLI and comparisons need from a problem.

A task has a ``name``, the model shape it asks for (``n_in``, ``n_out``, ``outputs``), the name
of its ``loss``, and:

``batch(rng, B) -> (x, targets, mask)``
    ``x : (T, B, n_in)`` on the active backend, drawn with ``rng`` (a backend generator);
    ``mask`` is None or has the outputs' leading shape.
``eval_set(n, seed) -> (x, targets, mask)``
    A fixed held-out set (the same for the same ``n`` and ``seed``).
``metric(outputs, targets, mask) -> dict``
    Named scalar metrics (the loss always among them).
``baseline() -> dict``
    What a trivial predictor scores, to read learning curves against.
"""
from __future__ import annotations

from .. import backend


class Task:
    """Base class with the shared ``eval_set``; subclasses implement ``batch`` and ``metric``."""

    name = "task"
    loss = "mse"
    n_in = 1
    n_out = 1
    outputs = "last"

    def batch(self, rng, batch_size: int):
        raise NotImplementedError

    def eval_set(self, n: int = 1000, seed: int = 0):
        """``n`` held-out sequences, the same for the same ``n`` and ``seed``."""
        return self.batch(backend.rng(backend.derive_seed(seed, 0xE7A1)), n)

    def metric(self, outputs, targets, mask=None) -> dict:
        raise NotImplementedError

    def baseline(self) -> dict:
        raise NotImplementedError
