"""Checkpoints: parameters, optimizer slots and progress in one ``.npz``, written atomically.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then moved
over the previous one with ``os.replace`` (atomic on POSIX), so an interruption mid-write leaves
the last good checkpoint untouched. Metadata (step, config, model structure, optimizer step
count) is stored as a JSON string inside the same archive so the two can never disagree.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .. import backend
from ..errors import CheckpointError

FILENAME = "checkpoint.npz"
_FORMAT = 1


def save(path: str, params: dict, optimizer_state: dict, meta: dict) -> None:
    """Atomically write params (host copies), optimizer state and ``meta`` (JSON-able) to
    ``path``."""
    arrays = {f"param/{k}": backend.to_host(v) for k, v in params.items()}
    for slot, per_param in optimizer_state["slots"].items():
        for name, a in per_param.items():
            arrays[f"opt/{slot}/{name}"] = backend.to_host(a)
    meta = dict(meta, format=_FORMAT, optimizer_steps=int(optimizer_state["steps"]),
                param_names=list(params))
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str):
    """Read a checkpoint. Returns ``(params_host, optimizer_state, meta)``.

    Raises CheckpointError if the file is missing, truncated or corrupt.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}; start the run without --resume")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {k: archive[k] for k in archive.files}  # reading every member checks CRCs
        meta = json.loads(str(data.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or incomplete ({exc}); "
                              "delete it to start over") from exc
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')!r}; "
                              f"this rnnlab reads format {_FORMAT}")
    params = {k: data[f"param/{k}"] for k in meta["param_names"]}
    slots: dict = {}
    for key, a in data.items():
        if key.startswith("opt/"):
            _, slot, name = key.split("/", 2)
            slots.setdefault(slot, {})[name] = a
    return params, {"steps": meta["optimizer_steps"], "slots": slots}, meta
