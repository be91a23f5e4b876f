"""Tasks by name: what the CLI, config files and the trainer can build.

:data:`TASKS` is the registry; a new task is a new module whose class declares ``options``, plus
one ``TASKS.register(name, Class)`` line here.
"""
from ..options import Registry
from .adding import AddingProblem
from .base import Task

TASKS = Registry("task")
TASKS.register("adding", AddingProblem)


def make_task(name: str, dtype=None, **options) -> Task:
    """The task called ``name`` (one of :data:`TASKS`) built with its ``options`` (e.g. ``T``);
    options not given take their declared defaults."""
    return TASKS.get(name)(**TASKS.resolve(name, options), dtype=dtype)


__all__ = ["AddingProblem", "TASKS", "Task", "make_task"]
