"""Stacked Non-saturating Recurrent Unit (NRU) with hand-written forward, BPTT and R-op.

Shapes: T steps, B batch, n_in inputs, H_l hidden units of layer l (l = 1..d), m memory size,
k heads (k write and k erase heads), s = sqrt(k m), n_out outputs. Arrays are time-major:
``x : (T, B, n_in)``.

Forward (Chandar, Sankar, Vorontsov, Kahou & Bengio 2019, "Towards non-saturating recurrent
units for modelling long-term dependencies", ``nru.md`` eqs. 9-17, as the authors' code
``apsarath/NRU`` ``nru_project/NRU.py`` (``NRUCell.forward``) computes them)::

    h_t^0 = x_t,   (h_0^l, m_0^l) = state^l (zeros unless given)
    h_t   = ReLU(W_h [h_t^{l-1}; h_{t-1}; m_{t-1}] + b_h)                           (9)
    g_t   = W_heads [h_t; m_{t-1}] + b_heads          (2k + 4s,) rows: alpha beta p q p' q'
    alpha = phi(g[alpha]),  beta = phi(g[beta])                       (k,) each  (11, 12)
    Vw    = reshape_{k x m}(vec(p q^T)),  Ve = reshape_{k x m}(vec(p' q'^T))        (15-17)
    Vw, Ve <- phi(.), then every row v <- v / max(||v||_5, 1e-12)               (13, 14, 17)
    m_t   = m_{t-1} + c sum_{i=1..k} (alpha_i Vw_i - beta_i Ve_i)                       (10)
    y_t   = W_out h_t^d + b_out

with phi = ReLU for ``relu_heads=True`` and the identity otherwise ("linear heads", the code's
default and the paper's choice for every task but character language modelling), vec the
row-major flatten of the (s, s) outer product split into k consecutive rows of length m (the
paper's "2 sqrt(km)" form of the outer-product trick, which it says the implementation uses),
and c = 1/k (``head_sum="mean"``) or 1 (``head_sum="sum"``).

Where the authors' code differs from the paper, rnnlab follows the code:

(a) eq. 10 sums over the heads; the code takes the mean (``torch.mean(add - forget, dim=1)``),
    c = 1/k. ``head_sum="sum"`` gives the paper's form, for comparisons with the text.
(b) eqs. 11-16 let alpha, beta and the directions depend on (x_t, h_t, m_{t-1}); the code
    feeds the heads [h_t; m_{t-1}] only (no x_t).
(c) eq. 9 writes three matrices W_h, W_i, W_c; the code has one Linear on the concatenation
    [x_t; h_{t-1}; m_{t-1}] (the same function; here one matrix ``W_h`` with its columns in the
    code's order, so the code's weights map over unchanged).
(d) the code's ``activation`` argument (tanh by default) is never used: h is always ReLU, as
    eq. 9 says.
Not carried over: the code's optional layer norm on the pre-activation of h (off by default),
and its restriction of the initial state to h (m_0 is always 0 there; here both can be given).

Weights are stored (out, in), contiguous: ``W_h^l : (H_l, H_{l-1} + H_l + m)``, ``b_h^l :
(H_l,)``, ``W_heads^l : (2k + 4s, H_l + m)`` with rows ``[0, k)`` alpha, ``[k, 2k)`` beta,
``[2k, 2k+s)`` p, ``[2k+s, 2k+2s)`` q, then p' and q' of the erase directions (the code's four
head Linears ``hm2alpha``, ``hm2beta``, ``hm2v_alpha``, ``hm2v_beta`` stacked), ``b_heads^l :
(2k + 4s,)``. The input columns of ``W_h`` project all T steps in one GEMM; each step is one
(B, H + m) @ (H + m, H) GEMM for h and one (B, H + m) @ (H + m, 2k + 4s) GEMM for all heads,
both on a rolling (B, H + m) buffer that holds [h_{t-1}; m_{t-1}], then [h_t; m_{t-1}].
The recurrent state of a layer is the pair ``(h, m)``, (B, H_l) and (B, m).

Initialisation as the code: the cell's Linear layers (``W_h``, ``W_heads`` and their biases)
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for ``nn.Linear`` (fan_in H_{l-1} + H_l
+ m for ``W_h``, H_l + m for every head); output Xavier-normal, std sqrt(2 / (H_d + n_out)),
``b_out = 0``. ``sqrt(k m)`` must be an integer (the code asserts it).

The cache keeps h, m, the head pre-activations g and the clamped L5 norms per step; the
directions (2 k m numbers per step and sequence, more than everything else together) are
recomputed from g in the backward and the R-op.

BPTT: the memory passes its gradient on unchanged (dL/dm_{t-1} = dL/dm_t + the terms through
the heads and h_t), the additive path the paper credits for the absence of vanishing
gradients. The L5 normalisation y = v / n, n = max(||v||_5, 1e-12), has the backward
dL/dv = (dL/dy - (dL/dy . y) |y|^3 y) / n, the second term absent where n is clamped
(``optimizers.md`` 7.1). R-op (forward-mode J v, the initial state held constant): every
nonlinearity linearised; ``r_hidden`` is R h per layer, (T + 1, B, H_l), so structural damping's
``"hidden"`` form (a penalty 1/2 sum_t ||R h_t||^2 on the hidden outputs) applies; the
``"matching"`` form is defined for a single hidden nonlinearity and is refused.
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from .base import StackedSpec, check_d_hidden, readout, readout_backward, readout_rop
from .elman import _check_hidden, _parse_hidden

HEAD_SUMS = ("mean", "sum")
NORM_EPS = 1e-12  # torch.nn.functional.normalize's eps, as the authors' code calls it


def check_heads(memory: int, heads: int) -> int:
    """s = sqrt(memory * heads), which the outer-product trick needs to be an integer."""
    memory = validate.positive_int("memory", memory)
    heads = validate.positive_int("heads", heads)
    root = math.isqrt(memory * heads)
    if root * root != memory * heads:
        # memory = heads always qualifies, so the search is never empty
        near = [m for m in range(1, 2 * memory + heads + 1)
                if math.isqrt(m * heads) ** 2 == m * heads]
        closest = min(near, key=lambda m: (abs(m - memory), m))
        raise ConfigError(f"memory * heads must be a perfect square (the directions are the "
                          f"outer product of two sqrt(memory * heads)-vectors); got memory = "
                          f"{memory}, heads = {heads} ({memory * heads}); e.g. memory = "
                          f"{closest} with heads = {heads}")
    return root


@dataclasses.dataclass(frozen=True)
class HeadLayout:
    """The heads of one NRU layer: k heads over a memory of m, phi = ReLU or identity, and c,
    the weight of each head in the memory update (1/k for the mean, 1 for the sum)."""

    k: int
    m: int
    relu: bool
    scale: float

    @property
    def root(self) -> int:
        """s = sqrt(k m): the length of p and q."""
        return math.isqrt(self.k * self.m)

    @property
    def rows(self) -> int:
        """2k + 4s: alpha, beta, p, q, p', q'."""
        return 2 * self.k + 4 * self.root


@dataclasses.dataclass(frozen=True)
class NRUSpec(StackedSpec):
    """The structure of a stacked NRU, readable without running it.

    Attributes
    ----------
    n_in : int
    hidden : tuple of int
        Widths H_1..H_d.
    n_out : int
    memory : int
        m, the memory size of every layer.
    heads : int
        k, the number of write heads (and of erase heads).
    relu_heads : bool
        phi = ReLU on alpha, beta and the directions (False: linear heads).
    head_sum : {"mean", "sum"}
        How the heads' writes combine: the code's mean or the paper's sum (eq. 10).
    bias : bool
        Biases on the cell, the heads and the output.
    outputs : {"every", "last", "masked"}
    """

    n_in: int
    hidden: tuple
    n_out: int
    memory: int = 64
    heads: int = 4
    relu_heads: bool = False
    head_sum: str = "mean"
    bias: bool = True
    outputs: str = "last"

    kind = "nru"

    def __post_init__(self):
        self._check_stack()
        check_heads(self.memory, self.heads)
        if not isinstance(self.relu_heads, bool):
            raise ConfigError(f"relu_heads must be True or False; got {self.relu_heads!r}")
        validate.choice("head_sum", self.head_sum, HEAD_SUMS)

    @property
    def head_layout(self) -> HeadLayout:
        scale = 1.0 / self.heads if self.head_sum == "mean" else 1.0
        return HeadLayout(self.heads, self.memory, self.relu_heads, scale)

    def param_shapes(self) -> dict:
        """Parameter names and shapes, in the model's fixed order."""
        shapes, fan_in, m, rows = {}, self.n_in, self.memory, self.head_layout.rows
        for i, width in enumerate(self.hidden, start=1):
            shapes[f"layer{i}.W_h"] = (width, fan_in + width + m)
            if self.bias:
                shapes[f"layer{i}.b_h"] = (width,)
            shapes[f"layer{i}.W_heads"] = (rows, width + m)
            if self.bias:
                shapes[f"layer{i}.b_heads"] = (rows,)
            fan_in = width
        shapes["out.W"] = (self.n_out, fan_in)
        if self.bias:
            shapes["out.b"] = (self.n_out,)
        return shapes

    # (T, B) arrays per hidden unit (rnnlab.train.memory), memory-sized ones in units of H
    # rounded up. Per layer and step the forward keeps h (H), m (m), the heads g (2k + 4s) and
    # the norms (2k), with the pre-activation of h (H) as workspace; BPTT adds dz (H) and dg
    # (2k + 4s).
    def _per_unit(self, per_hidden: int, per_layer: int) -> int:
        total = sum(self.hidden)
        return -(-(per_hidden * total + self.layers * per_layer) // total)

    @property
    def eval_arrays_per_unit(self) -> int:
        heads = self.head_layout
        return self._per_unit(2, self.memory + heads.rows + 2 * heads.k)

    @property
    def train_arrays_per_unit(self) -> int:
        heads = self.head_layout
        return self._per_unit(3, self.memory + 2 * heads.rows + 2 * heads.k)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"hidden": list(self.hidden)}


@dataclasses.dataclass(frozen=True)
class NRUCache:
    """What the forward pass keeps for BPTT and the R-op.

    Attributes
    ----------
    x : (T, B, n_in)
    h : list of d arrays (T + 1, B, H_l)
        Hidden outputs per layer; ``h[l][0]`` is the initial state.
    m : list of d arrays (T + 1, B, m)
        Memories per layer; ``m[l][0]`` is the initial memory.
    heads : list of d arrays (T, B, 2k + 4s)
        The head pre-activations g_t (alpha, beta, p, q, p', q'; before phi) of steps 1..T.
    norms : list of d arrays (T, B, 2k)
        max(||phi(v)||_5, 1e-12) of the k write then the k erase directions of steps 1..T.
    """

    x: object
    h: list
    m: list
    heads: list
    norms: list

    @property
    def final_state(self) -> list:
        """``[(h_T, m_T)]`` per layer, (B, H_l) and (B, m): the next chunk's ``state``."""
        return [(h[-1].copy(), m[-1].copy()) for h, m in zip(self.h, self.m)]


# ---------------------------------------------------------------------- L5 normalisation
def l5_normalize(u):
    """y = u / n along the last axis, n = max(||u||_5, 1e-12) (``torch.nn.functional.normalize``
    with p = 5, as the authors' code).

    Parameters
    ----------
    u : (..., m)

    Returns
    -------
    y : (..., m)
    n : (..., 1)
    """
    xp = backend.get_xp()
    a = xp.abs(u)
    # scaled by the largest entry so a**5 neither overflows (float32 at |u| > 5e7) nor
    # underflows; the norm is the same number
    top = xp.maximum(a.max(axis=-1, keepdims=True), xp.finfo(u.dtype).tiny)
    a /= top
    a2 = a * a
    n = top * ((a2 * a2 * a).sum(axis=-1, keepdims=True)) ** 0.2
    xp.maximum(n, NORM_EPS, out=n)
    return u / n, n


def _l5_slope(y, n):
    """|y|^3 y, where the norm is not clamped (0 where it is: n is then a constant)."""
    return (y * y) * (backend.get_xp().abs(y) * y) * (n > NORM_EPS)


def l5_normalize_backward(dy, y, n):
    """dLoss/du from dLoss/dy ``dy`` for y = l5_normalize(u) (``y``, ``n`` its outputs):
    (dy - (dy . y) |y|^3 y) / n."""
    return (dy - (dy * y).sum(axis=-1, keepdims=True) * _l5_slope(y, n)) / n


def l5_normalize_rop(ru, y, n):
    """R y from R u ``ru``: (R u - y (|y|^3 y . R u)) / n."""
    return (ru - y * (_l5_slope(y, n) * ru).sum(axis=-1, keepdims=True)) / n


# ---------------------------------------------------------------------- heads and memory
def _signed(ab, heads: HeadLayout):
    """c [a_write, -a_erase] from a (B, 2, k) pair of per-head quantities (a new array)."""
    out = ab * heads.scale
    out[:, 1] *= -1
    return out


def _coefficients(g, heads: HeadLayout):
    """c [phi(alpha), -phi(beta)] of a step, (B, 2, k)."""
    ab = g[:, :2 * heads.k].reshape(-1, 2, heads.k)
    return _signed(backend.get_xp().maximum(ab, 0) if heads.relu else ab, heads)


def _outer(g, heads: HeadLayout):
    """The raw directions vec(p q^T) of the write and the erase heads, (B, 2, k, m) (before
    phi), and [p, q] as (B, 2, 2, s)."""
    B, k, s = g.shape[0], heads.k, heads.root
    pq = g[:, 2 * k:].reshape(B, 2, 2, s)
    raw = (pq[:, :, 0, :, None] * pq[:, :, 1, None, :]).reshape(B, 2, k, heads.m)
    return raw, pq


def _directions(g, norms, heads: HeadLayout):
    """From a step's head pre-activations and stored norms: the raw directions (B, 2, k, m),
    the normalised ones y (B, 2, k, m), the norms (B, 2, k, 1) and [p, q] (B, 2, 2, s)."""
    raw, pq = _outer(g, heads)
    u = backend.get_xp().maximum(raw, 0) if heads.relu else raw
    n = norms.reshape(raw.shape[:3] + (1,))
    return raw, u / n, n, pq


def nru_memory_step(g, m_prev, heads: HeadLayout, m_next, norms):
    """The memory write of one step (eqs. 10-17): from the head pre-activations ``g : (B, 2k +
    4s)`` and m_{t-1} ``m_prev : (B, m)``, write m_t into ``m_next : (B, m)`` and the clamped
    norms of the directions into ``norms : (B, 2k)``."""
    xp = backend.get_xp()
    B, k, m = g.shape[0], heads.k, heads.m
    raw, _ = _outer(g, heads)
    y, n = l5_normalize(xp.maximum(raw, 0) if heads.relu else raw)
    norms[...] = n.reshape(B, 2 * k)
    coef = _coefficients(g, heads).reshape(B, 1, 2 * k)
    xp.add(m_prev, (coef @ y.reshape(B, 2 * k, m))[:, 0], out=m_next)


def nru_memory_step_backward(dm, g, norms, heads: HeadLayout, dg):
    """BPTT through one memory write: from dLoss/dm_t ``dm : (B, m)`` write dLoss/dg_t into
    ``dg : (B, 2k + 4s)``. (dLoss/dm_{t-1} also gains ``dm`` itself: the caller's identity
    path.)"""
    xp = backend.get_xp()
    B, k, m, s = g.shape[0], heads.k, heads.m, heads.root
    raw, y, n, pq = _directions(g, norms, heads)
    # coef_i multiplies y_i: coef_i gets <dm, y_i>, y_i gets coef_i dm
    d_coef = (y.reshape(B, 2 * k, m) @ dm[:, :, None]).reshape(B, 2, k)
    coef = _coefficients(g, heads)
    du = l5_normalize_backward(coef[..., None] * dm[:, None, None, :], y, n)
    if heads.relu:
        du *= raw > 0
    d_outer = du.reshape(B, 2, s, s)
    dp = (d_outer @ pq[:, :, 1, :, None])[..., 0]  # dp_i = sum_j dO_ij q_j
    dq = (pq[:, :, 0, None, :] @ d_outer)[:, :, 0]  # dq_j = sum_i p_i dO_ij
    d_ab = _signed(d_coef, heads)
    if heads.relu:
        d_ab *= g[:, :2 * k].reshape(B, 2, k) > 0
    dg[:, :2 * k] = d_ab.reshape(B, 2 * k)
    dg[:, 2 * k:] = xp.stack([dp, dq], axis=2).reshape(B, 4 * s)


def nru_memory_step_rop(rg, g, norms, heads: HeadLayout):
    """Forward-mode through one memory write: from R g_t ``rg : (B, 2k + 4s)`` return
    R m_t - R m_{t-1}, (B, m)."""
    B, k, m, s = g.shape[0], heads.k, heads.m, heads.root
    raw, y, n, pq = _directions(g, norms, heads)
    rpq = rg[:, 2 * k:].reshape(B, 2, 2, s)
    r_raw = (rpq[:, :, 0, :, None] * pq[:, :, 1, None, :]
             + pq[:, :, 0, :, None] * rpq[:, :, 1, None, :]).reshape(B, 2, k, m)
    if heads.relu:
        r_raw *= raw > 0
    r_y = l5_normalize_rop(r_raw, y, n)
    r_coef = _signed(rg[:, :2 * k].reshape(B, 2, k), heads)
    if heads.relu:
        r_coef *= g[:, :2 * k].reshape(B, 2, k) > 0
    coef = _coefficients(g, heads)
    return ((r_coef.reshape(B, 1, 2 * k) @ y.reshape(B, 2 * k, m))[:, 0]
            + (coef.reshape(B, 1, 2 * k) @ r_y.reshape(B, 2 * k, m))[:, 0])


# ---------------------------------------------------------------------- the model
def _widths(hidden, layers) -> tuple:
    """The layer widths ``hidden`` and ``layers`` describe (as the other stacked models)."""
    if isinstance(hidden, int):
        return (hidden,) * (layers or 1)
    widths = tuple(hidden)
    if layers is not None and layers != len(widths):
        raise ConfigError(f"layers ({layers}) must equal the number of widths in hidden "
                          f"{list(widths)}, or be left out")
    return widths


class NRU:
    """A stacked NRU (see the module docstring). Holds ``spec`` and ``params``; the compute
    methods take ``params`` explicitly and keep per-call state in the returned cache."""

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.integer("memory", 64, "memory size m of every layer (memory * heads must be a "
                       "perfect square)", minimum=1),
        Option.integer("heads", 4, "write heads k (and as many erase heads)", minimum=1),
        Option.flag("relu_heads", False, "ReLU on alpha, beta and the directions (false: "
                    "linear heads, the authors' default)"),
        Option.choice("head_sum", "mean", "how heads combine: mean (the authors' code) or sum "
                      "(the paper's eq. 10)", HEAD_SUMS),
        Option.flag("bias", True, "biases on the cell, the heads and the output"),
    )
    structural_form = "hidden"  # Hessian-free's default structural-damping form for this model

    def __init__(self, spec: NRUSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    @classmethod
    def spec_for(cls, n_in, n_out, outputs, *, hidden=100, layers=None, memory=64, heads=4,
                 relu_heads=False, head_sum="mean", bias=True) -> NRUSpec:
        """The structure the options describe, without drawing weights."""
        return NRUSpec(n_in, _widths(hidden, layers), n_out, memory=memory, heads=heads,
                       relu_heads=relu_heads, head_sum=head_sum, bias=bias, outputs=outputs)

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, **options) -> "NRU":
        """A freshly initialised model (what ``make_model("nru", ...)`` builds)."""
        spec = cls.spec_for(n_in, n_out, outputs, **options)
        seed = validate.positive_int("seed", seed, minimum=0)
        dtype = backend.resolve_dtype(dtype)
        rng = backend.host_rng(seed)
        m, rows = spec.memory, spec.head_layout.rows
        host, fan_in = {}, n_in
        for i, H in enumerate(spec.hidden, start=1):
            # nn.Linear's default: weights and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(fan_in + H + m)
            host[f"layer{i}.W_h"] = rng.uniform(-bound, bound, size=(H, fan_in + H + m))
            host[f"layer{i}.b_h"] = rng.uniform(-bound, bound, size=H)
            bound = 1.0 / math.sqrt(H + m)
            host[f"layer{i}.W_heads"] = rng.uniform(-bound, bound, size=(rows, H + m))
            host[f"layer{i}.b_heads"] = rng.uniform(-bound, bound, size=rows)
            fan_in = H
        host["out.W"] = rng.standard_normal((n_out, fan_in)) * math.sqrt(2.0 / (fan_in + n_out))
        host["out.b"] = backend.numpy.zeros(n_out)
        params = {k: backend.to_device(host[k], dtype=dtype) for k in spec.param_shapes()}
        return cls(spec, params)

    def __repr__(self):
        s = self.spec
        return (f"NRU(n_in={s.n_in}, hidden={list(s.hidden)}, n_out={s.n_out}, "
                f"memory={s.memory}, heads={s.heads}, relu_heads={s.relu_heads}, "
                f"head_sum={s.head_sum!r}, bias={s.bias}, outputs={s.outputs!r})")

    # ------------------------------------------------------------------ checks
    def _check_params(self, params, v=None):
        shapes = self.spec.param_shapes()
        dtype = validate.param_arrays("params", params, shapes)
        if v is not None:
            validate.param_arrays("v", v, shapes, dtype=dtype)
        return dtype

    def _check_cache(self, cache, dtype):
        if not isinstance(cache, NRUCache):
            raise ConfigError(f"cache must be the NRUCache that forward() returned; got "
                              f"{type(cache).__name__}")
        x, s = cache.x, self.spec
        T, B = x.shape[0], x.shape[1]
        want = [((T + 1, B, w), (T + 1, B, s.memory)) for w in s.hidden]
        got = [(tuple(h.shape), tuple(m.shape)) for h, m in zip(cache.h, cache.m)]
        if x.dtype != dtype or got != want:
            raise ConfigError(f"cache does not come from this model's forward() at {dtype} "
                              f"parameters: (h, m) shapes {got} of {x.dtype}, expected {want} "
                              f"of {dtype}")
        return T, B

    def _check_pairs(self, name, pairs, B, dtype=None):
        s = self.spec
        if not isinstance(pairs, (list, tuple)) or len(pairs) != s.layers:
            raise ConfigError(f"{name} must be a list of one (h, m) pair per layer "
                              f"({s.layers}); got {type(pairs).__name__}"
                              + (f" of {len(pairs)}" if isinstance(pairs, (list, tuple))
                                 else ""))
        for i, (pair, width) in enumerate(zip(pairs, s.hidden)):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"{name}[{i}] must be a pair (h, m) of (B, {width}) and "
                                  f"(B, {s.memory}) arrays; got {type(pair).__name__}")
            for part, a, size in zip("hm", pair, (width, s.memory)):
                validate.float_array(f"{name}[{i}].{part}", a, shape=(B, size), dtype=dtype,
                                     finite=dtype is not None)

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, x, state=None):
        """Run the network over ``x : (T, B, n_in)``; ``state`` is a list of ``(h, m)`` pairs,
        (B, H_l) and (B, m) (zeros if omitted). Returns ``y`` ((T, B, n_out), or (B, n_out)
        for outputs "last") and an :class:`NRUCache`.

        Notes
        -----
        ``nru.md`` eqs. 9-17 in the authors' code's form (module docstring).
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        validate.float_array("x", x, shape=(None, None, s.n_in), dtype=dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"x must have T >= 1 steps and B >= 1 sequences; got shape "
                              f"{tuple(x.shape)}")
        T, B, _ = x.shape
        if state is not None:
            self._check_pairs("state", state, B, dtype)
        heads, M = s.head_layout, s.memory
        below, hs, ms, gs, ns = x, [], [], [], []
        for i, H in enumerate(s.hidden, start=1):
            fan_in = below.shape[2]
            h = xp.empty((T + 1, B, H), dtype=dtype)
            m = xp.empty((T + 1, B, M), dtype=dtype)
            h[0], m[0] = (0, 0) if state is None else state[i - 1]
            g = xp.empty((T, B, heads.rows), dtype=dtype)
            norms = xp.empty((T, B, 2 * heads.k), dtype=dtype)
            w_h = params[f"layer{i}.W_h"]
            z = xp.empty((T, B, H), dtype=dtype)
            xp.matmul(below.reshape(T * B, fan_in), w_h[:, :fan_in].T, out=z.reshape(T * B, H))
            if s.bias:
                z += params[f"layer{i}.b_h"]
            w_state_t = xp.ascontiguousarray(w_h[:, fan_in:].T)
            w_heads_t = params[f"layer{i}.W_heads"].T
            hm = xp.concatenate([h[0], m[0]], axis=1)  # [h_{t-1}; m_{t-1}], then [h_t; m_{t-1}]
            for t in range(T):
                z[t] += hm @ w_state_t
                xp.maximum(z[t], 0, out=h[t + 1])
                hm[:, :H] = h[t + 1]
                xp.matmul(hm, w_heads_t, out=g[t])
                if s.bias:
                    g[t] += params[f"layer{i}.b_heads"]
                nru_memory_step(g[t], m[t], heads, m[t + 1], norms[t])
                hm[:, H:] = m[t + 1]
            hs.append(h), ms.append(m), gs.append(g), ns.append(norms)
            below = h[1:]
        top = hs[-1]
        y = readout(s, params, top, T, B)
        return y, NRUCache(x=x, h=hs, m=ms, heads=gs, norms=ns)

    def memory(self, cache: NRUCache) -> list:
        """The memories m_0..m_T per layer, (T + 1, B, m) each (the cache's arrays)."""
        if not isinstance(cache, NRUCache):
            raise ConfigError(f"cache must be the NRUCache that forward() returned; got "
                              f"{type(cache).__name__}")
        return list(cache.m)

    # ------------------------------------------------------------------ backward
    def backward(self, params: dict, dy, cache: NRUCache, d_final_state=None, d_hidden=None):
        """BPTT.

        Parameters
        ----------
        dy : like the forward's y
        d_final_state : list of (dh_T, dm_T) pairs, (B, H_l) and (B, m), optional
        d_hidden : list of (T, B, H_l), optional
            Extra dLoss/dh_t for t = 1..T per layer (structural damping).

        Returns
        -------
        grads : dict with the keys of ``params``
        d_state : list of (dh_0, dm_0) pairs, (B, H_l) and (B, m)
        """
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: NRUCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, (T, B, H_l): what reaches h_t from the readout,
        the layer above and the later steps, with m_t held fixed, as for a state (so entry
        t - 1 is the h part of the ``d_state`` of a chunk that starts after step t; the path
        h_t -> heads -> m_t of step t itself is inside that gradient's m part)."""
        record = [None] * self.spec.layers
        self._backward(params, dy, cache, record=record)
        return record

    def _backward(self, params, dy, cache, d_final_state=None, d_hidden=None, record=None):
        """BPTT (see :meth:`backward`); with ``record`` (a list of one None per layer), also
        store there each layer's dLoss/dh_t (see :meth:`hidden_gradients`)."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_pairs("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        grads, d_from_above, d_last = readout_backward(s, params, dy, cache.h[-1], T, B)
        heads, M = s.head_layout, s.memory
        d_state = [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            h, m, g, norms = cache.h[i - 1], cache.m[i - 1], cache.heads[i - 1], cache.norms[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            fan_in = below.shape[2]
            w_h = params[f"layer{i}.W_h"]
            w_state, w_heads = w_h[:, fan_in:], params[f"layer{i}.W_heads"]
            dh = xp.zeros((B, H), dtype=dtype)
            dm = xp.zeros((B, M), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1][0]
                dm += d_final_state[i - 1][1]
            if d_last is not None:
                dh += d_last
            if d_hidden is not None:
                extra = d_hidden[i - 1]
                d_from_above = extra if d_from_above is None else d_from_above + extra
            rec = None if record is None else xp.empty((T, B, H), dtype=dtype)
            dz = xp.empty((T, B, H), dtype=dtype)
            dg = xp.empty((T, B, heads.rows), dtype=dtype)
            for t in range(T - 1, -1, -1):
                if d_from_above is not None:
                    dh += d_from_above[t]
                if rec is not None:
                    rec[t] = dh
                nru_memory_step_backward(dm, g[t], norms[t], heads, dg[t])
                d_in = dg[t] @ w_heads  # through the heads' input [h_t; m_{t-1}]
                dh += d_in[:, :H]
                xp.multiply(dh, h[t + 1] > 0, out=dz[t])
                d_prev = dz[t] @ w_state  # through h_t's input [h_{t-1}; m_{t-1}]
                dh = d_prev[:, :H]
                dm += d_in[:, H:]
                dm += d_prev[:, H:]
            d_state[i - 1] = (xp.ascontiguousarray(dh), dm)
            if rec is not None:
                record[i - 1] = rec
            dz2 = dz.reshape(T * B, H)
            dg2 = dg.reshape(T * B, heads.rows)
            g_w = xp.empty_like(w_h)
            g_w[:, :fan_in] = dz2.T @ below.reshape(T * B, fan_in)
            g_w[:, fan_in:fan_in + H] = dz2.T @ h[:-1].reshape(T * B, H)
            g_w[:, fan_in + H:] = dz2.T @ m[:-1].reshape(T * B, M)
            grads[f"layer{i}.W_h"] = g_w
            g_heads = xp.empty_like(w_heads)
            g_heads[:, :H] = dg2.T @ h[1:].reshape(T * B, H)
            g_heads[:, H:] = dg2.T @ m[:-1].reshape(T * B, M)
            grads[f"layer{i}.W_heads"] = g_heads
            if s.bias:
                grads[f"layer{i}.b_h"] = dz2.sum(axis=0)
                grads[f"layer{i}.b_heads"] = dg2.sum(axis=0)
            if i > 1:
                d_from_above = (dz2 @ w_h[:, :fan_in]).reshape(T, B, fan_in)
            d_last = None
        return {k: grads[k] for k in params}, d_state

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: NRUCache):
        """Forward-mode J v along ``v`` (keys of ``params``), the initial state constant.

        Returns
        -------
        r_y : like y
        r_h : list of (T + 1, B, H_l)
            R h_t per layer (``r_h[l][0]`` is zero).
        """
        r_y, r_h, _ = self._rop(params, v, cache)
        return r_y, r_h

    def _rop(self, params, v, cache):
        """:meth:`rop` and R m_t per layer, (T + 1, B, m)."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        heads, M = s.head_layout, s.memory
        x = cache.x
        r_below, r_hs, r_ms = None, [], []
        for i, H in enumerate(s.hidden, start=1):
            h, m, g, norms = cache.h[i - 1], cache.m[i - 1], cache.heads[i - 1], cache.norms[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            fan_in = below.shape[2]
            w_h, v_h = params[f"layer{i}.W_h"], v[f"layer{i}.W_h"]
            v_heads = v[f"layer{i}.W_heads"]
            h_prev, m_prev = h[:-1].reshape(T * B, H), m[:-1].reshape(T * B, M)
            # the terms of R z_t and R g_t that do not depend on R h_{t-1}, R m_{t-1}: all T
            r_z = (below.reshape(T * B, fan_in) @ v_h[:, :fan_in].T
                   + h_prev @ v_h[:, fan_in:fan_in + H].T + m_prev @ v_h[:, fan_in + H:].T)
            if r_below is not None:
                r_z += r_below.reshape(T * B, fan_in) @ w_h[:, :fan_in].T
            r_z = r_z.reshape(T, B, H)
            r_g = (h[1:].reshape(T * B, H) @ v_heads[:, :H].T
                   + m_prev @ v_heads[:, H:].T).reshape(T, B, heads.rows)
            if s.bias:
                r_z += v[f"layer{i}.b_h"]
                r_g += v[f"layer{i}.b_heads"]
            w_state_t = xp.ascontiguousarray(w_h[:, fan_in:].T)
            w_heads_t = params[f"layer{i}.W_heads"].T
            r_h = xp.zeros((T + 1, B, H), dtype=dtype)
            r_m = xp.zeros((T + 1, B, M), dtype=dtype)
            r_hm = xp.zeros((B, H + M), dtype=dtype)  # [R h_{t-1}; R m_{t-1}], then R h_t
            for t in range(T):
                rz = r_z[t] + r_hm @ w_state_t
                xp.multiply(rz, h[t + 1] > 0, out=r_h[t + 1])
                r_hm[:, :H] = r_h[t + 1]
                rg = r_g[t] + r_hm @ w_heads_t
                xp.add(r_m[t], nru_memory_step_rop(rg, g[t], norms[t], heads), out=r_m[t + 1])
                r_hm[:, H:] = r_m[t + 1]
            r_hs.append(r_h), r_ms.append(r_m)
            r_below = r_h[1:]
        top, r_top = cache.h[-1], r_hs[-1]
        r_y = readout_rop(s, params, v, top, r_top, T, B)
        return r_y, r_hs, r_ms

    # ------------------------------------------------------------------ structural damping
    def structural_damping(self, r_hidden, cache: NRUCache, form: str = "hidden"):
        """The ``d_hidden`` of structural damping of strength 1 with the penalty
        1/2 sum_t ||R h_t||^2 on the hidden outputs (``form="hidden"``): dLoss/dh_t gains R h_t.

        Parameters
        ----------
        r_hidden : list of (T + 1, B, H_l)
            From :meth:`rop`.

        Returns
        -------
        list of (T, B, H_l)
        """
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for the NRU, "
                              "whose memory update is not one; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy() for r_h in r_hidden]
