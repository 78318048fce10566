"""jaxcnn._io.atomic_write: all or nothing, flushed to disk, with the permissions of a plain open()."""

from __future__ import annotations

import os
import stat

import pytest

from jaxcnn._io import atomic_write, unwritable


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_new_files_get_the_permissions_of_open(tmp_path, umask):
    """mkstemp makes 0o600 files whatever the umask; a written file must look like open(path, "w")'s."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "sub" / "atomic.json", b"{}")
        with open(tmp_path / "plain.json", "w"):
            pass
    finally:
        os.umask(old)
    assert _mode(tmp_path / "sub" / "atomic.json") == _mode(tmp_path / "plain.json") == 0o666 & ~umask
    assert (tmp_path / "sub" / "atomic.json").read_bytes() == b"{}"


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "results.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    old = os.umask(0o077)
    try:
        atomic_write(path, b"new")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"new" and _mode(path) == 0o640  # what open(path, "w") leaves


def test_write_is_atomic_and_flushed(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode), real_fsync(fd)))
    atomic_write(path, b"first")
    assert [stat.S_ISREG(m) for m in synced] == [True, False]  # the file, then its directory

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write(path, b"second")
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary file left


def test_a_link_is_written_through_and_a_long_name_works(tmp_path):
    """The link was replaced by a regular file, the target keeping the old bytes (open() writes
    through); a name near the 255-byte limit failed: the temporary name added ~14 characters."""
    target = tmp_path / "real.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
    long = tmp_path / ("x" * 250 + ".json")
    atomic_write(long, b"{}")
    assert long.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["real.json", "link.json", long.name])


def test_unwritable_names_what_stops_a_write(tmp_path):
    """Checked before a run (a checkpoint, a CLI's results file): each reason is one the write
    itself would then fail with, after the run."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    assert unwritable(tmp_path / "new.json") is None
    assert unwritable(tmp_path / "a" / "b" / "new.json") is None  # atomic_write makes the folders
    assert unwritable(tmp_path / "file") is None  # replaced
    assert unwritable(tmp_path / "dir") == f"'{tmp_path / 'dir'}' exists and is not a file"
    assert unwritable(tmp_path / "file" / "x" / "new.json") == f"'{tmp_path / 'file'}' is not a folder"
    for path in (tmp_path / "dir", tmp_path / "file" / "x" / "new.json"):
        with pytest.raises(OSError):
            atomic_write(path, b"y")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert unwritable(locked / "new.json") == f"the folder '{locked}' cannot be written"
