"""Where a sweep's cells run: in this process, on a local process pool, or on a Dask cluster.

Every executor runs the same function, :func:`run_cell`, on a cell's config (plain data) and
hands back its outcome (plain data); the driver (:mod:`.driver`) alone writes the results. A
cell is a pure function of its config: with the BLAS of every worker limited to the same number
of threads (one, by default: one worker per core), the three executors give identical numbers.

``local`` (the default)
    :class:`concurrent.futures.ProcessPoolExecutor` with one worker per core, started with
    "spawn" (no state inherited from the driver, safe beside its threads). Workers ignore
    Ctrl-C (the driver stops them) and exit when the driver dies.
``dask``
    ``dask.distributed``: ``Client(scheduler)`` on an existing cluster (any cluster Dask reaches:
    dask-jobqueue on SLURM or PBS, Kubernetes, ``dask scheduler`` + ``dask worker`` by hand), or
    a ``LocalCluster`` of single-threaded worker processes when no address is given. Optional:
    ``pip install rnnlab[dask]``.
``serial``
    In the driver's own process, one cell after another (debugging, notebooks, tests).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback

from ..errors import ConfigError

EXECUTORS = ("local", "dask", "serial")


def run_cell(payload: dict) -> dict:
    """Train one cell and return its outcome as plain data (never raises for the cell's own
    errors: they come back as status "failed" with the error).

    ``payload``: ``{"config": nested config data, "blas_threads": int}``. The outcome holds
    ``status`` ("done", "diverged", "failed" or "stopped"), ``step``, ``reason``, ``message``,
    ``error``, ``final`` and ``test`` (metrics dicts), ``history`` (every metrics record),
    ``metric``, ``threshold``, ``better``, ``baseline``, ``seconds`` (the run's own wall time),
    ``host`` and ``pid``.
    """
    # scipy's wheels bring an OpenBLAS of their own: loaded before the limit so that the limit
    # reaches it too (threadpoolctl limits only the libraries loaded when it is called)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    from ..config import RunConfig
    from ..tasks import TASKS
    from ..train import MemorySink, run
    started = time.perf_counter()
    outcome = {"status": "failed", "step": 0, "reason": None, "message": None, "error": None,
               "final": {}, "test": {}, "history": [], "metric": None, "threshold": None,
               "better": "lower", "baseline": None, "host": socket.gethostname(),
               "pid": os.getpid()}
    try:
        config = RunConfig.from_dict(payload["config"])
        task_class = TASKS.get(config.task["name"])
        outcome["better"] = task_class.better
        with threadpool_limits(limits=payload.get("blas_threads", 1)):
            result = run(config, MemorySink(), progress=False)
        outcome.update(status="done" if result.status == "finished" else result.status,
                       step=result.step, reason=result.reason, message=result.message,
                       final=result.final, test=result.test, history=result.history,
                       metric=result.metric, threshold=result.threshold,
                       baseline=result.baseline)
    except Exception as exc:  # the cell's failure is its result; the sweep goes on
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        outcome["reason"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, ConfigError):
            outcome["traceback"] = traceback.format_exc(limit=8)
    outcome["seconds"] = time.perf_counter() - started
    return outcome


# --------------------------------------------------------------------------- local pool
def _worker_init(parent: int) -> None:
    """Pool worker start-up: ignore Ctrl-C (the driver decides what stops) and exit when the
    driver is gone (killed with SIGKILL, its workers would otherwise run on)."""
    from tqdm import tqdm
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock holds a multiprocessing semaphore; a worker the driver kills could
    # not release it, and Python would warn of a leak at exit. Cells draw no bars anyway.
    tqdm.set_lock(threading.RLock())

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


class LocalPool:
    """A process pool of ``workers`` processes (default: the number of cores)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(),))

    def describe(self) -> str:
        return f"local pool of {self.workers} worker process{'es' * (self.workers != 1)}"

    def submit(self, payload: dict):
        return self._pool.submit(run_cell, payload)

    def as_completed(self, futures):
        return concurrent.futures.as_completed(futures)

    @staticmethod
    def result(future) -> dict:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        if cancel:  # stop now: cells in flight are redone by the next run
            kill = getattr(self._pool, "kill_workers", None)  # Python >= 3.14
            if kill is not None:
                kill()
            else:
                for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                    process.kill()
        # waiting also after a kill: the pool then releases its queues' semaphores itself
        self._pool.shutdown(wait=True, cancel_futures=cancel)


# --------------------------------------------------------------------------- dask
class DaskExecutor:
    """Cells as Dask futures on ``Client(scheduler)``, or on a new ``LocalCluster`` of
    ``workers`` single-threaded processes when ``scheduler`` is None."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs Dask: pip install 'rnnlab[dask]' (or "
                              "pip install 'dask[distributed]')") from None
        self._cluster = None
        if scheduler:
            try:
                self._client = Client(scheduler, timeout="30s")
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") \
                    from None
        else:
            self._cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                         threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
            self._client = Client(self._cluster)
        self.scheduler = scheduler

    def describe(self) -> str:
        where = self.scheduler or "a new LocalCluster"
        n = len(self._client.scheduler_info().get("workers", {}))
        return f"Dask on {where} ({n} worker{'s' * (n != 1)} now)"

    def submit(self, payload: dict):
        # pure=False: a cell submitted again (a rerun) is run again, not served from memory
        return self._client.submit(run_cell, payload, pure=False, retries=0)

    def as_completed(self, futures):
        from dask.distributed import as_completed
        return as_completed(futures)

    @staticmethod
    def result(future) -> dict:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        try:
            if cancel:
                self._client.cancel(list(self._client.futures.values()), force=True)
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


# --------------------------------------------------------------------------- serial
class _Done(concurrent.futures.Future):
    pass


class Serial:
    """Each cell in this process when its result is asked for (no parallelism)."""

    name = "serial"
    workers = 1

    def describe(self) -> str:
        return "this process, one cell at a time"

    def submit(self, payload: dict):
        future = _Done()
        future.payload = payload
        return future

    def as_completed(self, futures):
        for future in futures:
            outcome = run_cell(future.payload)
            if outcome["status"] == "stopped":  # Ctrl-C reached the run: stop the sweep too
                raise KeyboardInterrupt(outcome["reason"] or "interrupted")
            future.set_result(outcome)
            yield future

    @staticmethod
    def result(future) -> dict:
        return future.result()

    def close(self, cancel: bool = False) -> None:
        pass


def make_executor(name: str = "local", workers: int | None = None,
                  scheduler: str | None = None):
    """The executor called ``name`` (one of :data:`EXECUTORS`)."""
    if name not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {name!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1; got {workers!r}")
    if scheduler is not None and name != "dask":
        raise ConfigError("--scheduler is the address of a Dask scheduler: it needs "
                          "--executor dask")
    if name == "dask":
        return DaskExecutor(workers, scheduler)
    if name == "serial":
        return Serial()
    return LocalPool(workers)


__all__ = ["DaskExecutor", "EXECUTORS", "LocalPool", "Serial", "make_executor", "run_cell"]
