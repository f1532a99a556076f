"""benchmarks/oracle.py --quick: the whole pipeline (states, oracle grid, range tests, analysis)
on a few real CIFAR-10 images, and its re-analysis from the cache without training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.realdata
def test_oracle_quick_run_and_reanalysis(real_cifar_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "oracle.json"
    args = [sys.executable, str(REPO / "benchmarks" / "oracle.py"), "--quick", "--out", str(out)]
    args += ["--data-dir", str(real_cifar_dir)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    rules = doc["main"]["rules"]
    assert {"ours_steepest", "torch_lr_finder", "fastai_valley"} <= set(rules)
    for horizon in ("half", "2ep"):
        assert set(rules["ours_steepest"][horizon]) >= {"median_abs_decades", "worse_than_running"}
    (state,) = doc["rows"]["ours_steepest"]
    assert state["oracle"]["2ep"] is not None
    curves = json.loads((tmp_path / "oracle_curves" / f"{state['state']}.json").read_text())
    assert len(curves["oracle"]["0"]) >= 3 and curves["oracle"]["1"]  # both streams
    assert (tmp_path / "oracle_scatter_2ep.png").read_bytes()[:4] == b"\x89PNG"
    out.unlink()
    again = subprocess.run([*args, "--analyse-only"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(out.read_text())["main"]["rules"] == rules
