"""Which models the path machinery supports, and the one check every entry point calls.

Path geometry (the unrolled DAG, the reduction graph, basis paths, path norms, rescalings) is
worked out for the stacked Elman RNN of ``path-sgd-relu-rnn.md`` Table 1 (``ElmanSpec.kind ==
"elman"``). Other model kinds ("lstm", "gru", ...) have gates, products of hidden values and
other parameter roles, so their graphs are not these graphs: every public entry point refuses
them with one :class:`~rnnlab.errors.ConfigError` naming the kind, instead of failing later on a
missing attribute or, worse, computing something for the wrong model.

Some claims further need ReLU: the squared-network formulas (Theorem 3 (path-sgd)), the path
decomposition of the output (Eq. 3 (gsgd)), node-wise rescaling invariance (Theorem 1
(path-sgd)) and Theorem 2 (gsgd) hold for positively homogeneous activations, so ``identity`` is
allowed there too; ``tanh`` is not.
"""
from __future__ import annotations

from ..errors import ConfigError

SUPPORTED_KIND = "elman"
POSITIVELY_HOMOGENEOUS = ("relu", "identity")


def require_elman(spec_or_model, *, what: str, activations=None):
    """The Elman spec of ``spec_or_model``, or a ConfigError saying why it is not supported.

    Parameters
    ----------
    spec_or_model : ElmanSpec or a model with a ``.spec`` (e.g. :class:`rnnlab.ElmanRNN`)
    what : str
        The function or class being called, named in the error.
    activations : tuple of str, optional
        The activations the claim behind ``what`` allows (e.g. :data:`POSITIVELY_HOMOGENEOUS`);
        None: any activation of the Elman RNN.

    Returns
    -------
    spec : the model's spec (the argument itself when it is a spec)
    """
    spec = getattr(spec_or_model, "spec", spec_or_model)
    kind = getattr(spec, "kind", None)
    if kind is None:
        raise ConfigError(f"{what}: path geometry supports the stacked Elman RNN "
                          f"({SUPPORTED_KIND!r}); got a {type(spec_or_model).__name__}, which is "
                          f"neither a model nor a model spec")
    if kind != SUPPORTED_KIND:
        raise ConfigError(f"path geometry supports the stacked Elman RNN ({SUPPORTED_KIND!r}); "
                          f"got model {kind!r} (in {what})")
    if getattr(spec, "layer_norm", False):
        # a normalised layer is not positively homogeneous: rescalings, path values and path
        # norms no longer describe the function it computes
        raise ConfigError(f"{what}: path geometry needs the un-normalised Elman RNN; got "
                          f"layer_norm = true (set layer_norm = false)")
    if activations is not None and spec.activation not in activations:
        if tuple(activations) == POSITIVELY_HOMOGENEOUS:
            need = ("needs ReLU ('relu'; 'identity' is allowed too: the claim holds for any "
                    "positively homogeneous activation)")
        else:
            need = f"needs activation {' or '.join(map(repr, activations))}"
        raise ConfigError(f"{what} {need}; got activation {spec.activation!r}")
    return spec


__all__ = ["POSITIVELY_HOMOGENEOUS", "SUPPORTED_KIND", "require_elman"]
