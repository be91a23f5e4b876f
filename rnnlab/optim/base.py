"""The optimizer interface.

An optimizer updates a parameter dict in place::

    opt.step(params, grads, **needs)

and declares in ``needs`` which extra keyword inputs it requires beyond the gradient, so a
trainer can supply them without knowing the optimizer:

=============  ==========================================================================
``"model"``    the model object (its ``spec`` gives the structure): Path-SGD, G-SGD
``"closure"``  ``closure(params) -> (loss, grads)`` re-evaluated on the same batch: PSGD (a
               second gradient at perturbed parameters), Hessian-free (loss closure)
``"gvp"``      ``gvp(params, v) -> G v``, a curvature-vector product: Hessian-free
=============  ==========================================================================

Per-parameter state ("slots", e.g. momentum buffers) is keyed by parameter name;
``state_dict()`` returns host arrays and plain numbers so checkpoints can store it, and
``load_state_dict`` restores it exactly.
"""
from __future__ import annotations

from .. import backend
from ..errors import ConfigError


class Optimizer:
    """Base class. Subclasses set ``name``, ``needs``, and implement :meth:`_update`."""

    name = "optimizer"
    needs: frozenset = frozenset()

    def __init__(self, **hyperparameters):
        self.hyperparameters = hyperparameters
        self.slots: dict = {}  # slot name -> {param name -> array}
        self.steps = 0

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"

    def step(self, params: dict, grads: dict, **needs) -> None:
        """Update ``params`` in place from ``grads`` (same keys) and whatever ``needs`` lists."""
        missing = self.needs - set(needs)
        if missing:
            raise ConfigError(f"{self.name} needs {sorted(missing)} passed to step()")
        if list(grads) != list(params):
            raise ConfigError(f"grads must have the keys of params {list(params)}; "
                              f"got {list(grads)}")
        self.steps += 1
        self._update(params, grads, **needs)

    def _update(self, params, grads, **needs):
        raise NotImplementedError

    def _slot(self, slot: str, name: str, like):
        """The slot array ``slot`` of parameter ``name`` (zeros like ``like`` on first use)."""
        per_param = self.slots.setdefault(slot, {})
        if name not in per_param:
            per_param[name] = backend.get_xp().zeros_like(like)
        return per_param[name]

    def state_dict(self) -> dict:
        """Slots as host arrays plus the step count, for checkpoints."""
        # copies: on NumPy to_host/to_device return the same array, and a saved state must not
        # change when the optimizer steps on (nor be shared by two optimizers that load it)
        return {"steps": self.steps,
                "slots": {s: {k: backend.to_host(a).copy() for k, a in d.items()}
                          for s, d in self.slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.steps = int(state["steps"])
        self.slots = {s: {k: backend.to_device(a).copy() for k, a in d.items()}
                      for s, d in state["slots"].items()}
