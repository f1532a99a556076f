"""The command's process ends without the interpreter's teardown, but only after everything an
exit owes has run (sweep/entry.py): threads, exit handlers, what was printed, the exit code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO

# A stand-in for sweep.cli.main that leaves work for the exit: a line printed without a newline
# (still in the buffer), a non-daemon thread that finishes late, an exit handler registered
# after the entry's own (as logging, MLflow and Ray register theirs), and an object whose
# __del__ only the interpreter's teardown would call.
SCRIPT = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path
    import sweep.cli
    import sweep.entry

    out = Path(sys.argv[1])
    outcome = sys.argv[2]

    class Torn:
        def __del__(self):
            (out / "teardown").write_text("ran")

    def main():
        def late():
            time.sleep(0.3)
            (out / "thread").write_text("done")

        threading.Thread(target=late).start()
        atexit.register(lambda: (out / "handler").write_text("ran"))
        sys.modules["__main__"].kept = Torn()
        sys.stdout.write("last line, no newline")
        if outcome == "raise":
            raise RuntimeError("boom")
        return int(outcome)

    sweep.cli.main = main
    sweep.entry.console()
    """
)


def run(tmp_path: Path, outcome: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), outcome],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("code", [0, 1, 2, 130])
def test_exit_keeps_the_code_the_threads_the_handlers_and_the_output(
    tmp_path: Path, code: int
) -> None:
    proc = run(tmp_path, str(code))
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "last line, no newline"
    assert (tmp_path / "thread").read_text() == "done"  # waited for
    assert (tmp_path / "handler").read_text() == "ran"  # a later handler ran first
    assert not (tmp_path / "teardown").exists()  # the teardown itself was skipped


def test_an_uncaught_error_exits_the_ordinary_way(tmp_path: Path) -> None:
    proc = run(tmp_path, "raise")
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    assert (tmp_path / "handler").read_text() == "ran"
    assert (tmp_path / "teardown").read_text() == "ran"  # nothing skipped


def test_python_m_sweep_and_the_console_script_go_through_the_entry() -> None:
    from importlib.metadata import entry_points

    assert "console()" in (REPO / "sweep" / "__main__.py").read_text()
    scripts = [e.value for e in entry_points(group="console_scripts") if e.name == "plateau-sweep"]
    assert scripts == ["sweep.entry:console"]  # as installed from pyproject.toml
