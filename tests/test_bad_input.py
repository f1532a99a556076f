"""Bad input, table-driven, through the ``python -m sweep`` entry point.

Every case: exit code 2, exactly one ``error: <problem>; <fix>`` line on stderr naming the
problem, no traceback, and nothing created in the working folder (no mlflow.db, no ray_results,
no mlartifacts, no Ray session folder -- RAY_TMPDIR points into the working folder, so a Ray
that started would show up there).

Groups: spec (the YAML spec), data (a broken copy of the tiny CIFAR fixture via --data-dir),
cli (commands and options).

Speed: a fresh interpreter per case costs ~3 s of imports (torch, Ray), so the table runs in one
child process that calls ``sweep.cli.main(argv)`` once per case, each in its own empty working
folder with stdout/stderr captured and any escaping exception recorded as a traceback. Three
cases, one per group, also run as a real ``python -m sweep`` process each.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import LABEL_NAMES, TINY_BATCHES, new_store, tiny_batch, write_pickle

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "sweep" / "specs" / "smoke.yaml").read_text())
#: Small enough for the tiny fixture (5 x 20 train images, val_fraction 0.2 -> 80 train).
TINY_DATA = {"train_subset": 60, "val_subset": 20, "test_subset": 20}


def rtp(**params: Any) -> list[dict[str, Any]]:
    return [{"name": "range_test_on_plateau", "params": params}]


@dataclass(frozen=True)
class Case:
    group: str  # spec | data | cli
    name: str
    fragment: str  # what the one error line must contain
    spec: dict[str, Any] | None = None  # changes to the smoke spec (None: no --spec)
    args: tuple[str, ...] = ("run",)
    data: Callable[[Path], None] | None = None  # breaks a fresh tiny CIFAR folder
    env: dict[str, str] = field(default_factory=dict)


# -- breaking the tiny CIFAR folder ------------------------------------------------------------
def _rewrite(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def brk(root: Path) -> None:
        with (root / name).open("rb") as fh:
            batch = pickle.load(fh)  # our own fixture file: trusted
        change(batch)
        write_pickle(root / name, batch)

    return brk


def _missing_folder(root: Path) -> None:
    for path in root.iterdir():
        path.unlink()
    root.rmdir()


def _missing_file(root: Path) -> None:
    (root / "data_batch_3").unlink()


def _truncated(root: Path) -> None:
    raw = (root / "data_batch_2").read_bytes()
    (root / "data_batch_2").write_bytes(raw[: len(raw) // 2])


def _garbage(root: Path) -> None:
    (root / "test_batch").write_bytes(b"not a pickle at all")


def _wrong_shape(batch: dict[str, Any]) -> None:
    batch["data"] = batch["data"][:, :3000].copy()


def _bad_label(batch: dict[str, Any]) -> None:
    batch["labels"][3] = 10


class _ImportsOs:
    """Unpickling this would import ``os`` and run a shell command that writes a marker."""

    marker = "PWNED_BY_PICKLE"

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _imports_os(root: Path) -> None:
    write_pickle(root / "data_batch_1", _ImportsOs())


def _os_inside_labels(batch: dict[str, Any]) -> None:
    batch["labels"] = _ImportsOs()


def _float_pixels(batch: dict[str, Any]) -> None:
    batch["data"] = batch["data"].astype(np.float32)


CASES: list[Case] = [
    # -- spec: the wording of each spec error is tested in test_spec.py; these check the
    # -- command's contract (exit 2, one line naming the file to fix, nothing created)
    Case("spec", "unknown-key", "epoch: unknown key (did you mean 'epochs'?)", {"epoch": 3}),
    Case("spec", "wrong-type", "epochs: must be an integer", {"epochs": "three"}),
    Case("spec", "unknown-policy", "step_decay", {"policies": [{"name": "step_decay"}]}),
    Case(
        "spec",
        "num-steps-too-short-to-suggest",
        "policies[0].params.num_steps: must be >= 6 or null, got 4",
        {"policies": rtp(num_steps=4)},
    ),
    Case(
        "spec",
        "subset-above-cifar",
        "data.train_subset",
        {"data": {**SMOKE["data"], "train_subset": 45000}},
    ),
    # -- data ----------------------------------------------------------------------------------
    Case("data", "missing-folder", "does not exist", {}, data=_missing_folder),
    Case("data", "missing-batch-file", "data_batch_3", {}, data=_missing_file),
    Case("data", "truncated-pickle", "truncated", {}, data=_truncated),
    Case("data", "not-a-pickle", "test_batch", {}, data=_garbage),
    Case(
        "data",
        "wrong-array-shape",
        "shape (20, 3000)",
        {},
        data=_rewrite("data_batch_5", _wrong_shape),
    ),
    Case("data", "wrong-dtype", "float32", {}, data=_rewrite("data_batch_4", _float_pixels)),
    Case("data", "labels-out-of-range", "label 10", {}, data=_rewrite("data_batch_4", _bad_label)),
    Case("data", "pickle-imports-os", "refusing to load", {}, data=_imports_os),
    Case(
        "data",
        "pickle-imports-os-in-labels",
        "refusing to load",
        {},
        data=_rewrite("data_batch_2", _os_inside_labels),
    ),
    Case(
        "data",
        "subset-above-the-data",
        "data.train_subset: 500 is more than the 80 images of the training split",
        {"data": {**SMOKE["data"], **TINY_DATA, "train_subset": 500}},
        data=lambda root: None,
    ),
    # -- cli -----------------------------------------------------------------------------------
    Case("cli", "no-command", "no command given", args=()),
    Case("cli", "unknown-command", "unknown command 'rnu' (did you mean 'run'?)", args=("rnu",)),
    Case(
        "cli", "unknown-option", "unrecognized arguments: --epochs", args=("run", "--epochs", "3")
    ),
    Case("cli", "missing-spec-file", "does not exist", args=("run", "--spec", "nope.yaml")),
    Case(
        "cli", "resume-no-such-sweep", "no sweep named 'bad-input' under", {}, ("run", "--resume")
    ),
    Case(
        "cli",
        "seeds-not-a-list",
        "argument --seeds: 'two' is not a list of seeds",
        args=("run", "--seeds", "two"),
    ),
    Case("cli", "seeds-empty-range", "the range 4-2 is empty", args=("run", "--seeds", "4-2")),
    Case(
        "cli",
        "seeds-twice",
        "seeds[2]: duplicate seed 2; list each seed once; fix --seeds",
        {},
        ("run", "--seeds", "1-2,2"),
    ),
    Case(
        "cli",
        "seeds-on-resume",
        "--seeds cannot change a sweep being resumed",
        {},
        ("run", "--resume", "--seeds", "3"),
    ),
    Case("cli", "compare-no-store", "no MLflow database at", args=("compare", "bad-input")),
    Case("cli", "compare-no-runs", "bad-input", args=("compare", "bad-input", "--tracking-uri")),
    Case(
        "cli",
        "compare-bad-target",
        "--target-acc must be in (0, 1]",
        args=("compare", "x", "--target-acc", "2"),
    ),
]


def _ids() -> list[str]:
    return [f"{c.group}-{c.name}" for c in CASES]


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _tiny_cifar(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1234)
    for name in TINY_BATCHES:
        write_pickle(folder / name, tiny_batch(name, rng))
    meta = {"num_cases_per_batch": 20, "label_names": LABEL_NAMES, "num_vis": 3072}
    write_pickle(folder / "batches.meta", meta)
    return folder


def _empty_store(folder: Path, template: Path) -> str:
    """An MLflow store with one unrelated experiment (made before the 'before' listing)."""
    from mlflow import MlflowClient

    uri = new_store(template, folder)
    MlflowClient(uri).create_experiment("o")
    return uri


@dataclass
class Prepared:
    root: Path  # everything of the case lives here
    work: Path  # the (empty) working folder the CLI runs in
    args: list[str]
    before: set[str]


def _prepare(case: Case, root: Path, empty_store: Path) -> Prepared:
    work = root / "work"
    work.mkdir(parents=True)
    args = list(case.args)
    data_dir = _tiny_cifar(root)
    if case.data is not None:
        case.data(data_dir)
    if case.spec is not None:
        raw = {**SMOKE, "name": "bad-input", "data": {**SMOKE["data"], **TINY_DATA}}
        raw.update(case.spec)
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump(raw, sort_keys=False))
        args += ["--spec", str(spec), "--data-dir", str(data_dir)]
    if args[-1:] == ["--tracking-uri"]:
        (root / "store").mkdir()
        args.append(_empty_store(root / "store", empty_store))
    return Prepared(root, work, args, _listing(root))


def _env(work: Path) -> dict[str, str]:
    env = {**os.environ, "RAY_TMPDIR": str(work / "ray_tmp"), "PYTHONPATH": str(REPO)}
    env.pop("PLATEAU_SWEEP_DATA_DIR", None)
    return env


#: Runs sweep.cli.main once per job (a JSON list of {id, cwd, args}); writes {id: outcome}.
RUNNER = r"""
import contextlib, io, json, os, sys, traceback
from sweep.cli import main
jobs = json.load(open(sys.argv[1]))
out = {}
for job in jobs:
    os.chdir(job["cwd"])
    os.environ["RAY_TMPDIR"] = os.path.join(job["cwd"], "ray_tmp")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            rc = main(job["args"])
        except BaseException:
            traceback.print_exc()
            rc = -1
    out[job["id"]] = {"rc": rc, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}
os.chdir(sys.argv[3])
json.dump(out, open(sys.argv[2], "w"))
"""


@dataclass
class Outcome:
    prepared: Prepared
    rc: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("bad_input")
    prepared = {
        cid: _prepare(case, base / cid, empty_store)
        for cid, case in zip(_ids(), CASES, strict=True)
    }
    jobs = [{"id": cid, "cwd": str(p.work), "args": p.args} for cid, p in prepared.items()]
    (base / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(base / "jobs.json"), str(base / "out.json"), str(base)],
        cwd=base,
        env=_env(base),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    raw = json.loads((base / "out.json").read_text())
    return {cid: Outcome(p, **raw[cid]) for cid, p in prepared.items()}


def _check(case: Case, prepared: Prepared, rc: int, stdout: str, stderr: str) -> None:
    out = stdout + stderr
    lines = stderr.strip().splitlines()
    assert rc == 2, out
    assert "Traceback" not in out, out
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: ") and "; " in line, line  # "<problem>; <fix>"
    assert case.fragment in line, line
    if case.group == "spec":
        assert "spec.yaml" in line.rsplit("; ", 1)[-1], line  # the fix names the file
    assert _ImportsOs.marker not in _listing(prepared.work), "the hostile pickle ran"
    assert _listing(prepared.work) == set()  # no mlflow.db, ray_results, mlartifacts, Ray session
    assert _listing(prepared.root) == prepared.before


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_bad_input(case: Case, outcomes: dict[str, Outcome]) -> None:
    got = outcomes[f"{case.group}-{case.name}"]
    _check(case, got.prepared, got.rc, got.stdout, got.stderr)


@pytest.mark.parametrize(
    "cid",
    ["spec-num-steps-too-short-to-suggest", "data-pickle-imports-os", "cli-resume-no-such-sweep"],
)
def test_bad_input_as_a_real_process(cid: str, tmp_path: Path, empty_store: Path) -> None:
    case = CASES[_ids().index(cid)]
    prepared = _prepare(case, tmp_path / "case", empty_store)
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", *prepared.args],
        cwd=prepared.work,
        env=_env(prepared.work),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    _check(case, prepared, proc.returncode, proc.stdout, proc.stderr)
