"""A trial's checkpoint staging folder: gone after each report, and gone after a kill too (the
next trial's start on the node removes what a killed process left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, plant_orphaned_staging

from trainables import staging


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process's temporary directory is ``tmp_path/tmp``, and it has no staging folder yet."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(root))
    monkeypatch.setattr(staging, "_folder", None)
    monkeypatch.setattr(staging, "_lock_fd", None)
    yield root
    if staging._lock_fd is not None:
        os.close(staging._lock_fd)


def staging_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(staging.PREFIX))


HOLD = """
import sys, time
from trainables import staging
with staging.staged_checkpoint() as folder:
    (folder / "state.pt").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    if sys.argv[1] == "hold":
        time.sleep(120)
"""


def staging_process(root: Path, how: str) -> tuple[subprocess.Popen[str], Path]:
    """A process that stages a checkpoint in ``root`` and then holds it (``hold``) or ends."""
    env = {**os.environ, "TMPDIR": str(root), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, how], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_checkpoint_is_staged_in_an_empty_folder_removed_after_the_block(own_tmp: Path) -> None:
    with staging.staged_checkpoint() as folder:
        assert folder.is_dir() and not any(folder.iterdir())
        (folder / "state.pt").write_bytes(b"state")
        assert folder.parent.parent == own_tmp
    assert not folder.exists()
    with pytest.raises(RuntimeError), staging.staged_checkpoint() as again:
        (again / "state.pt").write_bytes(b"state")
        raise RuntimeError("report failed")
    assert not again.exists()
    # one folder per process, reused: it stays (locked) for the process's life
    assert staging_folders(own_tmp) == [folder.parent]


def test_release_removes_the_folder_and_a_later_checkpoint_gets_a_new_one(own_tmp: Path) -> None:
    with staging.staged_checkpoint() as folder:
        pass
    staging.release()  # the trial's end
    assert not folder.parent.exists() and staging_folders(own_tmp) == []
    with staging.staged_checkpoint() as again:
        assert again.parent != folder.parent
    assert staging_folders(own_tmp) == [again.parent]
    staging.release()
    staging.release()  # twice: nothing left to do
    assert staging_folders(own_tmp) == []


def test_a_killed_process_leaves_its_folder_and_the_next_start_removes_it(own_tmp: Path) -> None:
    proc, checkpoint = staging_process(own_tmp, "hold")
    try:
        assert (checkpoint / "state.pt").is_file()
        assert staging.remove_orphans() == []  # alive: its lock is held
        assert checkpoint.is_dir()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert checkpoint.is_dir()  # no finally ran: this is what used to stay for good
        assert staging.remove_orphans() == [checkpoint.parent]
        assert staging_folders(own_tmp) == []
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_process_that_ends_removes_its_own_folder(own_tmp: Path) -> None:
    proc, checkpoint = staging_process(own_tmp, "end")
    assert proc.wait(timeout=60) == 0
    assert not checkpoint.exists()
    assert staging_folders(own_tmp) == []


@pytest.mark.parametrize(
    ("case", "removed"),
    [
        ("orphan: its lock is free", True),
        ("this process's own folder", False),
        ("no .lock: an older version's, or being set up", False),
        ("a file, not a folder", False),
        ("another name", False),
    ],
)
def test_which_folders_are_removed(own_tmp: Path, case: str, removed: bool) -> None:
    if case.startswith("orphan"):
        target = plant_orphaned_staging(own_tmp)
    elif case.startswith("this process"):
        with staging.staged_checkpoint() as folder:
            target = folder.parent
    elif case.startswith("no .lock"):
        target = own_tmp / f"{staging.PREFIX}abcd1234"
        target.mkdir()
        (target / "state.pt").write_bytes(b"old")
    elif case.startswith("a file"):
        target = own_tmp / f"{staging.PREFIX}1-file"
        target.write_bytes(b"not a folder")
    else:
        target = own_tmp / "plateau-sweep-other-1-abc"
        target.mkdir()
        (target / staging.LOCK).touch()
    assert staging.remove_orphans() == ([target] if removed else [])
    assert target.exists() is not removed
