"""Checkpoints: named pytrees and JSON metadata in one ``.npz``, written atomically, no pickle.

`save_checkpoint` stores every leaf under its tree path (``"params/H1/w"``) and the metadata as a
JSON string; `load_checkpoint` reads it back into the structure of a template, validating keys,
shapes and dtypes, with messages that name the file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn._checks import fail
from jaxcnn._io import atomic_write

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "jaxcnn-checkpoint-v1"
_META_KEY = "__meta__"
# The dtypes NumPy's .npz cannot name (bfloat16, the float8s: stored as raw void bytes, which no
# dtype check could tell apart): such leaves are saved as unsigned ints of their width, and their
# dtype names under this key, so that they load back as what they were.
_DTYPES_KEY = "__dtypes__"


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _flatten(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{"params/H1/w": array, ...}``: every leaf keyed by its tree path."""
    flat: dict[str, np.ndarray] = {}
    for top, tree in state.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            key = "/".join([top, *(_key_name(e) for e in path)])
            if key in flat or key in (_META_KEY, _DTYPES_KEY):
                raise fail("save_checkpoint", f"two leaves share the key {key!r}")
            flat[key] = np.asarray(jax.device_get(leaf))
    return flat


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write `state` (named pytrees of arrays) and `meta` (JSON-able) to one ``.npz``, atomically.

    Leaves are stored under their tree paths (``"params/H1/w"``), `meta` as a JSON string under
    ``"__meta__"`` (with ``"format": CHECKPOINT_FORMAT`` added); nothing is pickled. The file is
    written to a temporary file in the same directory, flushed to disk and moved over `path` with
    ``os.replace``: a crash leaves either the old checkpoint or the new one, never a partial file.

    Args:
      path: the ``.npz`` file; its directory is created if needed.
      state: e.g. ``{"params": params, "opt_state": opt_state}``.
      meta: e.g. ``{"epoch": 3, "seed": 0, "history": [...]}``.
    """
    flat = _flatten(state)
    extended = {k: a.dtype.name for k, a in flat.items() if a.dtype.kind == "V"}
    flat.update({k: flat[k].view(f"u{flat[k].dtype.itemsize}") for k in extended})
    flat[_DTYPES_KEY] = np.array(json.dumps(extended))
    flat[_META_KEY] = np.array(json.dumps({"format": CHECKPOINT_FORMAT, **meta}))
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike[str], template: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a `save_checkpoint` file into the structure of `template`, validating everything.

    Args:
      path: the ``.npz`` file.
      template: named pytrees with the expected structure, shapes and dtypes (e.g. freshly
        initialised ``{"params": ..., "opt_state": ...}``).

    Returns:
      ``(state, meta)``: `state` like `template` with the stored arrays (as ``jax.Array``), and
      the JSON metadata.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the file is not a readable checkpoint, or its keys, shapes or dtypes differ
        from the template's; the message names the file.
    """
    path = Path(path)
    where = f"checkpoint '{path}'"
    if not path.is_file():
        raise fail("load_checkpoint", f"{where} does not exist", FileNotFoundError)
    expected = {k: np.asarray(jax.device_get(v)) for k, v in _flatten(template).items()}
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise fail("load_checkpoint", f"{where} is not a readable .npz checkpoint: {err}") from err
    try:
        meta = json.loads(str(stored.pop(_META_KEY)[()]))
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise fail("load_checkpoint", f"{where} has no valid {_META_KEY!r} entry: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise fail("load_checkpoint", f"{where} is not a {CHECKPOINT_FORMAT} file")
    _restore_dtypes(where, stored)
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise fail(
            "load_checkpoint",
            f"{where} does not match the template: missing keys {missing}, unexpected keys {extra}",
        )
    for key, want in expected.items():
        got = stored[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise fail(
                "load_checkpoint",
                f"{where}: {key!r} has shape {got.shape} and dtype {got.dtype}; the template "
                f"expects {want.shape} {want.dtype}",
            )
    state = {}
    for top, tree in template.items():
        paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
        leaves = [jnp.asarray(stored["/".join([top, *(_key_name(e) for e in p)])]) for p, _ in paths]
        state[top] = jax.tree_util.tree_unflatten(treedef, leaves)
    return state, meta


def _restore_dtypes(where: str, stored: dict[str, np.ndarray]) -> None:
    """View the leaves `save_checkpoint` stored as unsigned ints back as their dtypes (in place)."""
    try:
        names = json.loads(str(stored.pop(_DTYPES_KEY)[()])) if _DTYPES_KEY in stored else {}
        dtypes = {k: jnp.dtype(v) for k, v in names.items()}
    except (TypeError, ValueError) as err:
        raise fail("load_checkpoint", f"{where} has no valid {_DTYPES_KEY!r} entry: {err}") from err
    for key, dtype in dtypes.items():
        got = stored.get(key)
        if got is None or got.dtype != np.dtype(f"u{dtype.itemsize}"):
            raise fail("load_checkpoint", f"{where}: {key!r} is listed as {dtype.name} but stored as "
                                          f"{None if got is None else got.dtype}")
        stored[key] = got.view(dtype)
