"""rnnlab.params: the one flatten (backend vectors for the optimizers and checkers, float64 host
vectors in a spec's order for the path geometry) and the small helpers the trainer uses."""
from __future__ import annotations

import numpy as np
import pytest

from rnnlab import ConfigError, backend, params as P
from rnnlab.models import ElmanSpec

SPEC = ElmanSpec(2, (3, 2), 1, "relu", True, "every")


def numbered(spec=SPEC, dtype=np.float64):
    """Host params whose entries are their flat indices (C order within each array)."""
    out, start = {}, 0
    for name, shape in spec.param_shapes().items():
        size = int(np.prod(shape))
        out[name] = np.arange(start, start + size, dtype=dtype).reshape(shape)
        start += size
    return out


def test_flatten_round_trip_stays_on_the_backend(xp):
    host = numbered(dtype=np.float32)
    dev = {k: backend.to_device(v) for k, v in host.items()}
    vec, unflatten = P.flatten(dev)
    assert type(vec) is type(dev["out.W"]) and vec.dtype == np.float32
    assert np.array_equal(backend.to_host(vec), np.arange(vec.shape[0]))
    back = unflatten(vec)
    assert list(back) == list(dev)
    for k in dev:
        assert back[k].shape == dev[k].shape and type(back[k]) is type(vec)
        assert np.array_equal(backend.to_host(back[k]), host[k])
    with pytest.raises(ValueError, match=r"vector must have shape \(33,\)"):
        unflatten(vec[:-1])


def test_host_flatten_in_spec_order_is_float64(xp):
    dev = {k: backend.to_device(v, dtype="float32") for k, v in numbered().items()}
    vec, unflatten = P.flatten(dev, SPEC, host=True)
    assert type(vec) is np.ndarray and vec.dtype == np.float64
    assert np.array_equal(vec, np.arange(33))
    assert np.array_equal(P.host_vector(dev, SPEC), vec)
    back = unflatten(backend.to_device(vec))
    assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in back.values())
    back2 = P.unflatten(vec, SPEC, host=True)
    back2["out.W"][...] = -1                       # host unflatten copies: vec is untouched
    assert np.array_equal(vec, np.arange(33))
    assert all(np.array_equal(back[k], back2[k]) or k == "out.W" for k in back)


def test_host_vector_takes_a_dict_or_a_flat_vector():
    vec = P.host_vector(numbered(), SPEC)
    assert np.array_equal(P.host_vector(vec, SPEC), vec)
    assert np.array_equal(P.host_vector(vec.astype(np.float32), SPEC.param_shapes()), vec)
    with pytest.raises(ConfigError, match=r"flat parameter vector must have shape \(33,\)"):
        P.host_vector(np.ones(3), SPEC)
    with pytest.raises(ConfigError, match=r"flat parameter vector must have shape \(33,\)"):
        P.unflatten(np.ones(30), SPEC, host=True)


def test_a_layout_is_checked():
    p = numbered()
    with pytest.raises(ConfigError, match="must have the keys .* in that order"):
        P.host_vector(dict(reversed(list(p.items()))), SPEC)
    with pytest.raises(ConfigError, match="must have the keys"):
        P.flatten({k: v for k, v in p.items() if k != "out.b"}, SPEC)
    bad = dict(p, **{"layer2.W_rec": np.zeros((2, 3))})
    with pytest.raises(ConfigError, match=r"layer2.W_rec must have shape \(2, 2\); got "):
        P.flatten(bad, SPEC, host=True)
    assert P.layout(SPEC)[0] == ("layer1.W_in", (3, 2), 0, 6)
    assert P.layout(SPEC)[-1][3] == 33 == sum(v.size for v in p.values())


def test_empty_and_the_remaining_helpers(xp):
    vec, unflatten = P.flatten({})
    assert vec.shape == (0,) and unflatten(vec) == {}
    g = {"a": backend.to_device(np.array([3.0, 0.0])), "b": backend.to_device(np.array([[4.0]]))}
    assert P.global_norm(g) == 5.0
    z = P.zeros_like(g)
    assert list(z) == ["a", "b"] and all(float(backend.to_host(v).sum()) == 0 for v in z.values())
    assert not hasattr(P, "count") and not hasattr(P, "copy")     # removed: unused
