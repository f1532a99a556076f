"""``python -m sweep ui``: the MLflow UI of a sweep's store, opened on the sweep's trial runs.

The server is MLflow's own (``python -m mlflow server``), bound to 127.0.0.1 only, with one
worker and without MLflow's job runner (which serves GenAI jobs this project never submits,
in seven more processes). Every check -- port, store, sweep -- runs before the server starts.
Ctrl-C (or SIGTERM, SIGHUP) stops the server and every process it started.

An ``http(s)://`` tracking URI is an MLflow server already, UI included: nothing is started,
and the link points there. What the link opens is :mod:`sweep.runs_view`'s business.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sweep.errors import SweepError

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
START_TIMEOUT_S = 180.0  # MLflow's server takes 10-40 s to answer on a busy 2-core machine
STOP_TIMEOUT_S = 15.0
_LOG_TAIL_LINES = 15


def check_port(port: int) -> None:
    """``port`` must be a TCP port that nothing on 127.0.0.1 listens on. Raises SweepError."""
    if not 1 <= port <= 65535:
        raise SweepError(f"--port {port} is not a TCP port", "pass a port in 1-65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: a port held only by closed connections (TIME_WAIT) is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SweepError(
                    f"port {port} on {HOST} is already in use",
                    f"stop what listens there, or pass another --port (e.g. --port {port + 1})",
                ) from None
            raise SweepError(
                f"cannot listen on {HOST}:{port} ({exc.strerror or exc})",
                f"pass another --port (e.g. --port {DEFAULT_PORT})",
            ) from None


def check_store(tracking_uri: str) -> None:
    """The store must exist (never create an empty one) and be an MLflow store the UI can
    show. Raises SweepError or TrackingError."""
    from sweep.store import sqlite_db_path
    from sweep.store_check import check_tracking_store

    if tracking_uri.startswith("databricks"):
        raise SweepError(
            f"tracking store {tracking_uri}: a Databricks workspace has its own MLflow UI",
            "open the sweep's experiment there",
        )
    db = sqlite_db_path(tracking_uri)
    if tracking_uri.startswith("sqlite:") and (db is None or not db.is_file()):
        where = f"at {db}" if db is not None else f"in {tracking_uri}"
        raise SweepError(
            f"no MLflow database {where}",
            "run 'python -m sweep run' first, or pass the --tracking-uri the sweep used",
        )
    check_tracking_store(tracking_uri)


def is_server_uri(tracking_uri: str) -> bool:
    return tracking_uri.lower().startswith(("http://", "https://"))


def server_command(tracking_uri: str, port: int) -> list[str]:
    """MLflow's UI server for the store, on 127.0.0.1 only."""
    from sweep.store import sqlite_db_path

    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    db = sqlite_db_path(tracking_uri)
    if db is not None:  # artifacts logged through the UI go next to the db, as the sweep's do
        command += ["--artifacts-destination", str(db.resolve().parent / "mlartifacts")]
    return command


def run_ui(tracking_uri: str, sweep_name: str, port: int | None) -> int:
    """Check everything, save the sweep's runs view, serve the UI until Ctrl-C, print its link.

    Exit code 0 when stopped with Ctrl-C (or when the store is a server: nothing to run),
    1 when the server failed. User errors raise SweepError before anything starts.
    """
    remote = is_server_uri(tracking_uri)
    if remote and port is not None:
        raise SweepError(
            f"--port: {tracking_uri} is an MLflow server, which serves its own UI", "drop --port"
        )
    port = DEFAULT_PORT if port is None else port
    if not remote:
        check_port(port)
    check_store(tracking_uri)

    from sweep.runs_view import publish_view
    from sweep.store import make_client

    view = publish_view(make_client(tracking_uri), tracking_uri, sweep_name)
    heading = f"MLflow UI for sweep '{sweep_name}': {len(view.trial_runs)} trial runs"
    if remote:
        print(f"{heading}, served by {tracking_uri}:\n  {view.link(tracking_uri)}", flush=True)
        return 0
    return serve(tracking_uri, port, heading, view.link(f"http://{HOST}:{port}"))


def serve(tracking_uri: str, port: int, heading: str, link: str) -> int:
    """Start the server, print ``link`` once it answers, stop it on Ctrl-C."""
    fd, log_name = tempfile.mkstemp(prefix="plateau_sweep_ui_", suffix=".log")
    log_path = Path(log_name)
    # SIGTERM and SIGHUP stop the server as Ctrl-C does (unless ignored on purpose: nohup).
    previous = {
        sig: signal.signal(sig, _interrupt)
        for sig in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    proc: subprocess.Popen[bytes] | None = None
    try:
        print(f"starting the MLflow UI for {tracking_uri} on {HOST}:{port} ...", flush=True)
        env = dict(os.environ)
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        proc = subprocess.Popen(
            server_command(tracking_uri, port),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: stopped as one, not by the tty
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            if not _wait_until_ready(proc, f"http://{HOST}:{port}/health"):
                return _failed(proc, log_path, f"did not answer within {START_TIMEOUT_S:g} s")
            print(f"\n{heading} (Ctrl-C stops it)\n  {link}", flush=True)
            code = proc.wait()
            return _failed(proc, log_path, f"exited with code {code}")
        except KeyboardInterrupt:
            stop_server(proc)
            print("\nstopped the MLflow UI", flush=True)
            return 0
    finally:
        if proc is not None:
            stop_server(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(fd)
        log_path.unlink(missing_ok=True)


def _wait_until_ready(proc: subprocess.Popen[bytes], health_url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:  # not listening yet (URLError, ConnectionRefused, timeout)
            pass
        time.sleep(0.5)
    return False


def _failed(proc: subprocess.Popen[bytes], log_path: Path, what: str) -> int:
    """Stop the server, show the end of its log and one error line; exit code 1."""
    stop_server(proc)
    lines = log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    if lines:
        print("\n".join(["the MLflow server's log ends with:", *lines]), file=sys.stderr)
    if proc.returncode not in (None, 0) and "exited" not in what:
        what += f" (exit code {proc.returncode})"
    print(f"error: the MLflow UI server {what}; see its log above", file=sys.stderr, flush=True)
    return 1


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after a grace period."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker that outlived the server


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _die_with_parent() -> None:
    """In the server process (Linux): get SIGTERM when ``sweep ui`` dies, even by SIGKILL."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
