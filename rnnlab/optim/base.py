"""The optimizer interface.

An optimizer updates a parameter dict in place and may report metrics of its own::

    metrics = opt.step(params, grads, **needs)      # {} or e.g. {"cg_iterations": 12}

It declares its hyper-parameters in ``options`` (a tuple of :class:`rnnlab.options.Option`: one
source of defaults and checks for the Python API, config files and the CLI) and in ``needs``
which extra keyword inputs it requires beyond the gradient; the trainer supplies exactly those:

=============  ==========================================================================
``"model"``    the model object (its ``spec`` gives the structure): Path-SGD, G-SGD
``"batch"``    the :class:`rnnlab.objective.Batch` in use (x, targets, mask, initial state;
               ``batch.T`` is the unroll length of this update, shorter under truncated BPTT)
``"closure"``  ``closure(params, rows=None) -> (loss, grads)`` re-evaluated on the same
               batch (or its sequences ``rows = (a, b)``) at any parameter point: PSGD (a
               second gradient)
``"loss"``     ``loss(params, rows=None) -> float``, the loss alone (a forward pass):
               Hessian-free (reduction ratio, backtracking, line search)
``"gvp"``      ``gvp(params, v, rows=None, structural=0.0, structural_form="matching") ->
               G v``, the Gauss-Newton matrix at ``params`` on the same batch (or ``rows``)
               times a direction ``v``, optionally with structural damping
               (:func:`rnnlab.objective.gauss_newton_product`): Hessian-free
=============  ==========================================================================

State for checkpoints: ``slots`` (per-parameter arrays such as momentum buffers, keyed by slot
then parameter name) and ``state`` (anything else: scalars such as a damping factor, arrays such
as preconditioner factors or masks, nested in dicts and lists). ``state_dict()`` returns both as
host copies with the step count; ``load_state_dict`` restores them exactly.
"""
from __future__ import annotations

from .. import backend
from ..errors import ConfigError
from ..options import Registry, resolve

NEEDS = ("model", "batch", "closure", "loss", "gvp")

OPTIMIZERS = Registry("optimizer")


def _map_arrays(tree, fn):
    """``tree`` (dicts, lists, tuples, scalars, arrays) with every array replaced by fn(array)."""
    if isinstance(tree, dict):
        return {k: _map_arrays(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_arrays(v, fn) for v in tree)
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return fn(tree)
    return tree


def host_copy(tree):
    """A deep copy of a state tree with every array on the host (for checkpoints)."""
    return _map_arrays(tree, lambda a: backend.to_host(a).copy())


def device_copy(tree):
    """A deep copy of a state tree with every array on the active backend."""
    return _map_arrays(tree, lambda a: backend.to_device(a).copy())


def _refuse_gradient(name, p, g):
    """Raise the ConfigError saying how gradient ``name`` fails to match its parameter."""
    if not (hasattr(p, "shape") and hasattr(p, "dtype")):
        raise ConfigError(f"params[{name!r}] must be an array (it is updated in place); "
                          f"got {type(p).__name__}")
    label = f"grads[{name!r}]"
    if type(g) is not type(p):
        raise ConfigError(f"{label} must be a {type(p).__module__.split('.')[0]}."
                          f"{type(p).__name__} like its parameter; got {type(g).__name__}")
    if tuple(g.shape) != tuple(p.shape):
        raise ConfigError(f"{label} must have its parameter's shape {tuple(p.shape)}; "
                          f"got {tuple(g.shape)}")
    raise ConfigError(f"{label} must have a dtype of the parameter's kind ({p.dtype}); "
                      f"got {g.dtype}")


class Optimizer:
    """Base class. Subclasses set ``name``, ``options``, ``needs``, and implement
    :meth:`_update` (which may return a dict of step metrics); :meth:`_validate` may check rules
    that involve several options."""

    name = "optimizer"
    options: tuple = ()
    needs: frozenset = frozenset()

    def __init__(self, **hyperparameters):
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ConfigError(f"{self.name} declares needs {sorted(unknown)}; a trainer supplies "
                              f"only {', '.join(NEEDS)}")
        self.hyperparameters = resolve(f"optimizer {self.name!r}", self.options,
                                       hyperparameters)
        self._validate(self.hyperparameters)
        self.slots: dict = {}  # slot name -> {param name -> array}
        self.state: dict = {}  # structured state: scalars, arrays, nested dicts/lists
        self.steps = 0

    def _validate(self, hyperparameters: dict) -> None:
        """Checks across options (raise ConfigError); none by default."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"

    def step(self, params: dict, grads: dict, **needs) -> dict:
        """Update ``params`` in place from ``grads`` (same keys) and whatever ``needs`` lists.

        Returns the optimizer's own metrics of this step (a dict of floats, possibly empty);
        the trainer averages them over each logging window into the metrics file.
        """
        missing = set(self.needs) - set(needs)
        if missing:
            raise ConfigError(f"{self.name} needs {sorted(missing)} passed to step()")
        if list(grads) != list(params):
            raise ConfigError(f"grads must have the keys of params {list(params)}; "
                              f"got {list(grads)}")
        for name, p in params.items():
            g = grads[name]
            # same array type, shape and dtype kind: an in-place update would broadcast a (1,)
            # gradient over a (4,) bias, or cast an integer one, without a word
            try:
                ok = (type(g) is type(p) and g.shape == p.shape
                      and g.dtype.kind == p.dtype.kind)
            except AttributeError:  # not arrays
                ok = False
            if not ok:
                _refuse_gradient(name, p, g)
        self.steps += 1
        return self._update(params, grads, **needs) or {}

    def _update(self, params, grads, **needs):
        raise NotImplementedError

    def _slot(self, slot: str, name: str, like):
        """The slot array ``slot`` of parameter ``name`` (zeros like ``like`` on first use)."""
        per_param = self.slots.setdefault(slot, {})
        if name not in per_param:
            per_param[name] = backend.get_xp().zeros_like(like)
        return per_param[name]

    def state_dict(self) -> dict:
        """Step count, slots and structured state as host copies, for checkpoints."""
        # copies: on NumPy to_host/to_device return the same array, and a saved state must not
        # change when the optimizer steps on (nor be shared by two optimizers that load it)
        return {"steps": self.steps, "slots": host_copy(self.slots),
                "state": host_copy(self.state)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.steps = int(state["steps"])
        self.slots = device_copy(state["slots"])
        self.state = device_copy(state.get("state", {}))


def optimizer_options_text() -> str:
    """Each registered optimizer's options with defaults, one per line (for ``--help``)."""
    return "\n".join(f"  {name}: " + " ".join(o.describe() for o in OPTIMIZERS.options(name))
                     for name in OPTIMIZERS)
