"""Where and with what the driver runs: git commit, package versions, devices (tags of the
sweep's parent run; never environment variables)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path


def _git_info(cwd: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return out
    if not commit:
        return out
    out["mlflow.source.git.commit"] = commit
    out["plateau_sweep.git_commit"] = commit
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        out["plateau_sweep.git_dirty"] = str(bool(status.strip())).lower()
    return out


def _device_names() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names))
    except Exception:  # a broken CUDA setup must not stop the sweep from being tracked
        pass
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"cpu ({cpu}, {os.cpu_count()} cores)"


def collect_provenance(project_dir: Path | None = None) -> dict[str, str]:
    """Tags describing where and with what the driver runs (no environment variables)."""
    tags: dict[str, str] = {}
    dirs = [project_dir or Path(__file__).resolve().parents[1], Path.cwd()]
    for d in dirs:
        tags = _git_info(d)
        if tags:
            break
    for pkg in ("torch", "ray", "mlflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"plateau_sweep.version.{pkg}"] = importlib.metadata.version(pkg)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        tags["plateau_sweep.version.plateau_sweep"] = importlib.metadata.version("plateau-sweep")
    tags["plateau_sweep.version.python"] = platform.python_version()
    tags["plateau_sweep.platform"] = platform.platform()
    tags["plateau_sweep.driver_host"] = socket.gethostname()
    tags["plateau_sweep.driver_devices"] = _device_names()
    return tags
