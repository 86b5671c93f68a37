"""One run at a time per state folder.

Two runs of one mapping would both send every batch, and ``--restart`` during a live
run would leave the first writing to a checkpoint that is no longer there. A run
therefore holds an exclusive ``flock`` on ``<state folder>/lock`` for as long as it
works. The kernel releases the lock when the process ends, however it ends (kill -9
included), so a lock is never stale; the file only says who holds it, for the message.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import WRITABLE_STATE_DIR, StateError

log = logging.getLogger("pipeline.lock")

POLL_SECONDS = 0.5


class StateLocked(StateError):
    """Another process is running on the same state folder (exit 1, nothing sent)."""


@contextmanager
def state_lock(folder: Path, what: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the folder's lock, or raise :class:`StateLocked` naming the holder.

    ``wait`` seconds (0: not at all) are spent waiting for the holder to finish
    first, polling; the wait is logged once, with who holds the lock.
    """
    path = folder / "lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(
            f"cannot use the state folder {folder}: {exc.strerror or exc}",
            advice=WRITABLE_STATE_DIR,
        ) from None
    try:
        _acquire(fd, folder, what, wait)
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


def _acquire(fd: int, folder: Path, what: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f" after waiting {wait:g}s" if wait else ""
                raise StateLocked(
                    f"{what} is already running ({describe_holder(holder)}; state folder "
                    f"{folder}){waited}; wait for it to finish, or stop it, then run this "
                    "command again"
                ) from None
            if not told:
                log.info("waiting up to %gs for %s: %s", wait, what, describe_holder(holder))
                told = True
            time.sleep(min(POLL_SECONDS, left))


def describe_holder(holder: str) -> str:
    """Who holds the lock, and what it means when that process is not here or gone.

    The kernel releases the lock of a process that ended, so a holder that looks gone
    is a process that handed the lock to a child (still running), or one on another
    machine sharing the folder (a network volume), which this machine cannot see.
    """
    if not holder:
        return "another process"
    parts = holder.split()
    if len(parts) < 4 or parts[0] != "pid" or not parts[1].isdigit():
        return holder
    pid, host = int(parts[1]), parts[3]
    if host != socket.gethostname():
        return f"{holder}: another machine sharing this folder; the lock ends when that run does"
    if not _alive(pid):
        return f"{holder}: that process has ended, a process it started still holds the lock"
    return holder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
