"""Fail fast, before any trial starts, on a tracking store that cannot be written."""

from __future__ import annotations

import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from sweep.store import TrackingError, _sqlite_path


def check_tracking_store(uri: str) -> None:
    """Fail fast, before any trial starts, on a tracking store that cannot be written.

    Raises :class:`TrackingError` with one line naming ``uri`` and the cause. Creates nothing: a
    missing sqlite db is fine when its folder exists and is writable (probed with a temporary
    file that is removed at once); an existing one must open read-write and give a write lock
    within a short timeout (``BEGIN IMMEDIATE`` then ``ROLLBACK``).
    """
    if not isinstance(uri, str) or not uri.strip():
        raise TrackingError(f"tracking store {uri!r}: empty URI; use sqlite:///path/mlflow.db")
    scheme = urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("http", "https"):
        _check_tcp(uri, default_port=443 if scheme == "https" else 80, what="tracking server")
    elif scheme == "" or scheme == "file" or (len(scheme) == 1 and os.name == "nt"):
        raise TrackingError(
            f"tracking store {uri}: MLflow 3 refuses file stores (./mlruns); "
            "use sqlite:///path/mlflow.db (e.g. sqlite:///mlflow.db)"
        )
    elif scheme.split("+")[0] in ("postgresql", "postgres", "mysql", "mssql"):
        ports = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
        _check_tcp(uri, default_port=ports[scheme.split("+")[0]], what="database server")
    # other schemes (databricks, ...) are left to MLflow


def _check_sqlite(uri: str) -> None:
    raw = _sqlite_path(uri)
    if raw in ("", ":memory:"):
        raise TrackingError(
            f"tracking store {uri}: an in-memory sqlite store is lost when the driver exits; "
            "use sqlite:///path/mlflow.db"
        )
    path = Path(raw)  # no ~ expansion: SQLAlchemy does not expand it either
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise TrackingError(f"tracking store {uri}: {path} is a folder, not a sqlite db file")
    if path.exists():
        _check_sqlite_file(uri, path)
        return
    if not folder.exists():
        raise TrackingError(
            f"tracking store {uri}: folder {folder} does not exist; create it first "
            f"(mkdir -p {folder})"
        )
    if not folder.is_dir():
        raise TrackingError(f"tracking store {uri}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(f"tracking store {uri}: folder {folder} is not writable")
    try:  # os.access says yes to root on most things; a real write says the truth
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".plateau_sweep_probe_"):
            pass
    except OSError as exc:
        raise TrackingError(
            f"tracking store {uri}: folder {folder} is not writable ({exc.strerror or exc})"
        ) from None


def _check_sqlite_file(uri: str, path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not os.access(path, os.R_OK | os.W_OK):
        raise TrackingError(f"tracking store {uri}: db file {path} is read-only")
    if not os.access(folder, os.W_OK | os.X_OK):  # sqlite writes its journal next to the db
        raise TrackingError(
            f"tracking store {uri}: folder {folder} is not writable (sqlite needs it for its "
            "journal)"
        )
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(  # mode=rw: never create the file
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=0.5, isolation_level=None
        )
        conn.execute("PRAGMA schema_version").fetchone()  # "file is not a database" surfaces here
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            cause = "database is locked by another process (is another sweep or server writing?)"
        elif "readonly" in msg or "read-only" in msg:
            cause = f"db file {path} is read-only"
        else:
            cause = f"cannot open {path} as a sqlite db ({msg})"
        raise TrackingError(f"tracking store {uri}: {cause}") from None
    finally:
        if conn is not None:
            conn.close()


def _check_tcp(uri: str, *, default_port: int, what: str, timeout_s: float = 3.0) -> None:
    parsed = urlparse(uri)
    host = parsed.hostname
    if not host:
        raise TrackingError(f"tracking store {uri}: no host in the URI")
    try:
        port = parsed.port or default_port
    except ValueError:
        raise TrackingError(f"tracking store {uri}: bad port in the URI") from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            cause = f"no answer within {timeout_s:g} s"
        raise TrackingError(
            f"tracking store {uri}: {what} {host}:{port} is unreachable ({cause})"
        ) from None
