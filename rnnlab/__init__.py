"""rnnlab: a from-scratch NumPy/CuPy engine for studying how recurrent networks train.

Every forward pass and every backpropagation through time is written by hand and checked
against finite differences; one backend switch (:mod:`rnnlab.backend`) runs the same array code
on NumPy or CuPy.
"""
from . import backend, gradcheck, losses, objective, params
from .config import RunConfig
from .errors import (BackendError, CheckpointError, ConfigError, DivergenceError,
                     RnnlabError)
from .models import MODELS, ElmanRNN, ElmanSpec, make_model
from .optim import OPTIMIZERS, SGD, Adam, clip_grad_norm, make_optimizer
from .tasks import TASKS, AddingProblem, make_task

__version__ = "0.1.0"

__all__ = ["Adam", "AddingProblem", "BackendError", "CheckpointError", "ConfigError",
           "DivergenceError", "ElmanRNN", "ElmanSpec", "MODELS", "OPTIMIZERS", "RnnlabError",
           "RunConfig", "SGD", "TASKS", "backend", "clip_grad_norm", "gradcheck", "losses",
           "make_model", "make_optimizer", "make_task", "objective", "params"]
