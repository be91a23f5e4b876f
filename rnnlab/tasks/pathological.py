"""The eight "pathological" long-memory problems (Hochreiter & Schmidhuber 1997; Martens &
Sutskever 2011; X.-L. Li 2016, ``psgd-rnn.md`` Section III-B and Tables I-II).

Four groups, every definition from ``shared/notes/tasks.md`` section 1 (cited below as "§1.x"):

- ``addition`` (:class:`Addition`): two marked reals U[0, 1); target their sum (§1.1);
- ``multiplication`` (:class:`Multiplication`): the same; target their product (§1.2);
- ``xor`` (:class:`Xor`): two marked bits; target their XOR (§1.3);
- ``order2`` (:class:`TemporalOrder2`): the order of two X/Y symbols among distractors (§1.4);
- ``order3`` (:class:`TemporalOrder3`): the order of three X/Y symbols (§1.5);
- ``permutation`` (:class:`RandomPermutation`): next-symbol prediction of iid symbols; the last
  target repeats the first symbol (§1.6);
- ``memory5`` (:class:`Memory5`): recall 5 binary symbols after T steps (§1.7);
- ``memory20`` (:class:`Memory20`): recall 10 symbols of 5 values after T steps (§1.8).

Common conventions (all §1.0):

- ``T`` is the nominal length; [PSGD] ran T in {30, 50, 100, 200} (``psgd-rnn.md`` Table I).
  Position ranges are defined for T = 100 and scaled by T/100 with ``int(x * T / 100)`` as the
  [MS11] sample script does (computed here in exact integer arithmetic, ``x * T // 100``).
- The five problems of groups 1-2 have variable lengths: each sequence's length ``L`` is an
  integer uniform in ``[T, T_max)`` with ``T_max = int(1.1 T)``; a batch is padded to the
  longest possible length ``max_length = T_max - 1`` (steps ``L .. max_length - 1`` are all-zero
  input), ``outputs = "masked"``, and the (max_length, B) 0/1 mask is 1 at exactly one step per
  sequence, its last real step ``L - 1``. Targets at unscored steps are 0 (ignored by the loss).
- Random permutation and the memorisation problems have the fixed length ``L = T``, outputs at
  ``"every"`` step and no mask (every step is scored by the loss).
- ``metric_name = "error"``: the per-sequence zero-one error rate (a sequence is right iff
  every one of its scored steps is right: ``|y_hat - y| < 0.04`` for real outputs, arg-max for
  softmax outputs; random permutation judges its last step only). ``metric`` also reports
  ``loss`` (the training loss over the scored steps). ``threshold = 0.01``: solved = error
  below 1 %, the **[rnnlab default]** of §1.0 (the sources do not state theirs).
- ``baseline()`` gives ``error`` and ``loss`` of the best predictor that has no memory of the
  informative inputs (derived in closed form; each class says how).

Draws happen on the host with the caller's ``numpy.random.Generator`` and are moved to the
active backend once (:func:`rnnlab.backend.to_device`), so a seed gives the same batch on NumPy
and CuPy. ``x`` and real targets have the task's dtype (the training dtype by default); class
targets are int64; masks have the task's dtype and hold 0 and 1.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, validate
from ..errors import ConfigError
from ..losses import mse, softmax_cross_entropy
from ..options import Option
from .base import Task

#: The zero-one criterion for real-valued outputs (§1.0; [HS97], [MS11] code).
REAL_TOLERANCE = 0.04


def _scaled(x: int, T: int) -> int:
    """``int(x * T / 100)``: a position defined for T = 100 scaled to ``T`` (§1.0)."""
    return x * T // 100


def _one_hot(ids, n: int, dtype):
    """``ids : (T, B)`` integers in [-1, n) as (T, B, n) one-hot vectors; -1 gives all zeros
    (the padding after a sequence's end)."""
    table = np.zeros((n + 1, n), dtype=dtype)
    table[:n] = np.eye(n, dtype=dtype)
    return table[ids]  # index -1 picks the all-zero last row


def _balanced(rng, n_classes: int, B: int):
    """``B`` class indices in [0, n_classes), each class equally often (the remainder
    ``B % n_classes`` goes to distinct random classes), in random order. [MS11]'s code balances
    classes by batch index (``b % 2``, ...); this keeps the balance without tying the class to
    the position in the batch."""
    classes = np.concatenate([np.repeat(np.arange(n_classes), B // n_classes),
                              rng.choice(n_classes, B % n_classes, replace=False)])
    return rng.permutation(classes)


def _sequence_error(wrong, scored) -> float:
    """The fraction of sequences (columns) with a wrong scored step, among those with at
    least one scored step. ``wrong, scored : (T, B)`` booleans."""
    has = scored.any(axis=0)
    bad = (wrong & scored).any(axis=0)
    count = float(has.sum())
    if count == 0:
        raise ConfigError("the mask selects no step to score")
    return float(bad.sum()) / count


def _argmax_wrong(xp, logits, targets):
    """Positions whose arg-max differs from the target class; non-finite logits count as wrong
    (an arg-max over NaN is meaningless)."""
    return (logits.argmax(axis=-1) != targets) | ~xp.isfinite(logits).all(axis=-1)


def _length_option(default: int, minimum: int) -> Option:
    return Option.integer("T", default, f"nominal sequence length (>= {minimum})",
                          minimum=minimum)


class _PathologicalTask(Task):
    """Shared construction and metric plumbing (not registered)."""

    metric_name = "error"
    threshold = 0.01
    better = "lower"
    MIN_T = 10

    def __init__(self, T: int = 100, dtype=None):
        self.T = validate.positive_int("T", T, minimum=self.MIN_T)
        self.dtype = backend.resolve_dtype(dtype)

    def __repr__(self):
        return f"{type(self).__name__}(T={self.T})"

    def _check_batch_size(self, batch_size):
        return validate.positive_int("batch_size", batch_size)


# ============================================================================ variable length
class _VariableLength(_PathologicalTask):
    """Lengths uniform in [T, int(1.1 T)), padded to ``max_length``, one scored step (§1.0)."""

    outputs = "masked"

    @property
    def T_max(self) -> int:
        """Exclusive upper bound of the lengths: ``int(1.1 T)`` ([MS11] code: ``f(110)``)."""
        return 110 * self.T // 100

    @property
    def max_length(self) -> int:
        """The padded length of a batch: the longest possible sequence, ``T_max - 1``."""
        return self.T_max - 1

    def _lengths(self, rng, B):
        return rng.integers(self.T, self.T_max, size=B)

    def _mask(self, lengths):
        B = lengths.size
        mask = np.zeros((self.max_length, B), dtype=self.dtype)
        mask[lengths - 1, np.arange(B)] = 1
        return mask

    def _require_mask(self, mask):
        if mask is None:
            raise ConfigError(f"task {self.name!r} scores one step per sequence: its metric needs "
                              "the (T, B) mask that task.batch returns")


# ---------------------------------------------------------------------------- two operands
class _Operands(_VariableLength):
    """Addition, multiplication and XOR: the [MS11] layout (§1.1, §1.2, §1.3).

    ``x : (max_length, B, 2)``: channel 0 the values, channel 1 the marker: -1 at step 0 and at
    step ``L - 3`` (the "prediction is coming" cue of [MS11]'s code), +1 at the two operand
    positions ``i`` (first) and ``j`` (second), 0 elsewhere; all-zero after step ``L - 1``.
    ``i`` is uniform in ``[max(1, T//100), max(that + 1, T//10))`` and ``j`` uniform in
    ``[max(i's upper bound, T//10), max(that + 1, T//2))`` (T = 100: [1, 10) and [10, 50)).
    """

    n_in = 2
    n_out = 1
    loss = "mse"
    options = (_length_option(100, 10),)

    @property
    def first_range(self) -> tuple:
        """``[lo, hi)`` of the first operand's position. [MS11] scales [1, 10); its lower end is
        0 for T < 100, which would put the operand on the step-0 cue, so it is at least 1
        (a choice); the upper end is raised to keep the range non-empty for T < 20."""
        lo = max(1, _scaled(1, self.T))
        return lo, max(lo + 1, _scaled(10, self.T))

    @property
    def second_range(self) -> tuple:
        """``[lo, hi)`` of the second operand's position ([MS11]: [10, 50) scaled)."""
        lo = max(self.first_range[1], _scaled(10, self.T))
        return lo, max(lo + 1, _scaled(50, self.T))

    def _values(self, rng, shape):
        raise NotImplementedError

    def _targets(self, a, b, lengths):
        raise NotImplementedError

    def batch(self, rng, batch_size: int):
        """``(x, targets, mask)`` drawn on the host with ``rng``, moved to the backend once."""
        B = self._check_batch_size(batch_size)
        n, cols = self.max_length, np.arange(B)
        lengths = self._lengths(rng, B)
        values = self._values(rng, (n, B))
        i = rng.integers(*self.first_range, size=B)
        j = rng.integers(*self.second_range, size=B)
        marker = np.zeros((n, B), dtype=self.dtype)
        marker[0] = -1
        marker[lengths - 3, cols] = -1
        marker[i, cols] = 1
        marker[j, cols] = 1
        after = np.arange(n)[:, None] >= lengths[None, :]
        values[after] = 0
        x = np.stack([values, marker], axis=-1)
        targets = self._targets(values[i, cols], values[j, cols], lengths)
        return (backend.to_device(x), backend.to_device(targets),
                backend.to_device(self._mask(lengths)))


class _RealOperands(_Operands):
    """Real-valued target at the scored step, linear output, squared error (§1.1, §1.2).

    ``targets : (max_length, B, 1)`` (0 except at the scored step); correct iff
    ``|y_hat - y| < 0.04`` there ([MS11] code ``zero_one_loss_real_valued``).
    """

    def _values(self, rng, shape):
        return rng.random(shape, dtype=self.dtype)  # U[0, 1) ([MS11]: rand, not randn)

    @staticmethod
    def _op(a, b):
        raise NotImplementedError

    def _targets(self, a, b, lengths):
        B = lengths.size
        targets = np.zeros((self.max_length, B, 1), dtype=self.dtype)
        targets[lengths - 1, np.arange(B), 0] = self._op(a, b)
        return targets

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"error", "loss"}``: the fraction of sequences whose output at the scored step
        misses the target by 0.04 or more (NaN counts as a miss), and the MSE over the scored
        steps."""
        self._require_mask(mask)
        loss = mse(outputs, targets, mask)[0]  # also checks shapes and the mask
        xp = backend.get_xp()
        right = xp.abs(outputs[..., 0] - targets[..., 0].astype(outputs.dtype)) < REAL_TOLERANCE
        return {"error": _sequence_error(~right, mask > 0), "loss": loss}


class Addition(_RealOperands):
    """The addition problem, [MS11] version (§1.1), registered as ``addition``.

    (Not :class:`rnnlab.tasks.adding.AddingProblem`, the Le et al. form registered as
    ``adding``: that one has a fixed length, no -1 cues and markers in the two halves.)

    ``batch(rng, B)`` returns ``x : (max_length, B, 2)`` (see :class:`_Operands` for the layout;
    values U[0, 1)), ``targets : (max_length, B, 1)`` holding ``X1 + X2`` in [0, 2) at step
    ``L - 1`` and 0 elsewhere, and ``mask : (max_length, B)``, 1 at step ``L - 1`` only.
    ``max_length = int(1.1 T) - 1``; ``L`` uniform in ``[T, int(1.1 T))``.

    Loss: squared error at the scored step (linear output). Correct iff the output is within
    0.04 of the unscaled sum ([MS11]; 4x stricter than [HS97]'s scaled target).

    Baseline (derived): the best constant is 1, the mean of ``S = X1 + X2`` (triangular on
    [0, 2]); MSE = Var(S) = 2/12 = 1/6. Its error: P(|S - 1| >= 0.04) = 1 - (2d - d^2) with
    d = 0.04, i.e. 0.9216 (1 is also the mode of S, so no constant does better on error).

    Ambiguities: the cue at ``L - 3`` follows §1.1 literally; [MS11]'s code puts it 3 steps
    before its scored step (it scores step ``L`` of a length drawn in [T, 1.1T)), here it is 2
    steps before the scored step ``L - 1``. The first operand never sits on step 0 (see
    :attr:`first_range`).
    """

    name = "addition"

    @staticmethod
    def _op(a, b):
        return a + b

    def baseline(self) -> dict:
        d = REAL_TOLERANCE
        return {"error": 1.0 - (2 * d - d * d), "loss": 1.0 / 6.0}


class Multiplication(_RealOperands):
    """The multiplication problem (§1.2), registered as ``multiplication``.

    Same layout, lengths and shapes as :class:`Addition` (values U[0, 1)); the target at step
    ``L - 1`` is ``X1 * X2`` in [0, 1); squared error; correct iff within 0.04.

    Baseline (derived): the best constant is E[X1 X2] = 1/4; MSE = Var = 1/9 - 1/16 = 7/144
    ~ 0.0486. The product P has density -ln p on (0, 1], so the error of predicting 1/4 is
    1 - [p - p ln p] from 0.21 to 0.29 ~ 0.8888. (A constant chosen for the zero-one error
    alone, 0.04, would score 1 - (0.08 - 0.08 ln 0.08) ~ 0.718; the baseline reports the
    predictor that the squared loss drives a memoryless model to.)
    """

    name = "multiplication"

    @staticmethod
    def _op(a, b):
        return a * b

    def baseline(self) -> dict:
        d = REAL_TOLERANCE

        def cdf(p):  # P(X1 X2 <= p) = p - p ln p on (0, 1]
            return p - p * math.log(p)

        hit = cdf(0.25 + d) - cdf(0.25 - d)
        return {"error": 1.0 - hit, "loss": 7.0 / 144.0}


class Xor(_Operands):
    """The XOR problem (§1.3), registered as ``xor``.

    ``x : (max_length, B, 2)``: the :class:`_Operands` layout with bits {0, 1} (p = 1/2 each,
    iid) on channel 0 instead of reals; ``targets : (max_length, B)`` int64, ``X1 XOR X2`` at
    step ``L - 1`` (0 elsewhere, unscored); ``mask : (max_length, B)``.

    Output: 2 logits with softmax cross-entropy. The sources use one sigmoid unit with
    cross-entropy; rnnlab has no sigmoid loss, and a 2-class softmax is the same model (its
    logit difference z1 - z0 is the sigmoid's logit, and the loss is identical). Correct iff
    the arg-max is the target, i.e. ``(z1 - z0 > 0) == (y == 1)`` ([MS11] ``zero_one_loss_sigm``;
    a tie z1 == z0 counts as class 0, as ``logit > 0`` does).

    Lengths and positions: the **[rnnlab default]** of §1.3, the addition layout (lengths
    [T, 1.1T), second operand in [T/10, T/2)). [MS11]'s sample script instead used lengths
    [0.5T, 0.55T) and second positions [0.15T, 0.25T); the paper's ranges are [unverified].

    Baseline (derived): without memory the target is a fair coin, so the loss is ln 2 and any
    constant prediction has error 1/2.
    """

    name = "xor"
    n_out = 2
    loss = "cross_entropy"

    def _values(self, rng, shape):
        return (rng.random(shape) < 0.5).astype(self.dtype)

    def _targets(self, a, b, lengths):
        B = lengths.size
        targets = np.zeros((self.max_length, B), dtype=np.int64)
        targets[lengths - 1, np.arange(B)] = a.astype(np.int64) ^ b.astype(np.int64)
        return targets

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"error", "loss"}``: the fraction of sequences whose arg-max at the scored step is
        not the XOR, and the cross-entropy (nats) over the scored steps."""
        self._require_mask(mask)
        loss = softmax_cross_entropy(outputs, targets, mask)[0]
        wrong = _argmax_wrong(backend.get_xp(), outputs, targets)
        return {"error": _sequence_error(wrong, mask > 0), "loss": loss}

    def baseline(self) -> dict:
        return {"error": 0.5, "loss": math.log(2.0)}


# ---------------------------------------------------------------------------- temporal order
class _TemporalOrder(_VariableLength):
    """Temporal order with ``n_bits`` informative symbols (§1.4, §1.5).

    Symbols (one-hot over 8): 0-3 distractors a, b, c, d (iid uniform), 4 = X, 5 = Y,
    6 = trigger, 7 = start. Step 0 is the start symbol, step ``L - 1`` (the scored step) the
    trigger, the informative steps show X or Y, every other real step a distractor; steps after
    ``L - 1`` are all-zero input.
    """

    n_in = 8
    loss = "cross_entropy"
    options = (_length_option(100, 10),)
    # per informative step: (lo, hi) of its position for T = 100, inclusive ([MS11] code
    # draws randint(lo, hi + 1)), and the weight of its bit in the class index
    RANGES: tuple = ()
    WEIGHTS: tuple = ()

    @property
    def position_ranges(self) -> tuple:
        """Inclusive ``(lo, hi)`` of each informative step's position at this T. A scaled lower
        end of 0 (T < 100) would overwrite the start symbol, so it is at least 1 (a choice)."""
        return tuple((max(1, _scaled(lo, self.T)), max(1, _scaled(hi, self.T)))
                     for lo, hi in self.RANGES)

    def batch(self, rng, batch_size: int):
        """``(x, targets, mask)`` drawn on the host with ``rng``, moved to the backend once."""
        B = self._check_batch_size(batch_size)
        n, cols = self.max_length, np.arange(B)
        lengths = self._lengths(rng, B)
        classes = _balanced(rng, self.n_out, B)
        ids = rng.integers(0, 4, size=(n, B))
        ids[np.arange(n)[:, None] >= lengths[None, :]] = -1  # padding: no symbol
        ids[0] = 7
        ids[lengths - 1, cols] = 6
        for (lo, hi), weight in zip(self.position_ranges, self.WEIGHTS):
            where = rng.integers(lo, hi + 1, size=B)
            ids[where, cols] = 4 + (classes // weight) % 2  # X = 4, Y = 5
        targets = np.zeros((n, B), dtype=np.int64)
        targets[lengths - 1, cols] = classes
        return (backend.to_device(_one_hot(ids, 8, self.dtype)), backend.to_device(targets),
                backend.to_device(self._mask(lengths)))

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"error", "loss"}``: the fraction of sequences whose arg-max at the scored step is
        not the class ([MS11]'s criterion; [HS97] asked all output errors < 0.3), and the
        cross-entropy (nats) over the scored steps."""
        self._require_mask(mask)
        loss = softmax_cross_entropy(outputs, targets, mask)[0]
        wrong = _argmax_wrong(backend.get_xp(), outputs, targets)
        return {"error": _sequence_error(wrong, mask > 0), "loss": loss}

    def baseline(self) -> dict:
        k = self.n_out
        return {"error": 1.0 - 1.0 / k, "loss": math.log(k)}


class TemporalOrder2(_TemporalOrder):
    """The 2-bit temporal order problem (§1.4), registered as ``order2``.

    ``x : (max_length, B, 8)`` one-hot (see :class:`_TemporalOrder`); informative steps
    t1 in [T/100, T/10] and t2 in [0.4T, 0.5T] (inclusive, [MS11] scaled; T = 100: [1, 10] and
    [40, 50]); ``targets : (max_length, B)`` int64, the class ``2 [first is Y] + [second is Y]``
    (XX, XY, YX, YY = 0..3) at step ``L - 1``; ``mask : (max_length, B)``. Softmax over 4,
    cross-entropy at the scored step; correct iff the arg-max is the class.

    The classes are balanced within a batch and shuffled (§1.4: [MS11]'s code balances by
    batch index); the distractors are iid uniform.

    Baseline (derived): without memory every class has probability 1/4: loss ln 4, error 3/4.
    """

    name = "order2"
    n_out = 4
    RANGES = ((1, 10), (40, 50))
    WEIGHTS = (2, 1)


class TemporalOrder3(_TemporalOrder):
    """The 3-bit temporal order problem (§1.5), registered as ``order3``.

    As :class:`TemporalOrder2` with three informative steps, t1 in [T/100, T/10],
    t2 in [0.3T, 0.4T], t3 in [0.5T, 0.6T] (inclusive, [MS11] scaled), and 8 classes indexed
    ``4 c3 + 2 c2 + c1`` with ci = [i-th informative symbol is Y] ([MS11] code ordering).
    ``x : (max_length, B, 8)``, ``targets : (max_length, B)`` int64, ``mask : (max_length, B)``.

    Ambiguity: §1.5 gives [MS11]'s scaled ranges; [HS97]'s were [10, 20], [33, 43], [66, 76].
    The trigger is at the scored step ``L - 1`` as in §1.4 ([MS11]'s 2-bit code puts it one step
    before its scored step, its 3-bit code on it).

    Baseline (derived): loss ln 8, error 7/8.
    """

    name = "order3"
    n_out = 8
    RANGES = ((1, 10), (30, 40), (50, 60))
    WEIGHTS = (1, 2, 4)


# ============================================================================ fixed length
class RandomPermutation(_PathologicalTask):
    """The random permutation problem (§1.6; a misnomer: the symbols are iid), registered as
    ``permutation``.

    Fixed length T. ``x : (T, B, 100)`` one-hot: step 0 shows symbol 0 or 1 (the bit to
    remember; balanced within a batch, shuffled), steps 1..T-1 iid uniform symbols in
    {2, ..., 99}. ``targets : (T, B)`` int64: at step t < T-1 the input at t+1 (next-symbol
    prediction), at step T-1 the step-0 symbol. ``mask = None``; ``outputs = "every"``.
    Loss: softmax cross-entropy over all T steps (the noisy gradients are the point of the
    task, [PSGD]). Correct iff the arg-max at the last step is the step-0 symbol (the other
    steps are unpredictable; [MS11] ``zero_one_loss_softmax_last``).

    Baseline (derived): the best predictor without memory of the bit (but knowing the step):
    uniform over the 98 noise symbols at steps < T-1 and over {0, 1} at the last step, so
    loss = ((T - 1) ln 98 + ln 2) / T and error 1/2. (One distribution for every step, not
    knowing the step either, would do slightly worse: the mixture with mass (T-1)/T on the 98
    and 1/T on the 2.)
    """

    name = "permutation"
    n_in = n_out = 100
    loss = "cross_entropy"
    outputs = "every"
    MIN_T = 2
    options = (_length_option(100, 2),)

    def batch(self, rng, batch_size: int):
        """``(x, targets, None)`` drawn on the host with ``rng``, moved to the backend once."""
        B = self._check_batch_size(batch_size)
        ids = np.empty((self.T, B), dtype=np.int64)
        ids[0] = _balanced(rng, 2, B)
        ids[1:] = rng.integers(2, self.n_in, size=(self.T - 1, B))
        targets = np.empty_like(ids)
        targets[:-1] = ids[1:]
        targets[-1] = ids[0]
        return (backend.to_device(_one_hot(ids, self.n_in, self.dtype)),
                backend.to_device(targets), None)

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"error", "loss"}``: the fraction of sequences whose arg-max at the last step is
        not the remembered bit, and the cross-entropy (nats) over all (or the masked) steps."""
        loss = softmax_cross_entropy(outputs, targets, mask)[0]
        xp = backend.get_xp()
        wrong = _argmax_wrong(xp, outputs[-1:], targets[-1:])
        scored = xp.ones(wrong.shape, dtype=bool) if mask is None else mask[-1:] > 0
        return {"error": _sequence_error(wrong, scored), "loss": loss}

    def baseline(self) -> dict:
        T = self.T
        return {"error": 0.5, "loss": ((T - 1) * math.log(self.n_in - 2) + math.log(2)) / T}


class _Memorisation(_PathologicalTask):
    """Noiseless memorisation of ``K`` symbols from an alphabet of ``C`` (§1.7, §1.8).

    Symbols: 0..C-1 data, ``C`` trigger, ``C + 1`` blank (the [MS11] code's order: trigger the
    second-to-last unit, blank the last), ``C + 2`` one-hot units in and out (§1.7 note: the
    [MS11] utils overwrite two of the ``C`` data units; here they are extra units).
    """

    loss = "cross_entropy"
    outputs = "every"
    K = 5
    C = 2
    n_in = n_out = C + 2

    @property
    def trigger(self) -> int:
        return self.C

    @property
    def blank(self) -> int:
        return self.C + 1

    def _data(self, rng, B):
        """(B, K) data symbols: every pattern equally often (in base-C order, most significant
        symbol first, as [MS11]'s code enumerates them) when B is a multiple of the C^K
        patterns, otherwise iid uniform."""
        patterns = self.C ** self.K
        if B % patterns == 0:
            index = np.tile(np.arange(patterns), B // patterns)
            powers = self.C ** np.arange(self.K - 1, -1, -1)
            return (index[:, None] // powers[None, :]) % self.C
        return rng.integers(0, self.C, size=(B, self.K))

    def batch(self, rng, batch_size: int):
        """``(x, targets, None)`` drawn on the host with ``rng``, moved to the backend once."""
        B = self._check_batch_size(batch_size)
        T, K = self.T, self.K
        data = self._data(rng, B)
        ids = np.full((T, B), self.blank, dtype=np.int64)
        ids[:K] = data.T
        ids[T - K - 1] = self.trigger
        targets = np.full((T, B), self.blank, dtype=np.int64)
        targets[T - K:] = data.T
        return (backend.to_device(_one_hot(ids, self.n_in, self.dtype)),
                backend.to_device(targets), None)

    def metric(self, outputs, targets, mask=None) -> dict:
        """``{"error", "loss"}``: the fraction of sequences with any wrong arg-max at a scored
        step (every step without a mask), and the cross-entropy (nats) per scored step."""
        loss = softmax_cross_entropy(outputs, targets, mask)[0]
        xp = backend.get_xp()
        wrong = _argmax_wrong(xp, outputs, targets)
        scored = xp.ones(wrong.shape, dtype=bool) if mask is None else mask > 0
        return {"error": _sequence_error(wrong, scored), "loss": loss}

    def baseline(self) -> dict:
        """Without memory of the data, the blank targets (steps 0..T-K-1) are still certain
        (the trigger announces the answer window) and each of the K answers is uniform over C:
        loss = K ln C / T per step; a sequence is right only if all K guesses are,
        error = 1 - C^-K."""
        return {"error": 1.0 - float(self.C) ** -self.K,
                "loss": self.K * math.log(self.C) / self.T}


class Memory5(_Memorisation):
    """The 5-bit noiseless memorisation problem (§1.7), registered as ``memory5``.

    Fixed length T (>= 11). ``x : (T, B, 4)`` one-hot: steps 0..4 the 5 data bits (symbols 0,
    1), step ``T - 6`` the trigger (2), every other step blank (3). ``targets : (T, B)`` int64:
    blank at steps 0..T-6, the 5 data bits at steps T-5..T-1. ``mask = None``, ``outputs =
    "every"``: softmax cross-entropy at every step ([MS11] default; its variant scoring only the
    last 5 steps is not offered). Correct iff every step's arg-max is right.

    There are only 2^5 = 32 patterns: a batch whose size is a multiple of 32 holds each
    pattern equally often in a fixed order (batch 32 is [MS11]'s and [PSGD]'s full batch, a
    deterministic gradient; the same for every seed); other sizes sample patterns iid (so
    [PSGD]'s protocol needs ``train.batch = 32``, and an exact held-out set ``eval_size`` and
    ``eval_batch`` multiples of 32).

    Baseline: loss 5 ln 2 / T, error 1 - 1/32 = 0.96875 (see :meth:`_Memorisation.baseline`).
    """

    name = "memory5"
    K, C = 5, 2
    MIN_T = 2 * 5 + 1  # data, then the trigger no earlier than step K
    options = (_length_option(100, MIN_T),)
    n_in = n_out = 4


class Memory20(_Memorisation):
    """The "20-bit" noiseless memorisation problem (§1.8), registered as ``memory20``.

    As :class:`Memory5` with K = 10 symbols from an alphabet of C = 5 (5^10 ~ 2^23 patterns,
    sampled iid), 7 units: ``x : (T, B, 7)``, data symbols 0..4, trigger 5 at step ``T - 11``,
    blank 6; ``targets : (T, B)`` int64 with the data at the last 10 steps. T >= 21.

    Baseline: loss 10 ln 5 / T, error 1 - 5^-10 (see :meth:`_Memorisation.baseline`).
    """

    name = "memory20"
    K, C = 10, 5
    MIN_T = 2 * 10 + 1
    options = (_length_option(100, MIN_T),)
    n_in = n_out = 7


PATHOLOGICAL = {cls.name: cls for cls in (Addition, Multiplication, Xor, TemporalOrder2,
                                          TemporalOrder3, RandomPermutation, Memory5, Memory20)}
