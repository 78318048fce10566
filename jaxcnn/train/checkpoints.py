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
# Typed PRNG keys (`jax.random.key`, e.g. in `optax.add_noise`'s state) are saved as their key data
# (`jax.random.key_data`, uint32) and their implementation's name under this key.
_KEYS_KEY = "__keys__"
_RESERVED = (_META_KEY, _DTYPES_KEY, _KEYS_KEY)


def _key_name(entry: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def flatten(fn: str, state: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``{"params/H1/w": array, ...}``: every leaf keyed by its tree path (a PRNG key as its key
    data), and ``{key: implementation name}`` of the PRNG keys."""
    flat: dict[str, np.ndarray] = {}
    keys: dict[str, str] = {}
    for top, tree in state.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            key = "/".join([top, *(_key_name(e) for e in path)])
            if key in flat or key in _RESERVED:
                raise fail(fn, f"two leaves share the key {key!r}")
            if _is_key(leaf):
                keys[key] = str(jax.random.key_impl(leaf))
                leaf = jax.random.key_data(leaf)
            array = np.asarray(jax.device_get(leaf))
            if array.dtype.kind not in "biufcV":
                raise fail(fn, f"leaf {key!r} must be an array of numbers, got {type(leaf).__name__} "
                               f"(dtype {array.dtype}); a checkpoint stores no Python objects")
            flat[key] = array
    return flat, keys


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write `state` (named pytrees of arrays) and `meta` (JSON-able) to one ``.npz``, atomically.

    Leaves are stored under their tree paths (``"params/H1/w"``), a typed PRNG key as its key data
    and implementation's name, `meta` as a JSON string under ``"__meta__"`` (with ``"format":
    CHECKPOINT_FORMAT`` added); nothing is pickled (a leaf that is not an array of numbers is
    refused). The file is written to a temporary file in the same directory, flushed to disk and
    moved over `path` with ``os.replace``: a crash leaves either the old checkpoint or the new
    one, never a partial file.

    Args:
      path: the ``.npz`` file; its directory is created if needed.
      state: e.g. ``{"params": params, "opt_state": opt_state}``.
      meta: e.g. ``{"epoch": 3, "seed": 0, "history": [...]}``.
    """
    flat, keys = flatten("save_checkpoint", state)
    extended = {k: a.dtype.name for k, a in flat.items() if a.dtype.kind == "V"}
    flat.update({k: flat[k].view(f"u{flat[k].dtype.itemsize}") for k in extended})
    flat[_DTYPES_KEY] = np.array(json.dumps(extended))
    flat[_KEYS_KEY] = np.array(json.dumps(keys))
    flat[_META_KEY] = np.array(json.dumps({**meta, "format": CHECKPOINT_FORMAT}))  # never meta's own
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
    if not path.exists():
        raise fail("load_checkpoint", f"{where} does not exist", FileNotFoundError)
    if not path.is_file():
        raise fail("load_checkpoint", f"{where} is not a file")
    expected, keys = flatten("load_checkpoint", template)
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            stored = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, KeyError, TypeError, MemoryError, zipfile.BadZipFile) as err:
        # (TypeError: a plain .npy file, which np.load returns as an array; MemoryError: an entry
        # whose header claims more than memory holds)
        raise fail("load_checkpoint", f"{where} is not a readable .npz checkpoint: {err!r}") from err
    try:
        meta = json.loads(str(stored.pop(_META_KEY)[()]))
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise fail("load_checkpoint", f"{where} has no valid {_META_KEY!r} entry: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise fail("load_checkpoint", f"{where} is not a {CHECKPOINT_FORMAT} file")
    _restore_dtypes(where, stored)
    stored_keys = _json_entry(where, stored, _KEYS_KEY)
    if stored_keys != keys:
        raise fail("load_checkpoint", f"{where} holds PRNG keys {stored_keys}, the template {keys} "
                                      "(leaf: implementation)")
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
        leaves = []
        for p, like in paths:
            key = "/".join([top, *(_key_name(e) for e in p)])
            leaf = jnp.asarray(stored[key])
            if key in keys:
                leaf = jax.random.wrap_key_data(leaf, impl=jax.random.key_impl(like))
            leaves.append(leaf)
        state[top] = jax.tree_util.tree_unflatten(treedef, leaves)
    return state, meta


def _json_entry(where: str, stored: dict[str, np.ndarray], name: str) -> dict[str, str]:
    """The ``{leaf: name}`` dict saved as JSON under `name` (removed from `stored`; {} if absent)."""
    try:
        entry = json.loads(str(stored.pop(name)[()])) if name in stored else {}
    except (TypeError, ValueError, IndexError) as err:
        raise fail("load_checkpoint", f"{where} has no valid {name!r} entry: {err}") from err
    if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
        raise fail("load_checkpoint", f"{where} has no valid {name!r} entry: expected a JSON object of "
                                      f"names, got {str(entry)[:80]}")
    return entry


def _restore_dtypes(where: str, stored: dict[str, np.ndarray]) -> None:
    """View the leaves `save_checkpoint` stored as unsigned ints back as their dtypes (in place)."""
    names = _json_entry(where, stored, _DTYPES_KEY)
    try:
        dtypes = {k: jnp.dtype(v) for k, v in names.items()}
    except TypeError as err:
        raise fail("load_checkpoint", f"{where} has no valid {_DTYPES_KEY!r} entry: {err}") from err
    for key, dtype in dtypes.items():
        got = stored.get(key)
        if got is None or got.dtype != np.dtype(f"u{dtype.itemsize}"):
            raise fail("load_checkpoint", f"{where}: {key!r} is listed as {dtype.name} but stored as "
                                          f"{None if got is None else got.dtype}")
        stored[key] = got.view(dtype)
