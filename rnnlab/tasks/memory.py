"""The memory tasks of the NRU paper (``nru.md``, "Copying Memory Task" and "Denoising Task";
``shared/notes/tasks.md`` sections 2-4): copying, variable copying and denoising.

Shared by all three (``tasks.md`` sections 2 and 4):

- Alphabet of 10 symbols, one-hot inputs (``n_in = 10``): 0 = blank (the "noise" symbol of
  denoising), 1..8 = the n = 8 data symbols, 9 = the "start recall" marker. Outputs are 9
  classes (``n_out = 9``: blank and the data symbols; the marker is never a target), trained
  with softmax cross-entropy in nats. Each sequence holds k = 10 data symbols drawn iid uniform
  from 1..8 (with replacement, [NRU]).
- Metrics (:meth:`_RecallTask.metric`): ``xent``, the loss over the scored steps (every step
  for copying and variable copying, the 10 answer steps for denoising), which learning curves
  show (``metric_name``); ``accuracy``, the fraction of the 10 recall steps (those whose target
  is a data symbol) whose arg-max is the target (non-finite logits count as wrong); and
  ``recall_error = 1 - accuracy``.
- ``baseline()``: the scores of the best predictor without memory of the data symbols that
  knows where the recall steps are: certain of the blank targets, uniform over the 8 data
  symbols at the 10 recall steps. Its cross-entropy is ``10 ln 8`` over the scored steps,
  computed from each task's layout by :meth:`_RecallTask.baseline`; its arg-max is right with
  probability 1/8 (accuracy 1/8, recall error 7/8).
- ``threshold``: the sources define none ([NRU] reads "solved" off the curves). rnnlab's choice
  **[rnnlab default]**: ``xent`` below a tenth of the memoryless baseline.
- Sequences have ``T + 20`` (copying) or ``T + 11`` (denoising) steps, not ``T``: the option
  ``T`` is the papers' lag; :attr:`_RecallTask.length` is the number of steps.

Shapes: ``x : (L, B, 10)`` in the task's dtype (the training dtype by default), ``targets :
(L, B)`` int64 class indices, ``mask : (L, B)`` in the task's dtype or None, ``L`` =
:attr:`_RecallTask.length`. Draws happen on the host with the caller's
``numpy.random.Generator`` and are moved to the active backend once, so a seed gives the same
batch on NumPy and CuPy.

Paper vs code: [NRU]'s text prints the copying baseline as ``k ln n / (T + 2n)``; with n = 8
that is ``T + 16``, a typo for ``T + 20`` (the sequence length): its own Figure 1 caption
(0.17 for T = 100, 0.09 for T = 200) and the [EUNN] code use ``T + 20``, and so does
:class:`Copying`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, validate
from ..errors import ConfigError
from ..losses import softmax_cross_entropy
from ..options import Option
from .base import Task
from .pathological import _argmax_wrong, _one_hot

BLANK = 0
MARKER = 9
N_DATA = 8      # n: data symbols 1..8
K = 10          # k: data symbols per sequence
N_SYMBOLS = 10  # input alphabet: blank, 8 data symbols, marker
N_CLASSES = 9   # output classes: blank and the data symbols


class _RecallTask(Task):
    """Shared construction, metric and baseline (not registered)."""

    loss = "cross_entropy"
    n_in = N_SYMBOLS
    n_out = N_CLASSES
    outputs = "every"
    metric_name = "xent"
    better = "lower"
    MIN_T = 1

    def __init__(self, T: int = 100, dtype=None):
        self.T = validate.positive_int("T", T, minimum=self.MIN_T)
        self.dtype = backend.resolve_dtype(dtype)

    def __repr__(self):
        return f"{type(self).__name__}(T={self.T})"

    @property
    def length(self) -> int:
        """The number of steps of every sequence."""
        raise NotImplementedError

    @property
    def scored_steps(self) -> int:
        """How many steps of a sequence the loss averages over."""
        return self.length

    @property
    def threshold(self) -> float:
        """Solved: ``xent`` below a tenth of the memoryless baseline (**[rnnlab default]**; the
        sources define no threshold)."""
        return 0.1 * self.baseline()["xent"]

    def _data(self, rng, B):
        """``(K, B)`` data symbols, iid uniform over 1..8."""
        return rng.integers(1, N_DATA + 1, size=(K, B))

    def _layout(self, rng, B):
        """``(ids, targets, mask)`` on the host: ``ids, targets : (L, B)`` int64 and ``mask``
        None or ``(L, B)`` 0/1."""
        raise NotImplementedError

    def batch(self, rng, batch_size: int):
        """``(x, targets, mask)`` drawn on the host with ``rng`` (a ``numpy.random.Generator``)
        and moved to the active backend once; ``x : (L, B, 10)``, ``targets : (L, B)`` int64,
        ``mask`` None or ``(L, B)`` in the task's dtype, ``L = self.length``."""
        B = validate.positive_int("batch_size", batch_size)
        ids, targets, mask = self._layout(rng, B)
        return (backend.to_device(_one_hot(ids, N_SYMBOLS, self.dtype)),
                backend.to_device(targets),
                None if mask is None else backend.to_device(mask.astype(self.dtype)))

    def _check_mask(self, mask):
        """Copying and variable copying score every step; a given mask restricts that."""

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"xent", "accuracy", "recall_error"}``.

        Parameters
        ----------
        outputs : (L, B, 9)
            Logits.
        targets : (L, B)
            Integer classes, as :meth:`batch` returns them.
        mask : (L, B), optional
            The scored steps (denoising's answer window; None for the other two).

        Returns
        -------
        dict
            ``xent``: mean cross-entropy (nats) over the scored steps; ``accuracy``: the
            fraction of recall steps (scored steps whose target is a data symbol, 10 per
            sequence) whose arg-max is the target; ``recall_error``: ``1 - accuracy``.
        """
        self._check_mask(mask)
        xent = softmax_cross_entropy(outputs, targets, mask)[0]  # checks shapes and the mask
        xp = backend.get_xp()
        # the data symbols are 1..8 and every other target is blank, so the recall steps are
        # the non-blank targets, whichever layout (and marker position) produced them
        recall = targets != BLANK
        if mask is not None:
            recall = recall & (mask > 0)
        count = float(recall.sum())
        if count == 0:
            raise ConfigError("targets hold no recall step (no data symbol) to score")
        right = recall & ~_argmax_wrong(xp, outputs, targets)
        accuracy = float(right.sum()) / count
        return {"xent": xent, "accuracy": accuracy, "recall_error": 1.0 - accuracy}

    def baseline(self) -> dict:
        """The best predictor without memory of the data that knows the recall steps: the blank
        targets cost 0 nats, each of the K recall steps ln 8 (uniform over the data symbols),
        averaged over the scored steps; its arg-max is right with probability 1/8."""
        return {"xent": K * math.log(N_DATA) / self.scored_steps,
                "accuracy": 1.0 / N_DATA, "recall_error": 1.0 - 1.0 / N_DATA}


def _length_option(minimum: int) -> Option:
    return Option.integer("T", 100, f"lag: blank steps between the data and the recall "
                                    f"(>= {minimum})", minimum=minimum)


class Copying(_RecallTask):
    """The copying memory task with a fixed lag ([uRNN], [NRU]; ``tasks.md`` section 2),
    registered as ``copying``.

    ``L = T + 20`` steps (T >= 1). Inputs: steps 0..9 the 10 data symbols, steps 10..T+8 blank
    (T - 1 steps), step T+9 the marker, steps T+10..T+19 blank. Targets: blank at steps
    0..T+9, the 10 data symbols at steps T+10..T+19. ``mask = None``, ``outputs = "every"``:
    the cross-entropy is averaged over all T + 20 steps and the batch.

    ``batch(rng, B)`` returns ``x : (T + 20, B, 10)``, ``targets : (T + 20, B)`` int64, None.

    Baseline: ``xent = 10 ln 8 / (T + 20)`` (0.173 for T = 100, 0.0945 for T = 200; [NRU]
    prints the denominator as ``T + 2n``, a typo, see the module docstring), accuracy 1/8.
    Threshold: a tenth of that (0.0173 for T = 100).
    """

    name = "copying"
    MIN_T = 1
    options = (_length_option(MIN_T),)

    @property
    def length(self) -> int:
        return self.T + 20

    def _layout(self, rng, B):
        T, data = self.T, self._data(rng, B)
        ids = np.full((self.length, B), BLANK, dtype=np.int64)
        ids[:K] = data
        ids[T + 9] = MARKER
        targets = np.full((self.length, B), BLANK, dtype=np.int64)
        targets[T + 10:] = data
        return ids, targets, None


class VariableCopying(_RecallTask):
    """Copying with a per-sequence marker position ([NRU] Figure 2, after Henaff et al. 2016;
    ``tasks.md`` section 3), registered as ``variable-copying``.

    ``L = T + 20`` steps (T >= 2). Each sequence draws ``loc`` uniform in ``[11, T + 10)``.
    Inputs: steps 0..9 the 10 data symbols, steps 10..loc-1 blank, step ``loc`` the marker,
    steps after it blank. Targets: the 10 data symbols at steps loc+1..loc+10, blank at every
    other step. ``mask = None``, ``outputs = "every"``: the loss is averaged over all T + 20
    steps. A model must wait for the marker instead of counting T steps, which a network that
    acts as a fixed clock, such as the EURNN, cannot do ([NRU]).

    ``batch(rng, B)`` returns ``x : (T + 20, B, 10)``, ``targets : (T + 20, B)`` int64, None.

    Generator: which one [NRU] used is **[unverified]** (``tasks.md`` section 3 and open item
    3). This is the per-sequence generator of Colin Raffel's toy problems as vendored in
    ``zmhammedi/Orthogonal_RNN`` (``copyingVariable``: ``loc`` drawn from ``range(11, T + 10)``
    for each sequence; there blank is symbol 8 and the data 0..7, a relabelling of ours).
    [myTorch] (NRU's framework) instead draws one lag per batch from ``[time_lag_min,
    time_lag_max]``; that variant is not offered.

    Baseline (derived for this layout, and checked in the tests by scoring the predictor
    through :meth:`metric`): a predictor without memory of the data that sees the marker is
    certain of every blank target and uniform over the 8 data symbols at the 10 steps after the
    marker, so ``xent = 10 ln 8 / (T + 20)`` as for :class:`Copying` (0.173 for T = 100),
    accuracy 1/8. (One that knows only the step index, not the marker, does worse: the sum over
    steps of the entropy of each step's target marginal, divided by T + 20, 0.448 for T = 100
    and 0.276 for T = 200.) Threshold: a tenth of the baseline.
    """

    name = "variable-copying"
    MIN_T = 2  # [11, T + 10) holds at least one position
    options = (_length_option(MIN_T),)

    @property
    def length(self) -> int:
        return self.T + 20

    @property
    def marker_range(self) -> tuple:
        """``[lo, hi)`` of the marker position ``loc``."""
        return 11, self.T + 10

    def _layout(self, rng, B):
        data = self._data(rng, B)
        loc = rng.integers(*self.marker_range, size=B)
        cols = np.arange(B)
        ids = np.full((self.length, B), BLANK, dtype=np.int64)
        ids[:K] = data
        ids[loc, cols] = MARKER
        targets = np.full((self.length, B), BLANK, dtype=np.int64)
        targets[loc[None, :] + 1 + np.arange(K)[:, None], cols[None, :]] = data
        return ids, targets, None


class Denoising(_RecallTask):
    """The denoising task ([NRU] after Jing et al. 2017; ``tasks.md`` section 4, the [myTorch]
    layout), registered as ``denoising``.

    ``L = T + 11`` steps (T >= 10). Inputs: steps 0..T-1 are noise (blank) except 10 distinct
    positions, chosen uniformly without replacement and sorted, which carry the 10 data symbols
    in order; step T the marker; steps T+1..T+10 blank. Targets: the 10 data symbols at steps
    T+1..T+10 (blank elsewhere, unscored). ``outputs = "masked"``: ``mask`` is 1 at the last 10
    steps only, so the loss and ``xent`` are means over the 10 answers.

    ``batch(rng, B)`` returns ``x : (T + 11, B, 10)``, ``targets : (T + 11, B)`` int64 and
    ``mask : (T + 11, B)`` in the task's dtype.

    Baseline: ``xent = ln 8`` (2.079; uniform over the data at each answer), accuracy 1/8.
    Threshold: a tenth of that (0.208).

    Ambiguity: [NRU]'s text says the symbols are "separated by random lengths of strings" of
    noise in a sequence of length T and does not say which steps are scored; the masked loss
    is the [myTorch] generator's (``tasks.md`` open item 3).
    """

    name = "denoising"
    outputs = "masked"
    MIN_T = K  # room for the 10 data positions among steps 0..T-1
    options = (_length_option(MIN_T),)

    @property
    def length(self) -> int:
        return self.T + 11

    @property
    def scored_steps(self) -> int:
        return K

    def _layout(self, rng, B):
        T, data = self.T, self._data(rng, B)
        # the first K entries of a uniform random permutation of 0..T-1 are a uniform K-subset
        positions = np.sort(np.argsort(rng.random((T, B)), axis=0)[:K], axis=0)
        ids = np.full((self.length, B), BLANK, dtype=np.int64)
        ids[positions, np.arange(B)[None, :]] = data
        ids[T] = MARKER
        targets = np.full((self.length, B), BLANK, dtype=np.int64)
        targets[T + 1:] = data
        mask = np.zeros((self.length, B))
        mask[T + 1:] = 1
        return ids, targets, mask

    def _check_mask(self, mask):
        if mask is None:
            raise ConfigError(f"task {self.name!r} scores the last {K} steps only: its metric "
                              "needs the (T + 11, B) mask that task.batch returns")


MEMORY_TASKS = {cls.name: cls for cls in (Copying, VariableCopying, Denoising)}
