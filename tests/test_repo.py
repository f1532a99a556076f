"""Repo hygiene: CI runs the README's command, the code is ruff-clean, no secrets committed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ci_command() -> str:
    lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in ln]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert _ci_command() in readme.splitlines(), "README and .ci/run disagree on the test command"


def test_the_readme_one_trial_command_is_a_valid_trial_config() -> None:
    """The README's ``python -m trainables ...`` example names real keys (it once said
    ``train_subset=``, which the trial CLI refuses)."""
    import shlex

    from trainables.__main__ import parse_overrides
    from trainables.config import TrialConfig

    readme = " ".join((ROOT / "README.md").read_text().split())
    section = readme.split("One trial, no Ray")[1]
    command = re.findall(r"`python -m trainables ([^`]+)`", section)[0]
    raw = parse_overrides(shlex.split(command))
    cfg = TrialConfig.model_validate(raw)
    assert cfg.data.train_subset == 500 and cfg.data.dir is not None


def test_ci_script_fails_on_any_error() -> None:
    text = (ROOT / ".ci/run").read_text()
    assert "set -euo pipefail" in text


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff not installed")
    return [exe]


def test_ruff_check_is_clean() -> None:
    out = subprocess.run([*_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_ruff_format_is_clean() -> None:
    out = subprocess.run(
        [*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:]


SECRET_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"aws_secret_access_key\s*[:=]\s*\S{20,}", re.I),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub tokens
]


def test_no_credentials_in_tracked_files() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    hits = []
    for name in files.stdout.split():
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".db"} or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="ignore")
        hits += [
            f"{name}: {m.group(0)[:12]}..."
            for p in SECRET_PATTERNS
            for m in p.finditer(text)
            if "EXAMPLE" not in m.group(0)  # AWS's documented placeholder key, used in a test
        ]
    assert not hits, hits
