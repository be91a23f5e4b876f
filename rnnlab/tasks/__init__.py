"""Tasks by name: what the CLI and the trainer can build."""
from .. import validate
from .adding import AddingProblem
from .base import Task

TASKS = {"adding": AddingProblem}


def make_task(name: str, **options) -> Task:
    """The task called ``name`` (one of :data:`TASKS`) built with ``options`` (e.g. ``T``)."""
    validate.choice("task", name, tuple(TASKS))
    return TASKS[name](**options)


__all__ = ["AddingProblem", "TASKS", "Task", "make_task"]
