"""Hypothesis strategies shared by the test suite: small, bounded draws (style note 9).

Architectures are plain dicts of :class:`rnnlab.models.ElmanSpec` fields, so a test can pass them
to ``ElmanSpec(**arch)`` or ``ElmanRNN.create(**arch, ...)``. Weights and data are not drawn by
Hypothesis element by element (that is slow and shrinks badly); tests draw a ``seed`` and fill
arrays from ``numpy.random.default_rng(seed)`` on the host.
"""
from __future__ import annotations

from hypothesis import strategies as st

from rnnlab.models import ACTIVATIONS, OUTPUT_MODES

n_ins = st.integers(1, 3)
widths = st.integers(1, 5)
hiddens = st.lists(widths, min_size=1, max_size=3).map(tuple)
n_outs = st.integers(1, 3)
activations = st.sampled_from(ACTIVATIONS)
biases = st.booleans()
output_modes = st.sampled_from(OUTPUT_MODES)
lengths = st.integers(1, 6)        # T
batch_sizes = st.integers(1, 4)    # B
seeds = st.integers(0, 2**32 - 1)
gains = st.floats(0.25, 4.0)       # rescaling factors


@st.composite
def architectures(draw, activation=activations, outputs=output_modes, bias=biases):
    """A dict ``n_in, hidden, n_out, activation, bias, outputs`` for ``ElmanSpec``."""
    return {
        "n_in": draw(n_ins),
        "hidden": draw(hiddens),
        "n_out": draw(n_outs),
        "activation": draw(activation),
        "bias": draw(bias),
        "outputs": draw(outputs),
    }


@st.composite
def problems(draw, **arch_options):
    """``(arch, T, B, seed)``: an architecture, a sequence length, a batch size and a seed."""
    return draw(architectures(**arch_options)), draw(lengths), draw(batch_sizes), draw(seeds)


# ----------------------------------------------------------------------------- host data helpers
def spec_shapes(arch: dict) -> dict:
    """Parameter names and shapes for ``arch`` (written out here, not read from the library)."""
    shapes, fan_in = {}, arch["n_in"]
    for i, width in enumerate(arch["hidden"], start=1):
        shapes[f"layer{i}.W_in"] = (width, fan_in)
        shapes[f"layer{i}.W_rec"] = (width, width)
        if arch["bias"]:
            shapes[f"layer{i}.b"] = (width,)
        fan_in = width
    shapes["out.W"] = (arch["n_out"], fan_in)
    if arch["bias"]:
        shapes["out.b"] = (arch["n_out"],)
    return shapes


def host_arrays(arch: dict, rng, scale: float = 0.5) -> dict:
    """float64 host weights N(0, scale^2) (biases too, so they are exercised) for ``arch``."""
    return {name: scale * rng.standard_normal(shape) for name, shape in spec_shapes(arch).items()}


def host_state(arch: dict, B: int, rng) -> list:
    """A random float64 initial state, one (B, H_i) array per layer."""
    return [rng.standard_normal((B, width)) for width in arch["hidden"]]


def host_mask(T: int, B: int, rng):
    """A random 0/1 float64 (T, B) mask with at least one 1."""
    mask = (rng.random((T, B)) < 0.5).astype(float)
    mask[rng.integers(T), rng.integers(B)] = 1.0
    return mask
