"""One run at a time per state folder.

Two runs of one mapping would both send every batch, and ``--restart`` during a live
run would leave the first writing to a checkpoint that is no longer there. A run
therefore holds an exclusive ``flock`` on ``<state folder>/lock`` for as long as it
works. The kernel releases the lock when the process ends, however it ends (kill -9
included), so a lock is never stale; the file only says who holds it, for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import StateError


class StateLocked(StateError):
    """Another process is running on the same state folder (exit 1, nothing sent)."""


@contextmanager
def state_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold the folder's lock, or raise :class:`StateLocked` at once naming the holder."""
    path = folder / "lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(
            f"cannot use the state folder {folder}: {exc.strerror or exc}; "
            "choose a writable folder with --state-dir"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise StateLocked(
                f"{what} is already running ({holder}; state folder {folder}); wait for it "
                "to finish, or stop it, then run this command again"
            ) from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
