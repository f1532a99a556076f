"""Where a checkpoint waits on the worker's disk until Ray has copied it to the run's storage.

``tune.report(metrics, checkpoint=...)`` takes a local folder, copies it to the storage and
then blocks until the driver asks for the next result, so a trial's process spends much of its
life inside that call with the folder still on disk. A process killed there -- by Ray's memory
monitor or the kernel's OOM killer, or with its node's Ray after a driver crash -- runs no
``finally`` and no exit handler, and a temporary folder of the size of the model's and
optimizer's state would stay in the node's temporary directory for good, one per kill.

So each trial process stages its checkpoints in one folder of its own,
``<tmp>/plateau-sweep-ckpt-<pid>-XXXXXXXX``, and holds an exclusive ``flock`` on the folder's
``.lock`` until the trial's function ends (:func:`release` removes the folder then) or the
process does. The kernel drops that lock when the process ends, however it ends, and
:func:`remove_orphans` (run at every trial's start) removes each such folder whose lock it can
take: the leftovers of dead processes, never a live one's. A folder is locked before it gets its
``.lock`` name, so none is ever seen unlocked while its owner lives.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "plateau-sweep-ckpt-"
LOCK = ".lock"

_folder: Path | None = None  # this process's staging folder, once made
_lock_fd: int | None = None  # held open (and locked) while the folder exists


def _own_folder() -> Path:
    """This process's staging folder, made and locked on first use; removed by :func:`release`
    (the trial's end) or else at a clean exit."""
    global _folder, _lock_fd
    if _folder is not None and _folder.is_dir():
        return _folder
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    fd = os.open(folder / f"{LOCK}.new", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(folder / f"{LOCK}.new", folder / LOCK)  # visible to remove_orphans only now
    if _lock_fd is not None:
        os.close(_lock_fd)
    _folder, _lock_fd = folder, fd
    return folder


def _remove_own_folder() -> None:
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)


atexit.register(_remove_own_folder)  # a no-op in a process that never staged a checkpoint


def release() -> None:
    """Remove this process's staging folder and drop its lock (the trial is over); the next
    :func:`staged_checkpoint` makes a new one."""
    global _folder, _lock_fd
    _remove_own_folder()
    if _lock_fd is not None:
        os.close(_lock_fd)
    _folder, _lock_fd = None, None


@contextlib.contextmanager
def staged_checkpoint() -> Iterator[Path]:
    """An empty folder for one checkpoint, inside this process's staging folder; removed (with
    what it holds) when the block ends."""
    folder = _own_folder() / "checkpoint"
    shutil.rmtree(folder, ignore_errors=True)  # left by a block that could not clean up
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphans(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the staging folders in ``root`` (the temporary directory) whose process is gone;
    returns them. Folders of live processes, of other users, and without a ``.lock`` (made by
    an older version, or still being set up) are left alone."""
    removed: list[Path] = []
    top = Path(root if root is not None else tempfile.gettempdir())
    try:
        candidates = [p for p in top.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for folder in candidates:  # this process's own is held too: flock refuses a second lock
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            fd = os.open(folder / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its process is alive
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed
