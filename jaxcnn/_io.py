"""Atomic file writes (private): nothing is ever half-written.

Checkpoints, results, caches and gradcheck reports all go through `atomic_write`: the bytes land in
a temporary file in the target's directory, are flushed to disk, and replace the target in one
``os.replace`` (then the directory entry is flushed too) — a crash leaves the old file or the new
one, never a partial file. The file gets the permissions a plain ``open(path, "w")`` would give:
an existing file keeps its mode, a new one gets ``0o666 & ~umask`` (``mkstemp`` alone would make it
``0o600`` whatever the umask); a symbolic link is written through, to its target.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set back at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits ``open(path, "w")`` would leave: the existing file's, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why `atomic_write` could not write `path`, or None: checked before the work whose result it
    is to hold, so that a wrong path costs no run. `path` names something that is not a file (a
    directory), or the nearest of its folders that exists is not a folder or cannot be written."""
    path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        return f"'{path}' exists and is not a file"
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"'{folder}' is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder '{folder}' cannot be written"
    return None


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    if path.is_symlink():  # write through the link, as open() does (replacing it would cut the link)
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    # a short temporary name: a target name near the file system's 255-byte limit must still work
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
