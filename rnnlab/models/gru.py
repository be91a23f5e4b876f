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
``W_rec^l : (3 H_l, H_l)``, ``b^l : (3 H_l,)`` (rows r, z, n, PyTorch's order): one GEMM for
the input projection of all steps, one (B, H) @ (H, 3H) GEMM per step. Init: Glorot-uniform
input blocks, Haar-orthogonal recurrent blocks (Saxe et al. 2014), biases 0. The state of a
layer is the array h (B, H_l). ``r_hidden`` of the R-op is R h per layer, (T + 1, B, H_l);
structural damping supports the ``"hidden"`` form only.
"""
from __future__ import annotations

import dataclasses

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .elman import _check_hidden, _parse_hidden
from .base import check_d_hidden, readout_backward
from .lstm import LSTM, LSTMSpec, _sigmoid_

GATES = 3  # r, z, n


@dataclasses.dataclass(frozen=True)
class GRUSpec(LSTMSpec):
    """The structure of a stacked GRU (fields as :class:`rnnlab.models.lstm.LSTMSpec`)."""

    kind = "gru"
    gates = GATES


@dataclasses.dataclass(frozen=True)
class GRUCache:
    """What the forward keeps.

    Attributes
    ----------
    x : (T, B, n_in)
    h : list of (T + 1, B, H_l)
        ``h[l][0]`` is the initial state.
    gates : list of (T, B, 3 H_l)
        Activated ``[r, z, n]`` of steps 1..T.
    u_n : list of (T, B, H_l)
        The recurrent projection of the candidate, ``W_rec[n] h_{t-1}``.
    """

    x: object
    h: list
    gates: list
    u_n: list

    @property
    def final_state(self) -> list:
        return [h[-1].copy() for h in self.h]


def gru_step(a, u, h_prev, gates, u_n, h_next):
    """One step from the input part ``a`` and recurrent part ``u`` of the pre-activations (both
    (B, 3H)); writes ``gates : (B, 3H)``, ``u_n`` and ``h_next : (B, H)``."""
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
    (B, 3H)); returns the direct part ``z * dh`` of dLoss/dh_{t-1} (the caller adds
    ``d_u @ W_rec``)."""
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
    """R h_t from R a_t, R u_t (both (B, 3H)) and R h_{t-1}."""
    H = r_h_prev.shape[-1]
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    r_r = (ra[:, :H] + ru[:, :H]) * r * (1 - r)
    r_z = (ra[:, H:2 * H] + ru[:, H:2 * H]) * z * (1 - z)
    r_n = (ra[:, 2 * H:] + r_r * u_n + r * ru[:, 2 * H:]) * (1 - n * n)
    return r_n + r_z * (h_prev - n) + z * (r_h_prev - r_n)


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
    _project = LSTM._project

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
        ``(y, GRUCache)``."""
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
        below, hs, gs, uns = x, [], [], []
        for i, H in enumerate(s.hidden, start=1):
            h = xp.empty((T + 1, B, H), dtype=dtype)
            h[0] = 0 if state is None else state[i - 1]
            gates = xp.empty((T, B, GATES * H), dtype=dtype)
            u_n = xp.empty((T, B, H), dtype=dtype)
            a = xp.empty((T, B, GATES * H), dtype=dtype)
            self._project(params, i, below, a)
            w_rec_t = params[f"layer{i}.W_rec"].T
            u = xp.empty((B, GATES * H), dtype=dtype)
            for t in range(T):
                xp.matmul(h[t], w_rec_t, out=u)
                gru_step(a[t], u, h[t], gates[t], u_n[t], h[t + 1])
            hs.append(h), gs.append(gates), uns.append(u_n)
            below = h[1:]
        top = hs[-1]
        if s.outputs == "last":
            y = top[T] @ params["out.W"].T
        else:
            y = (top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out)
        if s.bias:
            y += params["out.b"]
        return y, GRUCache(x=x, h=hs, gates=gs, u_n=uns)

    def backward(self, params: dict, dy, cache: GRUCache, d_final_state=None, d_hidden=None):
        """BPTT; ``d_final_state`` and the returned ``d_state`` are lists of (B, H_l),
        ``d_hidden`` a list of (T, B, H_l) (an extra dLoss/dh_t)."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_states("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        grads, d_from_above, d_last = readout_backward(s, params, dy, cache.h[-1], T, B)
        d_state = [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            h, gates, u_n = cache.h[i - 1], cache.gates[i - 1], cache.u_n[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            w_rec = params[f"layer{i}.W_rec"]
            dh = xp.zeros((B, H), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1]
            if d_last is not None:
                dh += d_last
            if d_hidden is not None:
                extra = d_hidden[i - 1]
                d_from_above = extra if d_from_above is None else d_from_above + extra
            d_a = xp.empty((T, B, GATES * H), dtype=dtype)
            d_u = xp.empty((T, B, GATES * H), dtype=dtype)
            for t in range(T - 1, -1, -1):
                if d_from_above is not None:
                    dh = dh + d_from_above[t]
                dh = gru_step_backward(dh, gates[t], u_n[t], h[t], d_a[t], d_u[t])
                dh += d_u[t] @ w_rec
            d_state[i - 1] = dh
            d_a2 = d_a.reshape(T * B, GATES * H)
            fan_in = below.shape[2]
            grads[f"layer{i}.W_rec"] = d_u.reshape(T * B, GATES * H).T @ h[:-1].reshape(T * B, H)
            grads[f"layer{i}.W_in"] = d_a2.T @ below.reshape(T * B, fan_in)
            if s.bias:
                grads[f"layer{i}.b"] = d_a2.sum(axis=0)
            if i > 1:
                d_from_above = (d_a2 @ params[f"layer{i}.W_in"]).reshape(T, B, fan_in)
            d_last = None
        return {k: grads[k] for k in params}, d_state

    def rop(self, params: dict, v: dict, cache: GRUCache):
        """Forward-mode J v (initial state constant); returns ``(r_y, r_h)`` with ``r_h`` a list
        of (T + 1, B, H_l), ``r_h[l][0] = 0``."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        r_below, r_hs = None, []
        for i, H in enumerate(s.hidden, start=1):
            h, gates, u_n = cache.h[i - 1], cache.gates[i - 1], cache.u_n[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            fan_in = below.shape[2]
            r_a = below.reshape(T * B, fan_in) @ v[f"layer{i}.W_in"].T
            if r_below is not None:
                r_a += r_below.reshape(T * B, fan_in) @ params[f"layer{i}.W_in"].T
            r_a = r_a.reshape(T, B, GATES * H)
            if s.bias:
                r_a += v[f"layer{i}.b"]
            r_u_static = (h[:-1].reshape(T * B, H) @ v[f"layer{i}.W_rec"].T).reshape(
                T, B, GATES * H)
            w_rec_t = params[f"layer{i}.W_rec"].T
            r_h = xp.zeros((T + 1, B, H), dtype=dtype)
            for t in range(T):
                ru = r_u_static[t] + r_h[t] @ w_rec_t
                r_h[t + 1] = gru_step_rop(r_a[t], ru, r_h[t], gates[t], u_n[t], h[t])
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.h[-1], r_hs[-1]
        if s.outputs == "last":
            r_y = top[T] @ v["out.W"].T + r_top[T] @ params["out.W"].T
        else:
            r_y = ((top[1:].reshape(T * B, -1) @ v["out.W"].T
                    + r_top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out))
        if s.bias:
            r_y += v["out.b"]
        return r_y, r_hs

    def structural_damping(self, r_hidden, cache: GRUCache, form: str = "hidden"):
        """``form="hidden"``: dLoss/dh_t gains R h_t (penalty 1/2 sum_t ||R h_t||^2); the
        ``"matching"`` form is refused for gated cells."""
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for gated cells "
                              "such as the GRU; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy() for r_h in r_hidden]
