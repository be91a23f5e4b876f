"""The task protocol: what the trainer, the CLI and comparisons need from a problem.

A task has a ``name``, the model shape it asks for (``n_in``, ``n_out``, ``outputs``), the name
of its ``loss``, its ``options`` (a tuple of :class:`rnnlab.options.Option`, e.g. the length
``T``), and:

``batch(rng, B) -> (x, targets, mask)``
    ``x : (T, B, n_in)``; ``mask`` is None or has the outputs' leading shape. Drawn on the host
    with ``rng`` (a ``numpy.random.Generator``) and moved to the active backend once, so the
    same seed gives the same batch on NumPy and CuPy.
``eval_batches(n, seed, batch_size, split="validation") -> iterator of (x, targets, mask)``
    A fixed held-out set of ``n`` sequences (the same for the same ``n``, ``seed`` and
    ``batch_size``), in chunks of at most ``batch_size`` so that evaluation runs in bounded
    memory however large ``n`` is. ``split`` is "validation" (the curves, and what sweeps
    choose hyper-parameters on) or "test" (scored once, at the end of a run); a synthetic task
    draws both from its generator (the trainer gives each split a seed stream of its own), a
    dataset reads its own files.
``metric(outputs, targets, mask) -> dict``
    Named scalar means over the scored positions (the loss always among them).
``metric_name``, ``baseline()``, :meth:`Task.baseline_value`
    The metric curves and summaries read, what a trivial predictor scores on each metric, and
    that score for ``metric_name`` (None where the sources give none).
``threshold``, ``better``, :meth:`Task.solved`
    The value of ``metric_name`` that counts as solving the task (None where the sources define
    none) and whether lower or higher values are better; sweeps report "solved k/n" and the
    steps to the threshold from them.
``carries_state``
    True for streams (language modelling): the final recurrent state of one batch is the
    initial state of the next, in training and in evaluation, and is checkpointed. A stream's
    ``batch(rng, B, step)`` also takes the training step and returns the window that step
    reads, so a resumed run continues the stream where it stopped.
"""
from __future__ import annotations

import math

from .. import backend
from ..errors import ConfigError

SPLITS = ("validation", "test")


class Task:
    """Base class with the shared ``eval_batches``; subclasses implement ``batch``, ``metric``
    and ``baseline``."""

    name = "task"
    loss = "mse"
    n_in = 1
    n_out = 1
    outputs = "last"
    options: tuple = ()
    metric_name = "mse"
    threshold: float | None = None
    better = "lower"
    carries_state = False

    def batch(self, rng, batch_size: int):
        raise NotImplementedError

    def eval_batches(self, n: int = 1000, seed: int = 0, batch_size: int = 1000,
                     split: str = "validation"):
        """``n`` held-out sequences in chunks of at most ``batch_size`` (see the module
        docstring); drawn from a generator of their own, never the training stream. Both
        splits come from the generator here; the caller's ``seed`` tells them apart."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        rng = backend.host_rng(backend.derive_seed(seed, 0xE7A1))
        for start in range(0, n, batch_size):
            yield self.batch(rng, min(batch_size, n - start))

    def metric(self, outputs, targets, mask=None) -> dict:
        raise NotImplementedError

    def baseline(self) -> dict:
        raise NotImplementedError

    def solved(self, value) -> bool:
        """Whether a value of ``metric_name`` reaches :attr:`threshold` (False without one, or
        for a value that is not finite)."""
        if self.threshold is None or value is None or not math.isfinite(value):
            return False
        return value < self.threshold if self.better == "lower" else value > self.threshold

    def baseline_value(self) -> float | None:
        """The trivial predictor's score on ``metric_name`` (None if the task defines none)."""
        return self.baseline().get(self.metric_name)
