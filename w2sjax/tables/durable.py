"""Writing to disk so that a power cut cannot take back what was committed (jax-free): files
flushed before they are renamed into place, folders flushed after a name in them changed, and
new folders' names flushed in their parents.

Some file systems (some FUSE and CIFS mounts) refuse to flush a folder; there the folder is left
to the file system, which is the most they allow (docs/DATASETS.md, "What is not guaranteed").
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

# What a file system that cannot flush a folder answers; anything else is a real failure.
_NO_FOLDER_FSYNC = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR)


class SyncTime:
    """Seconds this process has spent flushing to disk (the bench reports them)."""

    seconds = 0.0


def fsync(path: Path) -> None:
    """Flush `path`, a file or a folder (its entries: a rename or a new name in it), to disk."""
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if not (path.is_dir() and err.errno in _NO_FOLDER_FSYNC):
            raise
    finally:
        os.close(fd)
        SyncTime.seconds += time.perf_counter() - start


def make_folder(folder: Path) -> None:
    """`folder` and its missing parents, each new name flushed in its parent, so a power cut
    cannot take back a folder that a committed part lies in."""
    missing = []
    for path in (folder, *folder.parents):  # up to the first that exists: its parents do too
        if path.exists():
            break
        missing.append(path)
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync(new.parent)


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary name beside path, flush it to disk, rename it into place
    and flush the folder: a reader (or a resumed sweep) never sees a partial file, and once
    this returns a power cut cannot take the file back or leave it short."""
    make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    fsync(tmp)
    os.replace(tmp, path)
    fsync(path.parent)
