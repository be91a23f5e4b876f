"""Training runs: the runner (:func:`run`), one update (:func:`train_step`), sinks, checkpoints,
learning-curve figures."""
from .run import RunResult, build, evaluate, run, supply_needs, train_step
from .sinks import FileSink, MemorySink, read_history

__all__ = ["FileSink", "MemorySink", "RunResult", "build", "evaluate", "read_history", "run",
           "supply_needs", "train_step"]
