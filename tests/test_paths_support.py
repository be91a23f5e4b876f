"""Every public entry point of the path machinery refuses a model it does not support: another
model kind (with one message naming the kind), and a non-ReLU activation where the claim needs
ReLU (naming the function and saying identity is allowed); a model passed for its spec works."""
from __future__ import annotations

import dataclasses
import types
from fractions import Fraction

import numpy as np
import pytest

from rnnlab import ConfigError
from rnnlab.models import ElmanRNN, ElmanSpec
from rnnlab.params import host_vector, unflatten
from rnnlab.paths import norms, rescale
from rnnlab.paths.basis import BasisPaths, Skeleton, forward_exact
from rnnlab.paths.reduction import ReductionGraph
from rnnlab.paths.support import require_elman
from rnnlab.paths.unrolled import (UnrolledGraph, fit_T, n_params, param_index,
                                   param_names_flat)


@dataclasses.dataclass(frozen=True)
class LSTMSpec(ElmanSpec):
    """A throw-away spec of another kind. It has every Elman field and method, so an entry point
    that forgot to check the kind would run on it instead of refusing it."""

    kind = "lstm"


def _params(spec, seed=0):
    shapes = ElmanSpec.param_shapes(spec)
    m = sum(int(np.prod(s)) for s in shapes.values())
    return unflatten(0.5 * np.random.default_rng(seed).standard_normal(m), shapes, host=True)


def spec_of(activation="relu"):
    return ElmanSpec(2, (2,), 1, activation, True, "every")


T = 3
SKELETON = Skeleton.cyclic(spec_of())
ALPHA = [np.array([0.5, 2.0])]
PER_TIME = [np.ones((T, 2))]
W_EXACT = [Fraction(1, k + 2) for k in range(13)]   # m = 4 + 4 + 2 + 2 + 1
X_EXACT = [[[Fraction(1), Fraction(-1)]] for _ in range(T)]

# (name, call(spec, params)) for every public entry point that takes a spec
ENTRY_POINTS = [
    ("UnrolledGraph", lambda s, p: UnrolledGraph(s, T)),
    ("ReductionGraph", lambda s, p: ReductionGraph(s)),
    ("BasisPaths", lambda s, p: BasisPaths(s)),
    ("Skeleton", lambda s, p: Skeleton(s, SKELETON.in_masks, SKELETON.out_masks)),
    ("Skeleton.cyclic", lambda s, p: Skeleton.cyclic(s)),
    ("Skeleton.from_matrix_masks",
     lambda s, p: Skeleton.from_matrix_masks(s, SKELETON.matrix_masks())),
    ("forward_exact", lambda s, p: forward_exact(s, W_EXACT, X_EXACT)),
    ("n_params", lambda s, p: n_params(s)),
    ("param_index", lambda s, p: param_index(s, "out.W", (0, 0))),
    ("param_names_flat", lambda s, p: param_names_flat(s)),
    ("fit_T", lambda s, p: fit_T(s, T, 100)),
    ("gamma2_enumeration", lambda s, p: norms.gamma2_enumeration(s, p, T)),
    ("gamma2_recursion", lambda s, p: norms.gamma2_recursion(s, p, T)),
    ("gamma2_squared_network", lambda s, p: norms.gamma2_squared_network(s, p, T)),
    ("squared_params", lambda s, p: norms.squared_params(s, p)),
    ("squared_network_pass", lambda s, p: norms.squared_network_pass(s, p, T)),
    ("kappa", lambda s, p: norms.kappa(s, p, T)),
    ("kappa1_fast", lambda s, p: norms.kappa1_fast(s, p, T)),
    ("kappa2_fast", lambda s, p: norms.kappa2_fast(s, p, T)),
    ("kappa2_paper_matrix_form", lambda s, p: norms.kappa2_paper_matrix_form(s, p, T)),
    ("kappa_enumeration", lambda s, p: norms.kappa_enumeration(s, p, T)),
    ("kappa2_lemma1_literal", lambda s, p: norms.kappa2_lemma1_literal(s, p, T)),
    ("kappa2_theorem3_literal", lambda s, p: norms.kappa2_theorem3_literal(s, p, T)),
    ("kappa_finite_difference", lambda s, p: norms.kappa_finite_difference(s, p, T)),
    ("kappa_ratio", lambda s, p: norms.kappa_ratio(s, p, T)),
    ("rescaling_factors", lambda s, p: rescale.rescaling_factors(s, ALPHA)),
    ("rescale", lambda s, p: rescale.rescale(s, p, ALPHA)),
    ("random_alpha", lambda s, p: rescale.random_alpha(s, np.random.default_rng(0))),
    ("per_time_rescaling", lambda s, p: rescale.per_time_rescaling(s, p, T, PER_TIME)),
    ("feasible_rescaling_dimension", lambda s, p: rescale.feasible_rescaling_dimension(s, T)),
]
NEEDS_RELU = {"forward_exact", "gamma2_squared_network", "squared_network_pass", "kappa",
              "kappa1_fast", "kappa2_fast", "kappa2_paper_matrix_form",
              "kappa2_theorem3_literal", "kappa_finite_difference", "kappa_ratio",
              "rescaling_factors", "rescale"}
OTHER_KIND = r"path geometry supports the stacked Elman RNN \('elman'\); got model 'lstm'"


@pytest.mark.parametrize("name,call", ENTRY_POINTS, ids=[n for n, _ in ENTRY_POINTS])
def test_another_model_kind_is_refused_by_name(name, call):
    lstm = LSTMSpec(2, (2,), 1, "relu", True, "every")
    p = _params(lstm)
    for given in (lstm, types.SimpleNamespace(spec=lstm)):   # the spec, or a model holding it
        with pytest.raises(ConfigError, match=OTHER_KIND) as info:
            call(given, p)
        assert name.split(".")[0] in str(info.value)
    call(spec_of(), _params(spec_of()))                      # the same call on an Elman spec runs


@pytest.mark.parametrize("name,call", ENTRY_POINTS, ids=[n for n, _ in ENTRY_POINTS])
def test_tanh_is_refused_exactly_where_the_claim_needs_relu(name, call):
    tanh, identity = spec_of("tanh"), spec_of("identity")
    p = _params(tanh)
    if name in NEEDS_RELU:
        with pytest.raises(ConfigError) as info:
            call(tanh, p)
        message = str(info.value)
        assert name in message and "needs ReLU" in message and "got activation 'tanh'" in message
        assert "'identity' is allowed" in message and "positively homogeneous" in message
    else:
        call(tanh, p)                # structural or definition-based: any Elman activation
    call(identity, p)                # identity is positively homogeneous: always allowed


def test_the_path_decomposition_needs_relu():
    tanh = spec_of("tanh")
    paths = UnrolledGraph(tanh, 2).bulk()
    for method in (paths.activation, paths.output_terms, paths.reconstruct):
        with pytest.raises(ConfigError, match=r"PathSet.activation .*needs ReLU"):
            method(np.ones((2, 1, 2)), _params(tanh))


def test_a_model_is_accepted_for_its_spec():
    spec = spec_of()
    p = _params(spec)
    model = ElmanRNN(spec, p)
    assert UnrolledGraph(model, T).spec is spec and ReductionGraph(model).spec is spec
    assert BasisPaths(model).spec is spec
    assert np.array_equal(host_vector(norms.kappa(model, p, T), spec),
                          host_vector(norms.kappa(spec, p, T), spec))
    assert norms.gamma2_recursion(model, p, T) == norms.gamma2_recursion(spec, p, T)
    assert np.array_equal(host_vector(rescale.rescale(model, p, ALPHA), spec),
                          host_vector(rescale.rescale(spec, p, ALPHA), spec))
    assert require_elman(model, what="test") is spec


def test_require_elman_messages():
    with pytest.raises(ConfigError, match=r"neither a model nor a model spec") as info:
        require_elman({"n_in": 2}, what="UnrolledGraph")
    assert "UnrolledGraph" in str(info.value) and "dict" in str(info.value)
    with pytest.raises(ConfigError, match=OTHER_KIND + r" \(in my_function\)"):
        require_elman(types.SimpleNamespace(kind="lstm"), what="my_function")
    with pytest.raises(ConfigError, match=r"f needs activation 'relu'; got activation 'tanh'"):
        require_elman(spec_of("tanh"), activations=("relu",), what="f")
    spec = spec_of("tanh")
    assert require_elman(spec, what="f") is spec
