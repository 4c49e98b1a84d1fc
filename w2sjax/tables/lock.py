"""One writer per dataset: an advisory lock (flock) on the file `.<name>.lock` beside the dataset.

A writer (a sweep, bench --keep, check --repair) holds it exclusively from before it deletes or
writes anything until it is done, and writes who it is into the file (pid, host, since) so a second
writer's refusal can name it; a clean exit empties the record. The kernel releases the lock of a
process that dies, so a killed writer's lock is taken over with a notice naming it, when that
writer ran on this host; a record from another host is refused (that host may be alive, on a file
system whose locks do not reach across machines), with what to do. A reader that asks whether a
writer is at work (`w2sjax check`) takes it shared for a moment. The file is never deleted:
deleting a lock file lets two processes lock two different files of the same name.

Where the file system refuses advisory locks (some network file systems), the record alone is
checked: a live holder on this host, or any holder on another host, refuses; that check is not
atomic, so two writers starting in the same instant are not caught there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from w2sjax.tables.durable import make_folder
from w2sjax.tables.layout import DatasetRefused, lock_path

# A writer retries this long before refusing: `w2sjax check` holds the lock shared for a moment.
WAIT_S = 2.0
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a dataset's lock."""

    pid: int
    host: str
    since: str

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def alive(self) -> bool:
        """True unless it is a process of this host that no longer exists (another host's
        processes cannot be checked from here, so they count as alive)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class LockHeld(DatasetRefused):
    """Another process holds the dataset's lock; `holder` names it when its record is readable."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


def _read_holder(fd: int) -> Holder | None:
    """The record in the lock file, or None (empty: released cleanly; or unreadable)."""
    text = os.pread(fd, 4096, 0).decode(errors="replace")
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    pid, host, since = (record.get(k) for k in ("pid", "host", "since"))
    if isinstance(pid, int) and isinstance(host, str) and isinstance(since, str):
        return Holder(pid, host, since)
    return None


class DatasetLock:
    """`with DatasetLock(root):` holds root's lock exclusively (or shared) for the block; raises
    LockHeld (one line naming the holder) when another process holds it after `wait_s` seconds,
    OSError when the lock file cannot be created (or, shared, opened)."""

    def __init__(self, root: str | Path, shared: bool = False, wait_s: float = WAIT_S) -> None:
        self.root = Path(root)
        # One lock file however the dataset's path is spelled ("." from inside it, a symlink).
        self.path = lock_path(self.root.resolve())
        self.shared = shared
        self.wait_s = wait_s
        self._fd: int | None = None

    def _refusal(self, holder: Holder | None) -> LockHeld:
        live = holder is not None and holder.alive()
        who = str(holder) if live else "another w2sjax process (a check, or one starting)"
        return LockHeld(
            f"{self.root}: being written by {who} (lock file {self.path}); wait for it to "
            f"finish or stop it",
            holder if live else None,
        )

    def _flock(self, fd: int) -> bool:
        """Take the flock, retrying until wait_s; False when the file system has no locks."""
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, mode)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._refusal(_read_holder(fd)) from None
                time.sleep(0.05)
            except OSError as err:
                if err.errno in _NO_LOCKS:
                    return False
                raise

    def _take_over(self, previous: Holder, locked: bool) -> None:
        """Refuse, or say whose lock this writer takes over. A record names a writer that did not
        finish cleanly (a clean exit empties it). A holder on another host cannot be checked from
        here (a crashed node, or a live writer on a file system whose locks do not reach across
        machines): refused, with what to do."""
        if previous.host != socket.gethostname():
            raise LockHeld(
                f"{self.root}: its lock file {self.path} names {previous}, which this host "
                f"cannot check; if that process is gone, delete the lock file and rerun",
                previous,
            )
        if not locked and previous.alive():
            raise self._refusal(previous)
        state = "which does not hold it" if previous.alive() else "no longer running"
        print(
            f"w2sjax: taking over the lock of {self.root} left by {previous} ({state})",
            file=sys.stderr,
        )

    def __enter__(self) -> DatasetLock:
        flags = os.O_NOFOLLOW  # a lock file planted as a link must not truncate its target
        if self.shared:
            # A reader creates nothing: with no lock file, no writer has started.
            try:
                fd = os.open(self.path, os.O_RDONLY | flags)
            except FileNotFoundError:
                return self
        else:
            make_folder(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        try:
            locked = self._flock(fd)
            previous = _read_holder(fd)
            if self.shared:
                if not locked and previous is not None and previous.alive():
                    raise self._refusal(previous)
            else:
                if previous is not None:
                    self._take_over(previous, locked)
                if not locked:
                    print(
                        f"w2sjax: {self.path}: this file system refuses locks; only its record "
                        f"guards against a second writer",
                        file=sys.stderr,
                    )
                me = Holder(
                    os.getpid(),
                    socket.gethostname(),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(fd, 0)  # a clean exit leaves no holder to take over from
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass  # closing the descriptor releases the lock in any case
        finally:
            os.close(fd)
