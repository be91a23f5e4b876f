"""Where a run's metrics, checkpoints and figures go.

:func:`rnnlab.train.run` computes; a sink keeps. Both sinks below answer the same five calls:

``start(config, resume) -> (history, checkpoint)``
    Prepare for a run. With ``resume`` return the last checkpoint ``(state, meta)`` and the
    metrics records up to its step (records after it are dropped, so the history matches the
    parameters); otherwise ``([], None)``.
``record(record)``
    Keep one metrics record (a JSON-able dict with ``kind`` and ``step``) as soon as it is made.
``save_checkpoint(state, meta)``
    Keep the run's state (a tree of host or device arrays, see :mod:`.checkpoint`).
``checkpoint_location() -> str``
    Where the last checkpoint is, for messages.
``finish(result)``
    The run ended (any status): draw figures, close files.

:class:`FileSink` writes a run folder; :class:`MemorySink` keeps everything in memory (tests,
sweep workers that send results back to a driver).
"""
from __future__ import annotations

import json
import os

from . import checkpoint
from .plots import plot_learning_curves

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CURVE_FILE = "learning_curve.png"


class MemorySink:
    """Keeps records and the last checkpoint in memory (host copies). ``records`` is the
    history; ``checkpoint`` is ``(state, meta)`` or None."""

    def __init__(self):
        self.records: list = []
        self.checkpoint = None
        self.result = None

    def start(self, config, resume: bool):
        if not resume:
            self.records, self.checkpoint = [], None
            return [], None
        if self.checkpoint is None:
            from ..errors import CheckpointError
            raise CheckpointError("no checkpoint in this memory sink; start the run without "
                                  "resume")
        step = self.checkpoint[1]["step"]
        self.records = [r for r in self.records if r["step"] <= step]
        return list(self.records), self.checkpoint

    def record(self, record: dict) -> None:
        self.records.append(dict(record))

    def save_checkpoint(self, state: dict, meta: dict) -> None:
        from ..optim.base import host_copy
        self.checkpoint = (host_copy(state), json.loads(json.dumps(meta)))

    def checkpoint_location(self) -> str:
        return "in memory"

    def finish(self, result) -> None:
        self.result = result


class FileSink:
    """A run folder: ``config.json``, ``metrics.jsonl`` (one JSON record per line, appended and
    flushed as each is made), ``checkpoint.npz`` (atomic) and ``learning_curve.png``.

    Parameters
    ----------
    folder : str
        The run's folder (created if missing).
    plot : bool
        Draw ``learning_curve.png`` when the run ends.
    """

    def __init__(self, folder: str, plot: bool = True):
        self.folder = folder
        self.plot = plot
        self._metrics = None
        self._history: list = []

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.folder, checkpoint.FILENAME)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.folder, METRICS_FILE)

    def start(self, config, resume: bool):
        os.makedirs(self.folder, exist_ok=True)
        loaded, history = None, []
        if resume:
            loaded = checkpoint.load(self.checkpoint_path)
            history = [r for r in read_history(self.metrics_path) if r["step"] <= loaded[1]["step"]]
        # rewrite the kept records, then append from here on
        tmp = self.metrics_path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)
        os.replace(tmp, self.metrics_path)
        with open(os.path.join(self.folder, CONFIG_FILE), "w") as f:
            f.write(config.to_json())
        self._metrics = open(self.metrics_path, "a")
        self._history = list(history)
        return history, loaded

    def record(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        self._history.append(record)

    def save_checkpoint(self, state: dict, meta: dict) -> None:
        checkpoint.save(self.checkpoint_path, state, meta)

    def checkpoint_location(self) -> str:
        return self.checkpoint_path

    def finish(self, result) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self.plot and result.metric is not None and any(
                r["kind"] == "eval" for r in self._history):
            plot_learning_curves({result.config.model.get("activation", result.config.model[
                "name"]): self._history}, os.path.join(self.folder, CURVE_FILE),
                metric=result.metric, baseline=result.baseline, title=result.title)


def read_history(path: str) -> list:
    """The records of a ``metrics.jsonl`` file ([] if it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
