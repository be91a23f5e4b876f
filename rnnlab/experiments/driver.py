"""The sweep driver: hand a sweep's unfinished cells to an executor and record what comes back.

``run_sweep(spec, folder)`` is what ``rnnlab sweep`` runs:

1. expand the spec into cells (all checked before anything runs: :mod:`.sweep`);
2. take the folder's lock (one driver per sweep folder) and open its SQLite store
   (:mod:`.store`); cells it does not hold yet are added as pending;
3. submit every cell that is not finished (done, diverged or failed; ``retry_failed`` adds the
   failed ones) to the executor (:mod:`.executors`) and record each outcome the moment it
   arrives, one transaction per cell, with a progress bar and ETA;
4. write the report (:mod:`.report`) when the sweep ends, however it ends.

Stopping the driver (Ctrl-C, SIGTERM, or a kill) loses nothing recorded: cells in flight stay
pending, and the same command run again skips every finished cell and runs the rest. A cell
whose worker died (out of memory, a lost cluster node) stays pending too, and is counted in
:attr:`SweepResult.lost`.
"""
from __future__ import annotations

import dataclasses
import os
import time

from tqdm.auto import tqdm

from .. import __version__
from ..train.sinks import environment, lock_folder
from .executors import make_executor
from .report import write_report  # at import: a sweep of hours ends with the code it began
from .store import FINAL, Store


@dataclasses.dataclass
class SweepResult:
    """What one invocation of the driver did.

    Attributes
    ----------
    folder : str
    cells : int
        Cells in the spec.
    ran : list of str
        Ids of the cells this invocation ran and recorded.
    skipped : int
        Cells already finished in the folder (not run again).
    counts : dict
        Status -> number of the spec's cells, after this invocation.
    lost : list of (str, str)
        (cell id, error) of cells whose worker failed outside the cell (left pending).
    stopped : str or None
        Why the driver stopped early ("interrupted", "SIGTERM"), None if it ran to the end.
    seconds : float
    report : str or None
        The report's markdown path, when written.
    """

    folder: str
    cells: int
    ran: list
    skipped: int
    counts: dict
    lost: list
    stopped: str | None
    seconds: float
    report: str | None = None

    @property
    def complete(self) -> bool:
        """Every cell of the spec finished (done, diverged or failed)."""
        return sum(self.counts.get(s, 0) for s in FINAL) == self.cells

    def summary(self) -> str:
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in FINAL + ("pending",))
        line = (f"sweep {self.folder}: {self.cells} cells ({counts}); ran {len(self.ran)} "
                f"now, {self.skipped} were already finished; {self.seconds:.1f} s")
        if self.lost:
            line += (f"; {len(self.lost)} lost their worker ({self.lost[0][1]}): rerun to redo "
                     "them")
        if self.stopped:
            line += f"; stopped ({self.stopped}): rerun the same command to continue"
        return line


def run_sweep(spec, folder: str, *, executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, blas_threads: int = 1, retry_failed: bool = False,
              progress: bool | None = None, report: bool = True, echo=print) -> SweepResult:
    """Run the unfinished cells of ``spec`` (a :class:`~rnnlab.experiments.sweep.SweepSpec`)
    into ``folder``; see the module docstring.

    Parameters
    ----------
    executor : {"local", "dask", "serial"}
    workers : int, optional
        Worker processes (local pool, Dask LocalCluster); default: one per core.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``), with ``executor="dask"``.
    blas_threads : int
        BLAS threads of each cell (1: one worker per core, no oversubscription).
    retry_failed : bool
        Run the failed cells again (a fixed bug, a lost node); done and diverged cells are
        never rerun.
    progress : bool or None
        Show a progress bar (None: only on a terminal).
    report : bool
        Write the report at the end.
    echo : callable
        Where the one-line messages go.

    Notes
    -----
    The local pool starts its workers with "spawn", which imports the calling script's main
    module again in each worker: a script that calls ``run_sweep(..., executor="local")`` must
    do so under ``if __name__ == "__main__":`` (as with any ``multiprocessing`` pool), or each
    worker would start the sweep again. Notebooks and ``python -m rnnlab`` need nothing.
    """
    started = time.perf_counter()
    cells = spec.cells()
    lock = lock_folder(folder, "sweep folder", "--out")
    try:
        with Store(folder) as store:
            store.set_meta("spec", spec.to_dict())
            store.set_meta("rnnlab", __version__)
            store.set_meta("driver_environment", environment())
            store.add_cells(cells)
            statuses = store.statuses()
            if retry_failed:
                store.reset([c.cell_id for c in cells if statuses[c.cell_id] == "failed"])
                statuses = store.statuses()
            todo = [c for c in cells if statuses[c.cell_id] not in FINAL]
            skipped = len(cells) - len(todo)
            ran, lost, stopped = [], [], None
            if todo:
                ran, lost, stopped = _execute(store, todo, len(cells), skipped, executor,
                                              workers, scheduler, blas_threads, progress, echo)
            statuses = store.statuses()
        counts = {}
        for c in cells:
            counts[statuses[c.cell_id]] = counts.get(statuses[c.cell_id], 0) + 1
        result = SweepResult(folder, len(cells), ran, skipped, counts, lost, stopped,
                             time.perf_counter() - started)
        if report:
            result.report = write_report(folder)
    finally:
        lock.close()
    return result


def _execute(store, todo, total, skipped, executor, workers, scheduler, blas_threads,
             progress, echo):
    """Submit ``todo`` and record outcomes as they arrive; returns (ran, lost, stopped)."""
    ex = make_executor(executor, workers, scheduler)
    echo(f"sweep: {total} cells, {skipped} already finished, {len(todo)} to run on "
         f"{ex.describe()}")
    ran, lost, stopped, cancel = [], [], None, False
    bar = tqdm(total=total, initial=skipped, desc="sweep", unit="cell", smoothing=0.1,
               disable=None if progress is None else not progress)
    tally = {}
    try:
        futures = {ex.submit({"config": c.config.to_dict(), "blas_threads": blas_threads}): c
                   for c in todo}
        for future in ex.as_completed(list(futures)):
            cell = futures[future]
            try:
                outcome = ex.result(future)
            except Exception as exc:  # the worker, not the cell, failed: the cell stays pending
                lost.append((cell.cell_id, f"{type(exc).__name__}: {exc}"))
                continue
            if outcome["status"] == "stopped":  # interrupted inside the run: not a result
                continue
            store.record(cell.cell_id, outcome)
            ran.append(cell.cell_id)
            tally[outcome["status"]] = tally.get(outcome["status"], 0) + 1
            bar.update(1)
            bar.set_postfix(tally, refresh=False)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        stopped, cancel = str(exc) or "interrupted", True
    finally:
        bar.close()
        ex.close(cancel=cancel)
    return ran, lost, stopped


__all__ = ["SweepResult", "run_sweep"]
