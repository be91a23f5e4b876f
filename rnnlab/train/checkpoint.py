"""Checkpoints: a run's state (parameters, optimizer state, carried recurrent state) and its
metadata in one ``.npz``, written atomically.

The state is a tree of dicts, lists, tuples, scalars and arrays. Arrays become archive members;
the rest of the tree, with a reference in place of each array, is stored as JSON inside the same
archive together with the metadata (step, config, model structure), so the two can never
disagree. A checkpoint is written to a temporary file in the same folder, flushed to disk, then
moved over the previous one with ``os.replace`` (atomic on POSIX), so an interruption mid-write
leaves the last good checkpoint untouched.

Every checkpoint records :data:`FORMAT`; one of another format (an older rnnlab's) or an archive
that is not an rnnlab checkpoint at all is refused with a message, never misread.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .. import backend
from ..errors import CheckpointError

FILENAME = "checkpoint.npz"
FORMAT = 2
_MAGIC = "rnnlab-checkpoint"
_ARRAY, _TUPLE = "__array__", "__tuple__"


def _pack(tree, arrays: dict, prefix: str = "state"):
    """``tree`` as JSON-able data, each array moved into ``arrays`` under a path-like key."""
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str) or key in (_ARRAY, _TUPLE):
                raise CheckpointError(f"checkpoint state keys must be strings other than "
                                      f"{_ARRAY!r}/{_TUPLE!r}; got {key!r} under {prefix}")
        return {k: _pack(v, arrays, f"{prefix}/{k}") for k, v in tree.items()}
    if isinstance(tree, tuple):
        return {_TUPLE: [_pack(v, arrays, f"{prefix}/{i}") for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [_pack(v, arrays, f"{prefix}/{i}") for i, v in enumerate(tree)]
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        arrays[prefix] = backend.to_host(tree)
        return {_ARRAY: prefix}
    if isinstance(tree, np.generic):
        return tree.item()
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise CheckpointError(f"cannot store {type(tree).__name__} at {prefix} in a checkpoint")


def _unpack(data, arrays: dict):
    if isinstance(data, dict):
        if set(data) == {_ARRAY}:
            return arrays[data[_ARRAY]]
        if set(data) == {_TUPLE}:
            return tuple(_unpack(v, arrays) for v in data[_TUPLE])
        return {k: _unpack(v, arrays) for k, v in data.items()}
    if isinstance(data, list):
        return [_unpack(v, arrays) for v in data]
    return data


def save(path: str, state: dict, meta: dict) -> None:
    """Atomically write ``state`` (a tree holding arrays, host copies taken) and ``meta``
    (JSON-able) to ``path``."""
    arrays: dict = {}
    tree = _pack(state, arrays)
    meta = dict(meta, kind=_MAGIC, format=FORMAT, tree=tree)
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str):
    """Read a checkpoint. Returns ``(state, meta)`` with host arrays in ``state``.

    Raises CheckpointError if the file is missing, truncated, corrupt, of another format, or
    not an rnnlab checkpoint.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}; start the run without --resume")
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {k: archive[k] for k in archive.files}  # reading every member checks CRCs
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, NotImplementedError,
            RuntimeError) as exc:  # NotImplementedError: a damaged zip "compression method"
        raise CheckpointError(f"checkpoint {path} is corrupt or incomplete ({exc}); "
                              "delete it to start over") from exc
    if "meta" not in data:
        raise CheckpointError(f"{path} is not an rnnlab checkpoint (no metadata); "
                              "delete it or point --out elsewhere")
    try:
        meta = json.loads(str(data.pop("meta")))
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} has unreadable metadata ({exc})") from exc
    if not isinstance(meta, dict) or (meta.get("kind") != _MAGIC and "format" not in meta):
        raise CheckpointError(f"{path} is not an rnnlab checkpoint; delete it or point --out "
                              "elsewhere")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')!r} (written by "
                              f"another rnnlab version); this rnnlab reads format {FORMAT}: "
                              "start the run again in a new folder")
    missing = [k for k in ("tree", "step", "config") if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)} in its metadata; "
                              "delete it to start over")
    try:
        state = _unpack(meta.pop("tree"), data)
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {path} lacks the array {exc}; delete it to start "
                              "over") from exc
    return state, meta
