"""rnnlab.objective: Batch and its chunks, truncated BPTT as a generator (each chunk's gradient
against an independent computation with the carried state; parameters updated between chunks),
and the masked-outputs-without-a-mask error, in float64."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, backend, losses, objective
from rnnlab.models import ElmanRNN
from rnnlab.objective import Batch, Chunk, batch_loss_and_grads, chunk_bounds, truncated_bptt
from rnnlab.optim import SGD
from rnnlab.params import flatten

import strategies as S

# the same computation with the time steps split between GEMM calls differently (one forward
# over x[:a] against forwards chunk by chunk): round-off ~1e-15 relative; 1e-12 leaves margin
# while a wrong state or a gradient through a chunk boundary changes the result by >= 1e-3
RTOL = 1e-12


def _dev(a):
    return backend.to_device(np.asarray(a))


def _problem(outputs, loss_name="mse", T=7, B=2, hidden=(3, 2), activation="tanh", seed=0,
             with_state=False, mask=None):
    arch = dict(n_in=2, hidden=hidden, n_out=2, activation=activation, bias=True,
                outputs=outputs)
    rng = np.random.default_rng(seed)
    model = ElmanRNN.from_arrays(S.host_arrays(arch, rng), activation=activation,
                                 outputs=outputs, dtype="float64")
    x = rng.standard_normal((T, B, 2))
    lead = (B,) if outputs == "last" else (T, B)
    targets = (rng.standard_normal(lead + (2,)) if loss_name == "mse"
               else rng.integers(0, 2, size=lead))
    if mask is None and outputs == "masked":
        mask = S.host_mask(T, B, rng)
    state = [_dev(s) for s in S.host_state(arch, B, rng)] if with_state else None
    loss = losses.mse if loss_name == "mse" else losses.softmax_cross_entropy
    return model, Batch(_dev(x), _dev(targets), None if mask is None else _dev(mask), state), loss


def _assert_grads_close(got, want, rtol=RTOL):
    assert list(got) == list(want)
    for k in want:
        w = backend.to_host(want[k])
        np.testing.assert_allclose(backend.to_host(got[k]), w, rtol=0,
                                   atol=rtol * max(1.0, np.abs(w).max()), err_msg=k)


# ----------------------------------------------------------------------------- Batch
def test_batch_shapes_and_chunks(xp):
    model, batch, _ = _problem("masked", T=5, B=3)
    assert (batch.T, batch.B) == (5, 3)
    part = batch.chunk(1, 4, "masked", state=None)
    assert isinstance(part, Batch) and (part.T, part.B) == (3, 3)
    host = backend.to_host
    np.testing.assert_array_equal(host(part.x), host(batch.x)[1:4])
    np.testing.assert_array_equal(host(part.targets), host(batch.targets)[1:4])
    np.testing.assert_array_equal(host(part.mask), host(batch.mask)[1:4])
    assert part.state is None
    _, last, _ = _problem("last", T=5, B=3)
    state = [xp.ones((3, 3)), xp.ones((3, 2))]
    part = last.chunk(2, 5, "last", state)
    assert part.targets is last.targets and part.mask is None and part.state is state
    with pytest.raises(AttributeError):  # frozen
        batch.x = None


@pytest.mark.parametrize("a,b", [(0, 0), (3, 2), (-1, 2), (0, 6), (0.0, 2), (True, 2)])
def test_batch_chunk_bad_bounds(a, b):
    _, batch, _ = _problem("every", T=5)
    with pytest.raises(ConfigError, match=r"chunk bounds must be integers with 0 <= a < b <= "
                                          r"T = 5"):
        batch.chunk(a, b, "every")


def test_batch_chunk_bad_outputs():
    _, batch, _ = _problem("every", T=5)
    with pytest.raises(ConfigError, match=r"outputs must be one of every, last, masked"):
        batch.chunk(0, 2, "all")


def test_chunk_bounds():
    assert chunk_bounds(10, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert chunk_bounds(6, 3) == [(0, 3), (3, 6)]
    assert chunk_bounds(6, 0) == chunk_bounds(6, 6) == chunk_bounds(6, 50) == [(0, 6)]
    with pytest.raises(ConfigError, match=r"k must be an integer >= 0; got -1"):
        chunk_bounds(6, -1)


# ----------------------------------------------------------------------------- full BPTT
@pytest.mark.parametrize("outputs", ["every", "last", "masked"])
@pytest.mark.parametrize("k", [0, 7, 100])
def test_one_chunk_is_full_bptt(xp, outputs, k):
    model, batch, loss = _problem(outputs, "xent", with_state=True)
    chunks = list(truncated_bptt(model, model.params, batch, loss, k))
    assert len(chunks) == 1
    (chunk,) = chunks
    assert isinstance(chunk, Chunk) and chunk.scored and chunk.batch.state is batch.state
    value, grads, cache = batch_loss_and_grads(model, model.params, batch, loss)
    assert chunk.value == value  # the same operations
    for k_ in grads:
        np.testing.assert_array_equal(backend.to_host(chunk.grads[k_]),
                                      backend.to_host(grads[k_]))
    np.testing.assert_array_equal(backend.to_host(chunk.cache.final_state[0]),
                                  backend.to_host(cache.final_state[0]))


def test_batch_loss_and_grads_is_loss_and_grads():
    model, batch, loss = _problem("masked", with_state=True)
    got = batch_loss_and_grads(model, model.params, batch, loss)
    want = objective.loss_and_grads(model, model.params, batch.x, batch.targets, loss,
                                    batch.mask, batch.state)
    assert got[0] == want[0]
    _assert_grads_close(got[1], want[1], rtol=0)  # the same operations


# ----------------------------------------------------------------------------- truncated
def _independent_chunk(model, params, batch, loss, a, b):
    """Chunk [a, b)'s loss and gradient computed directly: one forward over x[:a] from the
    batch's state gives the chunk's initial state, then loss_and_grads on the chunk."""
    state = batch.state
    if a > 0:
        state = model.forward(params, batch.x[:a], state)[1].final_state
    last = model.spec.outputs == "last"
    targets = batch.targets if last else batch.targets[a:b]
    mask = batch.mask if last or batch.mask is None else batch.mask[a:b]
    return objective.loss_and_grads(model, params, batch.x[a:b], targets, loss, mask, state)


@pytest.mark.parametrize("outputs", ["every", "masked"])
@pytest.mark.parametrize("loss_name", ["mse", "xent"])
@pytest.mark.parametrize("with_state", [False, True])
def test_each_chunk_equals_independent_computation(xp, outputs, loss_name, with_state):
    model, batch, loss = _problem(outputs, loss_name, with_state=with_state)
    chunks = list(truncated_bptt(model, model.params, batch, loss, 3))
    assert [(c.batch.T, c.scored) for c in chunks] == [(3, True), (3, True), (1, True)]
    for chunk, (a, b) in zip(chunks, [(0, 3), (3, 6), (6, 7)]):
        value, grads, _ = _independent_chunk(model, model.params, batch, loss, a, b)
        assert chunk.value == pytest.approx(value, rel=RTOL)
        _assert_grads_close(chunk.grads, grads)
    # the gradient stops at chunk boundaries: the last chunk's loss differentiated through the
    # whole sequence (full BPTT, earlier steps masked out of the loss) is another gradient
    only_last = np.zeros((7, 2))
    only_last[6:] = 1 if batch.mask is None else backend.to_host(batch.mask)[6:]
    _, through, _ = objective.loss_and_grads(model, model.params, batch.x, batch.targets, loss,
                                             _dev(only_last), batch.state)
    assert not np.allclose(backend.to_host(flatten(chunks[-1].grads)[0]),
                           backend.to_host(flatten(through)[0]), rtol=1e-3)


def test_carried_state_is_the_previous_final_state():
    model, batch, loss = _problem("every", with_state=True)
    chunks = list(truncated_bptt(model, model.params, batch, loss, 2))
    assert chunks[0].batch.state is batch.state
    for before, after in zip(chunks[:-1], chunks[1:]):
        for s_next, s_prev in zip(after.batch.state, before.cache.final_state):
            np.testing.assert_array_equal(s_next, s_prev)


def test_last_output_only_scores_the_final_chunk():
    model, batch, loss = _problem("last", "xent", T=7)
    chunks = list(truncated_bptt(model, model.params, batch, loss, 3))
    assert [c.scored for c in chunks] == [False, False, True]
    assert all(c.value is None and c.grads is None for c in chunks[:2])
    assert all(c.batch.targets is batch.targets for c in chunks)
    value, grads, _ = _independent_chunk(model, model.params, batch, loss, 6, 7)
    assert chunks[-1].value == pytest.approx(value, rel=RTOL)
    _assert_grads_close(chunks[-1].grads, grads)


def test_chunk_with_all_zero_mask_slice_only_runs_forward():
    mask = np.ones((7, 2))
    mask[3:6] = 0  # the second chunk of 3 scores nothing
    model, batch, loss = _problem("masked", mask=mask)
    chunks = list(truncated_bptt(model, model.params, batch, loss, 3))
    assert [c.scored for c in chunks] == [True, False, True]
    assert chunks[1].value is None and chunks[1].grads is None
    assert chunks[1].cache is not None  # its forward still carries the state on
    value, grads, _ = _independent_chunk(model, model.params, batch, loss, 6, 7)
    _assert_grads_close(chunks[2].grads, grads)


def test_params_updated_between_chunks_are_used():
    """An SGD step after each scored chunk, in place: every chunk is computed at the params as
    updated so far, from the state the previous chunk reached at its (pre-update) params."""
    model, batch, loss = _problem("every", T=6)
    params = {k: v.copy() for k, v in model.params.items()}
    manual = {k: v.copy() for k, v in model.params.items()}
    lr, state = 0.1, None
    for chunk, (a, b) in zip(truncated_bptt(model, params, batch, loss, 2),
                             [(0, 2), (2, 4), (4, 6)]):
        value, grads, cache = objective.loss_and_grads(model, manual, batch.x[a:b],
                                                       batch.targets[a:b], loss, None, state)
        state = cache.final_state
        assert chunk.value == value  # same params, same state: the same operations
        _assert_grads_close(chunk.grads, grads, rtol=0)
        for k in params:
            params[k] -= lr * chunk.grads[k]
            manual[k] -= lr * grads[k]
    # without the updates the last chunk's gradient differs: the test can tell
    frozen = list(truncated_bptt(model, model.params, batch, loss, 2))
    assert not np.allclose(frozen[-1].grads["out.W"], chunk.grads["out.W"], rtol=1e-6)


def _inline_truncated_step(model, params, opt, x, targets, mask, loss, truncate):
    """The trainer's loop before it moved to truncated_bptt (rnnlab/train/trainer.py at
    ff248b7, without clipping), written out: chunks of ``truncate`` steps, state carried,
    one update per scored chunk."""
    T = x.shape[0]
    k = truncate if 0 < truncate < T else T
    state = None
    for a in range(0, T, k):
        b = min(a + k, T)
        if model.spec.outputs == "last":
            chunk_targets, chunk_mask, scored = targets, mask, b == T
        else:
            chunk_targets = targets[a:b]
            chunk_mask = None if mask is None else mask[a:b]
            scored = chunk_mask is None or bool(chunk_mask.any())
        if not scored:
            state = model.forward(params, x[a:b], state)[1].final_state
            continue
        _, grads, cache = objective.loss_and_grads(model, params, x[a:b], chunk_targets, loss,
                                                   chunk_mask, state)
        state = cache.final_state
        opt.step(params, grads)


@pytest.mark.parametrize("outputs,truncate", [("every", 3), ("last", 3), ("every", 0),
                                              ("masked", 2)])
def test_matches_the_inline_trainer_loop(outputs, truncate):
    """An optimizer stepping after each scored chunk gives the same updates as the trainer's
    former inline loop."""
    mask = np.ones((7, 2))
    mask[2:4] = 0  # with truncate = 2 the second chunk is unscored
    model, batch, loss = _problem(outputs, T=7, mask=mask if outputs == "masked" else None)
    ours = {k: v.copy() for k, v in model.params.items()}
    opt = SGD(lr=0.1)
    for chunk in truncated_bptt(model, ours, batch, loss, truncate):
        if chunk.scored:
            opt.step(ours, chunk.grads)
    theirs = {k: v.copy() for k, v in model.params.items()}
    inline_opt = SGD(lr=0.1)
    _inline_truncated_step(model, theirs, inline_opt, batch.x, batch.targets, batch.mask, loss,
                           truncate)
    updates = {("every", 3): 3, ("last", 3): 1, ("every", 0): 1, ("masked", 2): 3}
    assert opt.steps == inline_opt.steps == updates[outputs, truncate]
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k])  # the same operations in order


# ----------------------------------------------------------------------------- errors
def test_masked_outputs_without_mask_are_refused():
    model, batch, loss = _problem("masked")
    bare = Batch(batch.x, batch.targets)
    match = r"outputs='masked' needs a mask"
    with pytest.raises(ConfigError, match=match):
        objective.loss_value(model, model.params, bare.x, bare.targets, loss)
    with pytest.raises(ConfigError, match=match):
        objective.loss_and_grads(model, model.params, bare.x, bare.targets, loss)
    with pytest.raises(ConfigError, match=match):
        batch_loss_and_grads(model, model.params, bare, loss)
    with pytest.raises(ConfigError, match=match):  # at the call, before the first chunk
        truncated_bptt(model, model.params, bare, loss, 3)
    # every-step outputs without a mask are fine
    every, batch, loss = _problem("every")
    assert objective.loss_value(every, every.params, batch.x, batch.targets, loss) > 0


def test_truncated_bptt_bad_k_is_refused_at_the_call():
    model, batch, loss = _problem("every")
    with pytest.raises(ConfigError, match=r"k must be an integer >= 0; got -2"):
        truncated_bptt(model, model.params, batch, loss, -2)
    with pytest.raises(ConfigError, match=r"k must be an integer >= 0; got 2.5"):
        truncated_bptt(model, model.params, batch, loss, 2.5)


def test_batch_rows_slice_sequences_along_each_arrays_batch_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 2))
    every = Batch(x, rng.standard_normal((4, 5, 1)), (rng.random((4, 5)) > 0.5) * 1.0,
                  [rng.standard_normal((5, 3)), (rng.standard_normal((5, 2)),)])
    part = every.rows(1, 3, "every")
    np.testing.assert_array_equal(part.x, x[:, 1:3])
    np.testing.assert_array_equal(part.targets, every.targets[:, 1:3])
    np.testing.assert_array_equal(part.mask, every.mask[:, 1:3])
    np.testing.assert_array_equal(part.state[0], every.state[0][1:3])
    np.testing.assert_array_equal(part.state[1][0], every.state[1][0][1:3])  # nested state
    last = Batch(x, rng.standard_normal((5, 1))).rows(2, 5, "last")
    assert last.targets.shape == (3, 1) and last.mask is None and last.state is None
    with pytest.raises(ConfigError, match="0 <= a < b <= B = 5"):
        every.rows(3, 6, "every")
