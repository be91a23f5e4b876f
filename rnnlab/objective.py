"""A model, a loss and a batch turned into the objective value, its gradient, truncated BPTT and
Gauss-Newton curvature products.

This is the unit every consumer shares: the trainer's step, the gradient checker's closures, and
optimizers that re-evaluate the loss (PSGD's second gradient, Hessian-free's loss closure and
curvature products).

Shapes: T steps, B batch, n_in inputs, H_i hidden units in layer i, n_out outputs; time-major
``x : (T, B, n_in)`` as in :mod:`rnnlab.models.elman`. Targets and mask follow the model's
``spec.outputs``: for ``"last"`` targets are (B, n_out) (MSE) or (B,) class indices
(cross-entropy) and a mask, if any, is (B,); for ``"every"`` and ``"masked"`` they are
(T, B, n_out) or (T, B), and the mask (T, B), required for ``"masked"``.

A loss is a :class:`rnnlab.losses.Loss` (``loss(outputs, targets, mask) -> (value, d_outputs)``;
:func:`gauss_newton_product` also needs its ``gn_product``).
"""
from __future__ import annotations

import dataclasses
import numbers

from . import backend, validate
from .errors import ConfigError, DivergenceError
from .models import OUTPUT_MODES


def _check_mask(model, mask):
    """A model that scores only masked steps must be given the mask (never score every step)."""
    outputs = getattr(getattr(model, "spec", None), "outputs", None)
    if outputs == "masked" and mask is None:
        raise ConfigError("outputs='masked' needs a mask: pass a (T, B) array of 0/1 saying "
                          "which steps are scored (or build the model with outputs='every')")


def loss_value(model, params, x, targets, loss, mask=None, state=None) -> float:
    """The loss of ``model`` at ``params`` on one batch.

    Parameters
    ----------
    model : a model with ``forward(params, x, state)`` (e.g. :class:`rnnlab.models.ElmanRNN`)
    x : (T, B, n_in)
    targets, mask : as the loss expects for the model's outputs (see the module docstring); a
        model with ``spec.outputs == "masked"`` needs a mask
    loss : callable ``loss(outputs, targets, mask) -> (value, d_outputs)``
    state : list of (B, H_i), optional initial hidden state
    """
    _check_mask(model, mask)
    y, _ = model.forward(params, x, state)
    return loss(y, targets, mask)[0]


def loss_and_grads(model, params, x, targets, loss, mask=None, state=None):
    """The loss, its gradient with respect to ``params`` (BPTT), and the forward cache.

    Parameters are those of :func:`loss_value`.

    Returns
    -------
    value : float
    grads : dict
        dLoss/dparams, the keys of ``params``.
    cache
        The model's forward cache; ``cache.final_state`` is the hidden state to carry into the
        next chunk in truncated BPTT (the gradient does not flow through it).
    """
    _check_mask(model, mask)
    y, cache = model.forward(params, x, state)
    value, dy = loss(y, targets, mask)
    grads, _ = model.backward(params, dy, cache)
    return value, grads, cache


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    """One batch of sequences and what the loss scores them against.

    Attributes
    ----------
    x : (T, B, n_in)
        Inputs, time-major.
    targets : (B, n_out) or (B,) for outputs "last"; (T, B, n_out) or (T, B) otherwise
        Real targets (MSE) or integer class indices (cross-entropy).
    mask : (T, B) (or (B,) for outputs "last"), optional
        1 where an output is scored, 0 elsewhere; required for outputs "masked".
    state : list of (B, H_i), optional
        The initial hidden state per layer (zeros if None).
    """

    x: object
    targets: object
    mask: object = None
    state: object = None

    @property
    def T(self) -> int:
        """The number of time steps."""
        return int(self.x.shape[0])

    @property
    def B(self) -> int:
        """The number of sequences."""
        return int(self.x.shape[1])

    def chunk(self, a: int, b: int, outputs: str, state=None) -> "Batch":
        """The batch of time steps [a, b), for truncated BPTT.

        Parameters
        ----------
        a, b : int
            0 <= a < b <= T.
        outputs : {"every", "last", "masked"}
            The model's ``spec.outputs``: with "last" the targets and mask (which belong to the
            last step) are kept whole; otherwise they are sliced along time like ``x``.
        state : list of (B, H_i), optional
            The chunk's initial hidden state (e.g. the previous chunk's ``cache.final_state``).

        Returns
        -------
        Batch
            ``x[a:b]`` (a view), the targets and mask for those steps, and ``state``.
        """
        validate.choice("outputs", outputs, OUTPUT_MODES)
        _check_bounds("chunk", a, b, "T", self.T)
        if outputs == "last":
            targets, mask = self.targets, self.mask
        else:
            targets = self.targets[int(a):int(b)]
            mask = None if self.mask is None else self.mask[int(a):int(b)]
        return Batch(self.x[int(a):int(b)], targets, mask, state)

    def rows(self, a: int, b: int, outputs: str) -> "Batch":
        """The sequences [a, b) of the batch (Hessian-free's curvature and backtracking
        batches are such slices of its gradient batch).

        ``outputs`` (the model's ``spec.outputs``) says where the targets' and mask's batch
        axis is: first for "last", second otherwise. The initial state, opaque per layer, is
        sliced along the first axis of every array in it (B comes first in every state).
        """
        validate.choice("outputs", outputs, OUTPUT_MODES)
        _check_bounds("row", a, b, "B", self.B)
        rows = slice(int(a), int(b))
        along = (rows,) if outputs == "last" else (slice(None), rows)
        return Batch(self.x[:, rows], self.targets[along],
                     None if self.mask is None else self.mask[along],
                     _slice_state(self.state, rows))


def _check_bounds(what: str, a, b, name: str, n: int) -> None:
    """Integers with 0 <= a < b <= n, or a ConfigError naming the bounds."""
    integers = all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in (a, b))
    if not (integers and 0 <= a < b <= n):
        raise ConfigError(f"{what} bounds must be integers with 0 <= a < b <= {name} = {n}; "
                          f"got a={a!r}, b={b!r}")


def _slice_state(state, rows):
    """A state tree with every array sliced along its first (batch) axis."""
    if state is None:
        return None
    if isinstance(state, (list, tuple)):
        return type(state)(_slice_state(s, rows) for s in state)
    if isinstance(state, dict):
        return {k: _slice_state(v, rows) for k, v in state.items()}
    return state[rows] if hasattr(state, "shape") else state


def batch_loss_and_grads(model, params, batch: Batch, loss):
    """:func:`loss_and_grads` on a :class:`Batch`: ``(value, grads, cache)``.

    Parameters
    ----------
    model : e.g. :class:`rnnlab.models.ElmanRNN`
    params : dict
    batch : Batch
        Its ``state`` is the initial hidden state.
    loss : callable ``loss(outputs, targets, mask) -> (value, d_outputs)``
    """
    return loss_and_grads(model, params, batch.x, batch.targets, loss, batch.mask, batch.state)


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """One chunk of truncated BPTT, as :func:`truncated_bptt` yields it.

    Attributes
    ----------
    batch : Batch
        The chunk's steps, targets, mask and the hidden state it started from.
    scored : bool
        Whether the chunk has outputs the loss scores. An unscored chunk (outputs "last" before
        the final chunk, or an all-zero mask slice) only ran forward.
    value : float or None
        The chunk's loss (None when not scored).
    grads : dict or None
        dLoss/dparams of the chunk, the keys of params; the gradient stops at the chunk's
        initial state (None when not scored).
    cache
        The model's forward cache of the chunk; ``cache.final_state`` is the next chunk's state.
    """

    batch: Batch
    scored: bool
    value: object
    grads: object
    cache: object


def chunk_bounds(T: int, k: int) -> list:
    """The ``(a, b)`` step ranges of truncated BPTT with chunks of ``k`` steps (the last one may be
    shorter); ``k = 0`` or ``k >= T`` gives the one chunk ``(0, T)``."""
    T = validate.positive_int("T", T)
    k = validate.positive_int("k", k, minimum=0)
    k = k if 0 < k < T else T
    return [(a, min(a + k, T)) for a in range(0, T, k)]


def truncated_bptt(model, params, batch: Batch, loss, k: int):
    """Truncated BPTT over ``batch`` in chunks of ``k`` steps, one :class:`Chunk` at a time.

    The hidden state is carried from chunk to chunk (``cache.final_state``, starting from
    ``batch.state``); the gradient does not flow through chunk boundaries. A scored chunk runs
    forward, loss and BPTT; an unscored one only forward.

    The generator reads ``params`` anew for every chunk, so a caller that updates ``params`` in
    place between chunks (an optimizer stepping after each scored chunk) gets the next chunk at
    the updated parameters, as the trainer's ``train_step`` does::

        for chunk in objective.truncated_bptt(model, params, batch, loss, k):
            if chunk.scored:
                optimizer.step(params, chunk.grads)

    Without updates, it gives each chunk's gradient with the carried state, no optimizer needed.

    Parameters
    ----------
    model : e.g. :class:`rnnlab.models.ElmanRNN`
    params : dict
        Updated in place by the caller, if at all (rebinding the name has no effect here).
    batch : Batch
    loss : callable ``loss(outputs, targets, mask) -> (value, d_outputs)``
    k : int
        Chunk length; 0 or k >= T: one chunk (full BPTT).

    Yields
    ------
    Chunk
        In time order. The state each chunk hands on was computed before the caller's update
        for that chunk.

    Raises
    ------
    ConfigError
        At the call (not at the first ``next``) for a negative ``k``, or a model with outputs
        "masked" and no mask.
    """
    _check_mask(model, batch.mask)
    bounds = chunk_bounds(batch.T, k)
    return _chunks(model, params, batch, loss, bounds)


def _chunks(model, params, batch, loss, bounds):
    outputs = model.spec.outputs
    T, state = batch.T, batch.state
    for a, b in bounds:
        if a > 0 and not _finite_state(state):
            # the recurrence overflowed inside the batch: that is divergence, not bad input
            raise DivergenceError(f"the hidden state carried into steps {a}..{b - 1} is not "
                                  "finite")
        part = batch.chunk(a, b, outputs, state)
        if outputs == "last":
            scored = b == T
        else:
            scored = part.mask is None or bool(part.mask.any())
        if scored:
            value, grads, cache = batch_loss_and_grads(model, params, part, loss)
        else:
            value, grads = None, None
            _, cache = model.forward(params, part.x, part.state)
        state = cache.final_state  # taken before the caller updates params
        yield Chunk(part, scored, value, grads, cache)


def _finite_state(state) -> bool:
    """Whether every array in a carried state (one opaque value per layer) is finite."""
    if isinstance(state, (list, tuple)):
        return all(_finite_state(s) for s in state)
    return bool(backend.get_xp().isfinite(state).all())


def gauss_newton_product(model, params, batch: Batch, v: dict, loss, cache=None,
                         outputs=None, structural: float = 0.0,
                         structural_form: str = "matching") -> dict:
    """The Gauss-Newton matrix of the loss on ``batch`` at ``params`` times a direction ``v``.

    G v = J^T H J v, with J = d outputs / d params (the initial state held constant) and H the
    loss's Hessian with respect to the outputs: the R-op forward (``model.rop``, J v), the output
    curvature (``loss.gn_product``, H J v) and BPTT (``model.backward``, J^T H J v). G is
    symmetric and positive semi-definite (H is, for MSE and softmax cross-entropy).

    Parameters
    ----------
    model : e.g. :class:`rnnlab.models.ElmanRNN`, with ``forward``, ``rop`` and ``backward``
    params : dict
    batch : Batch
    v : dict
        A direction with the keys and shapes of ``params``.
    loss : :class:`rnnlab.losses.Loss`
        Must have ``gn_product(outputs, targets, mask, r_outputs)``.
    cache, outputs : optional
        ``y, cache = model.forward(params, batch.x, batch.state)`` at the same params and batch,
        reused to skip the forward (e.g. across the products of one conjugate-gradient solve).
        Give both or neither: the loss's curvature needs the outputs (softmax probabilities),
        which the model's cache does not hold.
    structural : float
        The weight of structural damping (Martens & Sutskever 2011; Hessian-free's lambda * mu):
        adds ``structural`` times the Gauss-Newton matrix of a penalty on the change of the
        hidden states, the model's ``structural_damping(r_hidden, cache, structural_form)``
        injected into the backward (0: none; the model must implement it otherwise).
    structural_form : {"matching", "hidden"}
        See :meth:`rnnlab.models.ElmanRNN.structural_damping`.

    Returns
    -------
    dict
        G v, the keys and shapes of ``params``.

    Notes
    -----
    Schraudolph (2002), "Fast curvature matrix-vector products for second-order gradient
    descent"; Martens (2010) for its use in Hessian-free optimisation.
    """
    _check_mask(model, batch.mask)
    if list(v) != list(params):
        raise ConfigError(f"v must have the keys of params {list(params)}; got {list(v)}")
    for name, p in params.items():
        if tuple(v[name].shape) != tuple(p.shape):
            raise ConfigError(f"v[{name!r}] must have shape {tuple(p.shape)}; "
                              f"got {tuple(v[name].shape)}")
    if (cache is None) != (outputs is None):
        raise ConfigError("cache and outputs go together: pass both (y, cache = "
                          "model.forward(params, batch.x, batch.state)) or neither")
    if cache is None:
        outputs, cache = model.forward(params, batch.x, batch.state)
    r_y, r_hidden = model.rop(params, v, cache)
    h_r = loss.gn_product(outputs, batch.targets, batch.mask, r_y)
    if not structural:
        gv, _ = model.backward(params, h_r, cache)
        return gv
    if not hasattr(model, "structural_damping"):
        raise ConfigError(f"model {getattr(model.spec, 'kind', type(model).__name__)!r} has "
                          "no structural damping; use structural = 0")
    d_hidden = [structural * d for d in
                model.structural_damping(r_hidden, cache, structural_form)]
    gv, _ = model.backward(params, h_r, cache, d_hidden=d_hidden)
    return gv
