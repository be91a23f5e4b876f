"""Experiments built from the engine's parts: demos, the kappa table, and the sweep layer.

Sweeps: :mod:`.sweep` (sweep files -> cells), :mod:`.executors` (where cells run: a local
process pool, Dask, or this process), :mod:`.store` (the SQLite results), :mod:`.driver`
(resumable ``run_sweep``), :mod:`.report` (tables and curves), :mod:`.sweep_cli` (the
``sweep``, ``report``, ``compare`` and ``pathological`` commands); presets in ``presets/``;
:mod:`.pathological` (the PSGD paper's suite and its tables).
"""
