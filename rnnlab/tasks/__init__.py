"""Tasks by name: what the CLI, config files and the trainer can build.

:data:`TASKS` is the registry; a new task is a new module whose class declares ``options``, plus
one ``TASKS.register(name, Class)`` line here.
"""
from ..options import Registry
from .adding import AddingProblem
from .base import Task
from .memory import Copying, Denoising, VariableCopying
from .mnist import SequentialMNIST
from .pathological import (Addition, Memory5, Memory20, Multiplication, RandomPermutation,
                           TemporalOrder2, TemporalOrder3, Xor)
from .text import PTBChar

TASKS = Registry("task")
TASKS.register("adding", AddingProblem)
TASKS.register("addition", Addition)
TASKS.register("multiplication", Multiplication)
TASKS.register("xor", Xor)
TASKS.register("order2", TemporalOrder2)
TASKS.register("order3", TemporalOrder3)
TASKS.register("permutation", RandomPermutation)
TASKS.register("memory5", Memory5)
TASKS.register("memory20", Memory20)
TASKS.register("smnist", SequentialMNIST)
TASKS.register("ptb-char", PTBChar)
TASKS.register("copying", Copying)
TASKS.register("variable-copying", VariableCopying)
TASKS.register("denoising", Denoising)


def make_task(name: str, dtype=None, **options) -> Task:
    """The task called ``name`` (one of :data:`TASKS`) built with its ``options`` (e.g. ``T``);
    options not given take their declared defaults."""
    return TASKS.get(name)(**TASKS.resolve(name, options), dtype=dtype)


__all__ = ["AddingProblem", "Addition", "Copying", "Denoising", "Memory20", "Memory5",
           "Multiplication", "PTBChar", "RandomPermutation", "SequentialMNIST", "TASKS", "Task",
           "TemporalOrder2", "TemporalOrder3", "VariableCopying", "Xor", "make_task"]
