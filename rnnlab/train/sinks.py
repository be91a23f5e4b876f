"""Where a run's metrics, checkpoints and figures go.

:func:`rnnlab.train.run` computes; a sink keeps. Both sinks below answer the same five calls:

``start(config, resume) -> (history, checkpoint)``
    Prepare for a run. With ``resume`` return the last checkpoint ``(state, meta)`` and the
    metrics records up to its step (records after it are dropped, so the history matches the
    parameters, and so is the "test" record of a finished run that now continues); otherwise
    ``([], None)``.
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

import errno
import fcntl
import json
import os

from ..errors import CheckpointError, ConfigError, SinkError
from . import checkpoint
from .diagnostics import FLOW_FILE, gradient_flow_figure
from .plots import plot_learning_curves

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CURVE_FILE = "learning_curve.png"
LOCK_FILE = ".lock"


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
            raise CheckpointError("no checkpoint in this memory sink; start the run without "
                                  "resume")
        step = self.checkpoint[1]["step"]
        self.records = [r for r in self.records if r["step"] <= step and r["kind"] != "test"]
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
    flushed as each is made), ``checkpoint.npz`` (atomic), ``learning_curve.png`` and, when
    the run records gradient flow (``train.flow_every``), ``gradient_flow.png``.

    The folder is locked while a run uses it (``.lock``, an advisory ``flock`` that the system
    releases when the process ends, however it ends), so a second run on the same folder is
    refused instead of interleaving with the first. A folder that already holds a run is only
    continued (``resume``) or, with ``overwrite=True``, started over; never silently replaced.
    Failures to write (a full disk, a read-only or missing folder) raise :class:`SinkError` naming
    the file; checkpoints are atomic, so the previous one stays intact.

    Parameters
    ----------
    folder : str
        The run's folder (created if missing).
    plot : bool
        Draw ``learning_curve.png`` (and ``gradient_flow.png``) when the run ends.
    overwrite : bool
        Start a new run in a folder that holds one (its files are replaced).
    """

    def __init__(self, folder: str, plot: bool = True, overwrite: bool = False):
        if not isinstance(folder, str) or not folder.strip():
            raise ConfigError(f"the run folder must be a non-empty path; got {folder!r}")
        self.folder = folder
        self.plot = plot
        self.overwrite = overwrite
        self._metrics = None
        self._lock = None
        self._history: list = []

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.folder, checkpoint.FILENAME)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.folder, METRICS_FILE)

    def _acquire(self) -> None:
        self._lock = lock_folder(self.folder, "run folder", "--out")

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def start(self, config, resume: bool):
        self._acquire()
        try:
            return self._start(config, resume)
        except BaseException:
            self._release()
            raise

    def _start(self, config, resume):
        loaded, history = None, []
        if resume:
            loaded = checkpoint.load(self.checkpoint_path)
            step = loaded[1]["step"]
            history = [r for r in read_history(self.metrics_path) if r["step"] <= step and r["kind"] != "test"]
        elif not self.overwrite and any(os.path.exists(os.path.join(self.folder, f))
                                        for f in (checkpoint.FILENAME, METRICS_FILE)):
            raise ConfigError(f"run folder {self.folder} already holds a run; continue it with "
                              "--resume, start it over with --overwrite, or choose another "
                              "--out")
        # rewrite the kept records, then append from here on
        self._write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in history))
        document = dict(config.to_dict(), environment=environment())
        self._write(os.path.join(self.folder, CONFIG_FILE), json.dumps(document, indent=2))
        self._metrics = self._guard(lambda: open(self.metrics_path, "a"), self.metrics_path)
        self._history = list(history)
        return history, loaded

    def _guard(self, action, path):
        """Run ``action``; an OSError becomes a one-line SinkError naming ``path``."""
        try:
            return action()
        except OSError as exc:
            full = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            raise SinkError(f"could not write {path}: {exc.strerror or exc}{full}") from None

    def _write(self, path, text):
        """Write ``text`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
        tmp = path + ".tmp"

        def write():
            try:
                with open(tmp, "w") as f:
                    f.write(text)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.remove(tmp)
                raise
        self._guard(write, path)

    def record(self, record: dict) -> None:
        def append():
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        self._guard(append, self.metrics_path)
        self._history.append(record)

    def save_checkpoint(self, state: dict, meta: dict) -> None:
        self._guard(lambda: checkpoint.save(self.checkpoint_path, state, meta),
                    self.checkpoint_path)

    def checkpoint_location(self) -> str:
        return self.checkpoint_path

    def finish(self, result) -> None:
        try:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
            if self.plot and result is not None and result.metric is not None and any(
                    r["kind"] == "eval" for r in self._history):
                path = os.path.join(self.folder, CURVE_FILE)
                label = result.config.model.get("activation", result.config.model["name"])
                self._guard(lambda: plot_learning_curves(
                    {label: self._history}, path, metric=result.metric,
                    baseline=result.baseline, title=result.title), path)
            if self.plot and result is not None and any(r["kind"] == "flow"
                                                        for r in self._history):
                path = os.path.join(self.folder, FLOW_FILE)
                self._guard(lambda: gradient_flow_figure(
                    self._history, title=result.title).savefig(path, dpi=110), path)
        finally:
            self._release()


def lock_folder(folder: str, what: str = "run folder", flag: str = "--out"):
    """Create ``folder`` and take its ``.lock`` (an advisory ``flock`` the system drops when the
    process ends, however it ends); return the open lock file, whose closing releases it.

    Raises ConfigError when ``folder`` is a file and SinkError when it cannot be created or
    another process holds it (the message names that process)."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{what} {folder} is a file, not a folder; choose another {flag}")
    try:
        os.makedirs(folder, exist_ok=True)
        lock = open(os.path.join(folder, LOCK_FILE), "a+")
    except OSError as exc:
        raise SinkError(f"cannot use {folder} as a {what}: {exc.strerror or exc}; choose "
                        f"another {flag}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise SinkError(f"{what} {folder} is in use by another {what.split()[0]} ({holder}); "
                        f"wait for it to end or choose another {flag}") from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    return lock


def environment() -> dict:
    """What a run's numbers depend on besides its config: versions, BLAS and its threads, CPU.

    float32 results differ between BLAS builds and thread counts (the order of a GEMM's sums);
    ``config.json`` records this so that a run can be reproduced exactly where it ran.
    """
    import platform

    import numpy

    from .. import __version__
    info = {"rnnlab": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "machine": platform.machine(),
            "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                      "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")
                           if k in os.environ}}
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = {k: blas.get(k) for k in ("name", "version")}
    except Exception:  # older NumPy: no dict mode
        info["blas"] = None
    try:
        from threadpoolctl import threadpool_info
        info["blas_threads"] = [{k: p.get(k) for k in ("internal_api", "version",
                                                       "num_threads", "architecture")}
                                for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas_threads"] = "unknown (threadpoolctl not installed): all cores by default"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def read_history(path: str) -> list:
    """The records of a ``metrics.jsonl`` file ([] if it does not exist).

    A last line cut short (a crash in the middle of writing it) is dropped; any other line that
    is not a JSON record with an integer ``step`` and a ``kind`` makes the file damaged:
    ConfigError naming the line, never a traceback or a silently shortened history.
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"metrics file {path} cannot be read ({exc.strerror or exc}); move "
                          "it away to resume") from None
    lines = data.split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
            ok = (isinstance(record, dict) and isinstance(record.get("kind"), str)
                  and isinstance(record.get("step"), int) and not isinstance(record["step"], bool))
        except (UnicodeDecodeError, ValueError):
            record, ok = None, False
        if ok:
            records.append(record)
        elif number == len(lines) and not data.endswith(b"\n"):
            break  # the partial last record of an interrupted write
        else:
            raise ConfigError(f"metrics file {path} is damaged at line {number} (not a JSON "
                              "record with 'kind' and an integer 'step'); move it away or "
                              "repair it to resume")
    return records
