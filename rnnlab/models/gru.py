"""Stacked GRU with hand-written forward, backpropagation through time, and R-op.

Shapes: T steps, B batch, n_in inputs, H_l hidden units in layer l, n_out outputs; time-major.

Forward (Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder", eqs.
5-8, in the "reset after" form of cuDNN and ``torch.nn.GRU``, where the reset gate multiplies
the recurrent projection rather than the state; Keras ``reset_after=True``; with one bias per
gate, on the input side)::

    h_t^0 = x_t,   h_0^l = state^l (zeros unless given)
    a_t = W_in^l h_t^{l-1} + b^l,   u_t = W_rec^l h_{t-1}^l           (3 H_l,) gate-major: r z n
    r_t = sigma(a_t[r] + u_t[r]),   z_t = sigma(a_t[z] + u_t[z])
    n_t = tanh(a_t[n] + r_t * u_t[n])
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    y_t = W_out h_t^d + b_out

Weights (out, in), gate-major and contiguous: ``W_in^l : (3 H_l, H_{l-1})``,
``W_rec^l : (3 H_l, H_l)``, ``b^l : (3 H_l,)`` (rows r, z, n, PyTorch's order, so its weights
load unchanged; PyTorch's second bias b_hh has no counterpart: its n block would sit inside
r_t * (u_t[n] + b_hh[n])). Init: Glorot-uniform input blocks, Haar-orthogonal recurrent blocks
(Saxe et al. 2014), biases 0. The state of a layer is the array h (B, H_l). ``r_hidden`` of the
R-op is R h per layer, (T + 1, B, H_l); structural damping supports the ``"hidden"`` form only.

Layout of the computation: that of :mod:`rnnlab.models.lstm` (feature-major steps, a time-minor
``inputs`` array ``[h_{t-1}; h_t^{l-1}; 1]`` per layer, one weights-first GEMM per step each
way, weight gradients over chunks of steps). The gate rows run in the order z, r, n
(:data:`ORDER`); the per-step GEMM's stacked weights are ``[W_rec | W_in | b]`` for z and r
(their rows halved, for sigma through one tanh) and ``[W_rec | 0 | 0]`` for n, so it yields
the complete pre-activations of z and r and u_t[n]; the input part of n, a_t[n], is computed
for all steps before the loop. Each step's block of ``gates`` is ``[z, r, u_t[n], n]``.
"""
from __future__ import annotations

import dataclasses

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import check_d_hidden
from .elman import _check_hidden, _parse_hidden, _transposed
from .lstm import (LSTM, ChunkedProducts, LSTMSpec, Scratch, _sigmoid_, add_extra, carve,
                   columns, readout_backward_tm, readout_forward, stacked_inputs,
                   stacked_weights, unstack_gradient)

GATES = 3  # r, z, n
#: The order of the parameter gate blocks (r z n = 0 1 2) in the feature-major passes: z, r, n.
ORDER = (1, 0, 2)


@dataclasses.dataclass(frozen=True)
class GRUSpec(LSTMSpec):
    """The structure of a stacked GRU (fields as :class:`rnnlab.models.lstm.LSTMSpec`)."""

    kind = "gru"
    gates = GATES
    # (T, B) arrays per hidden unit (rnnlab.train.memory), counted from the code: the forward
    # keeps h (in the stacked inputs) and the 4 blocks of gates (z, r, u_n, n); training adds
    # the gradient arriving from the layer above in a stack (or structural damping's
    # d_hidden), and the gradients of the GEMM outputs for a chunk of steps only
    # (ChunkedProducts: 2 x 1 MiB, not per unit)
    train_arrays_per_unit = 6
    eval_arrays_per_unit = 5


@dataclasses.dataclass(frozen=True)
class GRUCache:
    """What the forward keeps.

    Attributes
    ----------
    x : (T, B, n_in)
    inputs : list of (K_l, T + 1, B)
        The per-step GEMM operands ``[h_t; h_{t+1}^{l-1}; 1]``, time-minor (as the LSTM's).
    h : list of (T + 1, B, H_l)
        Views of ``inputs``; ``h[l][0]`` is the initial state.
    gates : list of (T, 4 H_l, B)
        Per step t = 1..T, feature-major: ``[z, r, u_n, n]`` (the activated gates z, r, the
        recurrent projection of the candidate u_n = W_rec[n] h_{t-1} and the candidate n).
    """

    x: object
    inputs: list
    h: list
    gates: list

    @property
    def final_state(self) -> list:
        return [h[-1].copy() for h in self.h]


# ---------------------------------------------------------------------- batch-major steps
def gru_step(a, u, h_prev, gates, u_n, h_next):
    """One batch-major step from the input part ``a`` and recurrent part ``u`` of the
    pre-activations (both (B, 3H), PyTorch's gate order); writes ``gates : (B, 3H)``
    (``[r, z, n]``), ``u_n`` and ``h_next : (B, H)``. The reference form of the cell
    (``tests/test_gru.py`` checks the feature-major steps against it)."""
    xp = backend.get_xp()
    H = h_prev.shape[-1]
    u_n[...] = u[:, 2 * H:]
    xp.add(a[:, :2 * H], u[:, :2 * H], out=gates[:, :2 * H])
    _sigmoid_(gates[:, :2 * H])
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    xp.multiply(r, u_n, out=n)
    n += a[:, 2 * H:]
    xp.tanh(n, out=n)
    xp.subtract(h_prev, n, out=h_next)
    h_next *= z
    h_next += n


def gru_step_backward(dh, gates, u_n, h_prev, d_a, d_u):
    """From dLoss/dh_t ``dh`` write dLoss/da_t into ``d_a`` and dLoss/du_t into ``d_u`` (both
    (B, 3H), batch-major); returns the direct part ``z * dh`` of dLoss/dh_{t-1} (the caller
    adds ``d_u @ W_rec``)."""
    H = dh.shape[-1]
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    d_an = dh * (1 - z) * (1 - n * n)
    d_a[:, 2 * H:] = d_an
    d_u[:, 2 * H:] = d_an * r
    d_a[:, :H] = d_an * u_n * r * (1 - r)
    d_a[:, H:2 * H] = dh * (h_prev - n) * z * (1 - z)
    d_u[:, :2 * H] = d_a[:, :2 * H]
    return dh * z


def gru_step_rop(ra, ru, r_h_prev, gates, u_n, h_prev):
    """R h_t from R a_t, R u_t (both (B, 3H), batch-major) and R h_{t-1}."""
    H = r_h_prev.shape[-1]
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    r_r = (ra[:, :H] + ru[:, :H]) * r * (1 - r)
    r_z = (ra[:, H:2 * H] + ru[:, H:2 * H]) * z * (1 - z)
    r_n = (ra[:, 2 * H:] + r_r * u_n + r * ru[:, 2 * H:]) * (1 - n * n)
    return r_n + r_z * (h_prev - n) + z * (r_h_prev - r_n)


# ---------------------------------------------------------------------- feature-major steps
def gru_step_fm(a, h_prev, h_next, ws):
    """One feature-major step. ``a : (4H, B)`` holds ``[z_pre / 2, r_pre / 2, u_n, a_n]`` (the
    per-step GEMM's output in rows [0, 3H), the input part of n in rows [3H, 4H)) and becomes
    ``[z, r, u_n, n]``; h_t goes into ``h_next`` (a strided view is fine), from ``h_prev``
    (H, B); ``ws`` is a :class:`rnnlab.models.lstm.Scratch`. Nine elementwise calls."""
    xp = backend.get_xp()
    H = h_prev.shape[0]
    sig = a[:2 * H]
    xp.tanh(sig, out=sig)
    xp.multiply(sig, ws.half, out=sig)  # sigma(z) = 0.5 tanh(z / 2) + 0.5
    xp.add(sig, ws.half, out=sig)
    z, r, u_n, n = (a[k * H:(k + 1) * H] for k in range(4))
    xp.multiply(r, u_n, out=ws.tmp)
    xp.add(n, ws.tmp, out=n)
    xp.tanh(n, out=n)
    xp.subtract(h_prev, n, out=ws.tmp)  # h_t = n + z (h_{t-1} - n)
    xp.multiply(ws.tmp, z, out=ws.tmp)
    xp.add(n, ws.tmp, out=h_next)


def gru_step_backward_fm(dh, a, h_prev, dq, d_an, ws):
    """BPTT through one feature-major step: from dLoss/dh_t ``dh`` and the step's ``a : (4H,
    B)`` (``[z, r, u_n, n]``) and h_{t-1}, write the gradient of the per-step GEMM's output
    ``dq : (3H, B)`` (rows z, r, u_n) and of the input part of n ``d_an : (H, B)``, and turn
    ``dh`` into the direct part z dh of dLoss/dh_{t-1} (the caller adds W_rec^T dq). ``ws`` is
    a :class:`rnnlab.models.lstm.Scratch` (``d`` of 4H rows). 14 elementwise calls::

        d_an = dh (1 - z) (1 - n^2)
        dq = [dh (h_{t-1} - n) z (1 - z),  d_an u_n r (1 - r),  d_an r]
    """
    xp = backend.get_xp()
    H = dh.shape[0]
    d, tmp = ws.d, ws.tmp
    z, r, u_n, n = (a[k * H:(k + 1) * H] for k in range(4))
    xp.multiply(a, a, out=d)
    xp.subtract(a[:2 * H], d[:2 * H], out=d[:2 * H])  # s (1 - s) for z, r
    xp.subtract(ws.one, d[3 * H:], out=d[3 * H:])  # 1 - n^2
    xp.subtract(ws.one, z, out=tmp)
    xp.multiply(d[3 * H:], tmp, out=d[3 * H:])  # d h_t / d a_n = (1 - z) (1 - n^2)
    xp.subtract(h_prev, n, out=tmp)
    xp.multiply(d[:H], tmp, out=d[:H])  # d h_t / d z_pre
    xp.multiply(d[H:2 * H], u_n, out=d[H:2 * H])  # d n_pre / d r_pre
    xp.multiply(dh, d[3 * H:], out=d_an)
    xp.multiply(dh, d[:H], out=dq[:H])
    xp.multiply(d_an, d[H:2 * H], out=dq[H:2 * H])
    xp.multiply(d_an, r, out=dq[2 * H:])
    xp.multiply(dh, z, out=dh)


def gru_step_rop_fm(rq, r_an, r_h_prev, a, h_prev, r_h, ws):
    """Forward-mode through one feature-major step: ``rq : (3H, B)`` holds R of the per-step
    GEMM's output (R z_pre, R r_pre, R u_n; overwritten), ``r_an`` R of the input part of n;
    from R h_{t-1} ``r_h_prev`` write R h_t into ``r_h`` (a strided view is fine)::

        R n = (1 - n^2) (R a_n + R r u_n + r R u_n)
        R h_t = R n + R z (h_{t-1} - n) + z (R h_{t-1} - R n)
    """
    xp = backend.get_xp()
    H = h_prev.shape[0]
    d, tmp = ws.d, ws.tmp
    z, r, u_n, n = (a[k * H:(k + 1) * H] for k in range(4))
    xp.multiply(a, a, out=d)
    xp.subtract(a[:2 * H], d[:2 * H], out=d[:2 * H])  # s (1 - s)
    xp.subtract(ws.one, d[3 * H:], out=d[3 * H:])  # 1 - n^2
    xp.multiply(rq[:2 * H], d[:2 * H], out=rq[:2 * H])  # R z, R r
    r_z, r_r, r_un = rq[:H], rq[H:2 * H], rq[2 * H:]
    r_n = d[2 * H:3 * H]  # scratch rows (d's third block holds u_n^2, not needed)
    xp.multiply(r_r, u_n, out=r_n)
    xp.add(r_n, r_an, out=r_n)
    xp.multiply(r, r_un, out=tmp)
    xp.add(r_n, tmp, out=r_n)
    xp.multiply(r_n, d[3 * H:], out=r_n)
    xp.subtract(h_prev, n, out=tmp)
    xp.multiply(r_z, tmp, out=tmp)
    xp.add(r_n, tmp, out=r_h)
    xp.subtract(r_h_prev, r_n, out=tmp)
    xp.multiply(z, tmp, out=tmp)
    xp.add(r_h, tmp, out=r_h)


def _gru_weights(params: dict, i: int, bias: bool):
    """The per-step GEMM's stacked weights (3H, K), rows z, r, n, with the n rows' input and
    bias columns zero (u_n = W_rec[n] h_{t-1} only), and the input part of n, ``[W_in[n] | b[n]]``
    (H, K - H): a_n = that @ [below; 1]."""
    w = stacked_weights(params, i, ORDER, bias)
    H = w.shape[0] // GATES
    w_an = w[2 * H:, H:].copy()
    w[2 * H:, H:] = 0
    return w, w_an


class GRU:
    """A stacked GRU (see the module docstring); state per layer an array h (B, H_l)."""

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.flag("bias", True, "biases on the gates and the output"),
    )
    _spec_type = GRUSpec
    _cache_type = GRUCache
    spec_for = classmethod(LSTM.spec_for.__func__)  # bound to GRU: builds a GRUSpec
    _check_params = LSTM._check_params
    _check_cache = LSTM._check_cache

    def __init__(self, spec: GRUSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, hidden=100, layers=None,
              bias=True) -> "GRU":
        spec = cls.spec_for(n_in, n_out, outputs, hidden=hidden, layers=layers, bias=bias)
        seed = validate.positive_int("seed", seed, minimum=0)
        dtype = backend.resolve_dtype(dtype)
        rng = backend.host_rng(seed)
        np = backend.numpy
        host, fan_in = {}, n_in
        for i, H in enumerate(spec.hidden, start=1):
            host[f"layer{i}.W_in"] = np.concatenate(
                [inits.glorot_uniform(rng, H, fan_in) for _ in range(GATES)])
            host[f"layer{i}.W_rec"] = np.concatenate(
                [inits.orthogonal(rng, H) for _ in range(GATES)])
            if bias:
                host[f"layer{i}.b"] = np.zeros(GATES * H)
            fan_in = H
        host["out.W"] = inits.glorot_uniform(rng, n_out, fan_in)
        if bias:
            host["out.b"] = np.zeros(n_out)
        return cls(spec, {k: backend.to_device(host[k], dtype=dtype)
                          for k in spec.param_shapes()})

    def __repr__(self):
        s = self.spec
        return (f"GRU(n_in={s.n_in}, hidden={list(s.hidden)}, n_out={s.n_out}, bias={s.bias}, "
                f"outputs={s.outputs!r})")

    def _check_states(self, name, arrays, B, dtype=None):
        s = self.spec
        if len(arrays) != s.layers:
            raise ConfigError(f"{name} must hold one array per layer ({s.layers}); "
                              f"got {len(arrays)}")
        for i, (a, width) in enumerate(zip(arrays, s.hidden)):
            validate.float_array(f"{name}[{i}]", a, shape=(B, width), dtype=dtype,
                                 finite=dtype is not None)

    def forward(self, params: dict, x, state=None):
        """``x : (T, B, n_in)``, ``state`` a list of (B, H_l) (zeros if omitted); returns
        ``(y, GRUCache)``, y (T, B, n_out), or (B, n_out) for outputs "last"."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        validate.float_array("x", x, shape=(None, None, s.n_in), dtype=dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"x must have T >= 1 steps and B >= 1 sequences; got shape "
                              f"{tuple(x.shape)}")
        T, B, _ = x.shape
        if state is not None:
            self._check_states("state", state, B, dtype)
        below, ins, gs = x.transpose(2, 0, 1), [], []
        fan_ins = (s.n_in,) + s.hidden[:-1]
        arrays = carve([shape for H, n in zip(s.hidden, fan_ins) for shape in (
            (H + n + (1 if s.bias else 0), T + 1, B), (T, (GATES + 1) * H, B))], dtype)
        for i, H in enumerate(s.hidden, start=1):
            inputs, gates = arrays[2 * (i - 1):2 * i]
            stacked_inputs(below, H, s.bias, None if state is None else state[i - 1],
                           out=inputs)
            w, w_an = _gru_weights(params, i, s.bias)
            w[:2 * H] *= 0.5  # sigmoid rows: tanh(z / 2)
            # a_n for all steps, step-major: T small GEMMs into the gates' fourth block
            xp.matmul(w_an, inputs[H:, :T].transpose(1, 0, 2), out=gates[:, 3 * H:])
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            matmul = xp.matmul
            columns_t = list(inputs.transpose(1, 0, 2))  # step t's GEMM operand (K, B)
            for a, operand, h_next in zip(list(gates), columns_t[:T], columns_t[1:]):
                matmul(w, operand, out=a[:3 * H])
                gru_step_fm(a, operand[:H], h_next[:H], ws)
            ins.append(inputs), gs.append(gates)
            below = inputs[:H, 1:]
        y = readout_forward(s.outputs, params["out.W"], ins[-1][:s.hidden[-1]],
                            params.get("out.b"))
        return y, GRUCache(x=x, inputs=ins, gates=gs,
                           h=[a[:H].transpose(1, 2, 0) for a, H in zip(ins, s.hidden)])

    def backward(self, params: dict, dy, cache: GRUCache, d_final_state=None, d_hidden=None):
        """BPTT; ``d_final_state`` and the returned ``d_state`` are lists of (B, H_l),
        ``d_hidden`` a list of (T, B, H_l) (an extra dLoss/dh_t)."""
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: GRUCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, as BPTT computes it (through the readout, the
        layer above and all later steps): a list of (T, B, H_l)."""
        record = []
        self._backward(params, dy, cache, record=record)
        return record

    def _backward(self, params, dy, cache, d_final_state=None, d_hidden=None, record=None):
        """:meth:`backward`; with ``record`` (a list) it also puts dLoss/dh_t of every layer,
        (T, B, H_l) arrays in layer order, into ``record``."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_states("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        grads, d_last, dy_steps = readout_backward_tm(s, params, dy,
                                                      cache.inputs[-1][:s.hidden[-1]], T, B)
        w_out_t, d_above = params["out.W"].T, None
        d_state, recorded = [None] * s.layers, [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            inputs, gates = cache.inputs[i - 1], cache.gates[i - 1]
            fan_in = inputs.shape[0] - H - (1 if s.bias else 0)
            dh = xp.zeros((H, B), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1].T
            if d_last is not None:
                dh += d_last
            d_above = add_extra(d_above, None if d_hidden is None else d_hidden[i - 1])
            readout = dy_steps if i == s.layers else None
            w, w_an = _gru_weights(params, i, s.bias)
            w_rec_t = _transposed(w[:, :H])  # contiguous W_rec^T (see the LSTM's backward)
            # dz_t = [dq_t; d_an_t] (rows z, r, u_n, then a_n): sum_t dq_t [h; below; 1]^T (its
            # u_n rows' input columns are not needed), sum_t d_an_t [below; 1]^T, and for a
            # layer below W_in^T [dq_z; dq_r; d_an]
            left = None
            if i > 1:
                left = xp.zeros(((GATES + 1) * H, fan_in), dtype=dtype)
                left[:2 * H] = w[:2 * H, H:H + fan_in]
                left[3 * H:] = w_an[:, :fan_in]
            sums = ChunkedProducts((GATES + 1) * H, T, B, dtype, [
                (slice(0, GATES * H), inputs), (slice(GATES * H, None), inputs[H:])], left=left)
            rec = None if record is None else xp.empty((T, H, B), dtype=dtype)
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            g = xp.empty((H, B), dtype=dtype)
            add, matmul = xp.add, xp.matmul
            for t in range(T - 1, -1, -1):
                if d_above is not None:
                    add(dh, d_above[t], out=dh)
                if readout is not None:  # W_out^T dy_t
                    matmul(w_out_t, readout[t], out=ws.tmp)
                    add(dh, ws.tmp, out=dh)
                if rec is not None:
                    rec[t] = dh
                dz = sums.buffer(t)
                dq = dz[:GATES * H]
                gru_step_backward_fm(dh, gates[t], inputs[:H, t], dq, dz[GATES * H:], ws)
                matmul(w_rec_t, dq, out=g)
                add(dh, g, out=dh)
                sums.done(t)
            if rec is not None:
                recorded[i - 1] = rec.transpose(0, 2, 1)
            d_state[i - 1] = xp.ascontiguousarray(dh.T)
            d_w, d_w_an = sums.gradients
            d_w[2 * H:, H:] = d_w_an
            d_rec, d_in, d_b = unstack_gradient(d_w, H, fan_in, ORDER, s.bias)
            grads[f"layer{i}.W_rec"], grads[f"layer{i}.W_in"] = d_rec, d_in
            if s.bias:
                grads[f"layer{i}.b"] = d_b
            d_above, d_last = sums.through, None
        if record is not None:
            record.extend(recorded)
        return {k: grads[k] for k in params}, d_state

    def rop(self, params: dict, v: dict, cache: GRUCache):
        """Forward-mode J v (initial state constant); returns ``(r_y, r_h)`` with ``r_h`` a list
        of (T + 1, B, H_l), ``r_h[l][0] = 0`` (views of feature-major arrays)."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        r_below, r_hs = None, []
        for i, H in enumerate(s.hidden, start=1):
            inputs, gates = cache.inputs[i - 1], cache.gates[i - 1]
            fan_in = inputs.shape[0] - H - (1 if s.bias else 0)
            w, w_an = _gru_weights(params, i, s.bias)
            v_w, v_an = _gru_weights(v, i, s.bias)
            # the direction's terms of the per-step GEMM output and of a_n, for all steps,
            # step-major, plus those through R of the layer below
            cols = columns(inputs[:, :T])
            r_pre = (v_w @ cols).reshape(GATES * H, T, B).transpose(1, 0, 2).copy()
            r_an = (v_an @ cols[H:]).reshape(H, T, B).transpose(1, 0, 2).copy()
            if r_below is not None:
                r_pre += xp.matmul(w[:, H:H + fan_in], r_below)
                r_an += xp.matmul(w_an[:, :fan_in], r_below)
            w_rec = w[:, :H]
            r_h = xp.zeros((T + 1, H, B), dtype=dtype)
            rq = xp.empty((GATES * H, B), dtype=dtype)
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            for t in range(T):
                xp.matmul(w_rec, r_h[t], out=rq)
                xp.add(rq, r_pre[t], out=rq)
                gru_step_rop_fm(rq, r_an[t], r_h[t], gates[t], inputs[:H, t], r_h[t + 1], ws)
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.inputs[-1][:s.hidden[-1]], r_hs[-1].transpose(1, 0, 2)
        r_y = readout_forward(s.outputs, v["out.W"], top, v.get("out.b"))
        r_y += readout_forward(s.outputs, params["out.W"], r_top)
        return r_y, [r.transpose(0, 2, 1) for r in r_hs]

    def structural_damping(self, r_hidden, cache: GRUCache, form: str = "hidden"):
        """``form="hidden"``: dLoss/dh_t gains R h_t (penalty 1/2 sum_t ||R h_t||^2); the
        ``"matching"`` form is refused for gated cells. New arrays in the memory order of
        ``r_hidden``."""
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for gated cells "
                              "such as the GRU; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy(order="K") for r_h in r_hidden]
