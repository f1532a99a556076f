"""``python -m sweep`` as a user runs it: a subprocess in an empty working folder.

Every user error must give exit code 2 and one ``error: <problem>; <fix>`` line on stderr, no
traceback, and leave nothing behind: no mlflow.db, no ray_results, no mlruns, no Ray session.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import CIFAR, REPO, SMOKE_ARGS, SMOKE_ENV, SmokeSweep, cli, needs_cifar, new_store

RUN_OPTIONS = (
    "--spec",
    "--smoke-test",
    "--resume",
    "--address",
    "--data-dir",
    "--tracking-uri",
    "--name",
    "--storage-path",
)
COMPARE_OPTIONS = ("--tracking-uri", "--experiment", "--out", "--target-acc")


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_user_error(proc: subprocess.CompletedProcess[str], fragment: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert "; " in line, line  # "<problem>; <fix>"
    assert fragment in line, line
    return line


def write_spec(folder: Path, **changes: object) -> Path:
    raw = yaml.safe_load((REPO / "sweep" / "specs" / "smoke.yaml").read_text())
    raw.update(changes)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------
def test_help_lists_commands(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--help")
    assert proc.returncode == 0
    assert "run" in proc.stdout and "compare" in proc.stdout
    assert listing(tmp_path) == set()


def test_run_help_lists_every_option(tmp_path: Path) -> None:
    proc = cli(tmp_path, "run", "--help")
    assert proc.returncode == 0
    for option in RUN_OPTIONS:
        assert option in proc.stdout, option


def test_compare_help_lists_every_option(tmp_path: Path) -> None:
    proc = cli(tmp_path, "compare", "--help")
    assert proc.returncode == 0
    for option in COMPARE_OPTIONS:
        assert option in proc.stdout, option
    assert "NAME" in proc.stdout


# ---------------------------------------------------------------------------------------------
# User errors: exit 2, one line, nothing created
# ---------------------------------------------------------------------------------------------
ARG_ERRORS = [
    ((), "no command given"),
    (("rnu",), "unknown command 'rnu' (did you mean 'run'?)"),
    (("run", "--epochs", "3"), "unrecognized arguments: --epochs 3"),
    (("run", "--spec"), "argument --spec: expected one argument"),
    (("compare", "--target-acc", "high"), "invalid float value: 'high'"),
    (("compare", "x", "--target-acc", "1.5"), "--target-acc must be in (0, 1]"),
    (("run", "--spec", "missing.yaml"), "spec file missing.yaml does not exist"),
    (("run", "--smoke-test", "--name", "two words"), "name: must be letters"),
    (("compare",), "no MLflow database at"),
    (("compare", "some-sweep", "--tracking-uri", "sqlite:///other.db"), "other.db"),
]


@pytest.mark.parametrize(
    ("args", "fragment"), ARG_ERRORS, ids=[" ".join(a) or "none" for a, _ in ARG_ERRORS]
)
def test_argument_errors(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    proc = cli(tmp_path, *args)
    assert_user_error(proc, fragment)
    assert listing(tmp_path) == set()


def test_missing_spec_file_names_one_fix(tmp_path: Path) -> None:
    """The error carries its own fix; the CLI adds no second one ("...; fix X and rerun")."""
    line = assert_user_error(cli(tmp_path, "run", "--spec", "missing.yaml"), "does not exist")
    assert line == "error: spec file missing.yaml does not exist; pass an existing --spec FILE"
    # a bad value in an existing spec still names the file to fix
    spec = write_spec(tmp_path, epochs=0)
    line = assert_user_error(cli(tmp_path, "run", "--spec", str(spec)), "epochs: must be >= 1")
    assert line.endswith(f"; fix {spec} and rerun"), line


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\nepochs: 2\npolicies: [{name: constant}\n")
    before = listing(tmp_path)
    assert_user_error(cli(tmp_path, "run", "--spec", str(spec)), "line 4")
    assert listing(tmp_path) == before


@pytest.mark.parametrize(
    "args",
    [("run", "--spec", "SPEC"), ("run", "--spec", "missing.yaml"), ("rnu",), ("compare",)],
    ids=["bad-spec", "missing-spec", "unknown-command", "compare-without-a-store"],
)
def test_user_errors_load_neither_torch_nor_ray_nor_mlflow(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A typo is answered in well under a second: the spec is checked without torch (the LR
    core loads it only for a range test or a snapshot), Ray or MLflow."""
    spec = write_spec(tmp_path, epochs=0)
    argv = [str(spec) if a == "SPEC" else a for a in args]
    code = (
        "import sys\n"
        "from sweep.cli import main\n"
        f"rc = main({argv!r})\n"
        "print('rc', rc, *(m in sys.modules for m in ('torch', 'ray', 'mlflow')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "rc 2 False False False", proc.stdout + proc.stderr


def test_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cifar"
    proc = cli(tmp_path, "run", "--smoke-test", "--data-dir", str(missing))
    assert_user_error(proc, "no-such-cifar")
    assert listing(tmp_path) == set()


def test_gpu_request_on_a_cpu_machine(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = write_spec(tmp_path, resources={"cpu": 1, "gpu": 1})
    before = listing(tmp_path)
    proc = cli(tmp_path, "run", "--spec", str(spec), "--data-dir", str(tmp_path))
    assert_user_error(proc, "resources.gpu: 1 GPU per trial but this machine has 0")
    assert listing(tmp_path) == before


def test_too_many_cpus_per_trial(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    spec = write_spec(tmp_path, resources={"cpu": cpus + 1, "gpu": 0})
    before = listing(tmp_path)
    proc = cli(tmp_path, "run", "--spec", str(spec))
    assert_user_error(proc, f"but this machine has {cpus}")
    assert listing(tmp_path) == before


@needs_cifar
def test_storage_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    before = listing(tmp_path)
    proc = cli(
        tmp_path,
        "run",
        "--smoke-test",
        "--data-dir",
        str(CIFAR),
        "--storage-path",
        str(tmp_path / "afile" / "results"),
    )
    assert_user_error(proc, "is a file, not a folder")
    assert listing(tmp_path) == before


@needs_cifar
def test_unusable_tracking_store(tmp_path: Path) -> None:
    proc = cli(
        tmp_path, "run", "--smoke-test", "--data-dir", str(CIFAR), "--tracking-uri", "./mlruns"
    )
    assert_user_error(proc, "mlruns")
    assert listing(tmp_path) == set()


@needs_cifar
def test_resume_of_a_missing_sweep(tmp_path: Path) -> None:
    proc = cli(tmp_path, "run", "--smoke-test", "--resume", "--data-dir", str(CIFAR))
    line = assert_user_error(proc, "no sweep named 'policy-compare-smoke' under")
    assert "run without --resume" in line
    assert listing(tmp_path) == set()


@needs_cifar
def test_existing_sweep_needs_resume(tmp_path: Path) -> None:
    exp = tmp_path / "ray_results" / "policy-compare-smoke"
    exp.mkdir(parents=True)
    (exp / "tuner.pkl").write_bytes(b"")  # what Tune.can_restore looks for
    before = listing(tmp_path)
    proc = cli(tmp_path, "run", "--smoke-test", "--data-dir", str(CIFAR))
    assert_user_error(proc, "already exists")
    assert listing(tmp_path) == before


def test_compare_of_a_sweep_without_runs(tmp_path: Path, empty_store: Path) -> None:
    from mlflow import MlflowClient

    MlflowClient(new_store(empty_store, tmp_path)).create_experiment("other")
    before = listing(tmp_path)
    proc = cli(tmp_path, "compare", "nobody-ran-this", "--out", "report")
    assert_user_error(proc, "nobody-ran-this")
    assert listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# The real thing: Ray + MLflow + real CIFAR-10, the CI smoke sweep
# ---------------------------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.slow
@needs_cifar
def test_smoke_sweep_end_to_end(smoke_sweep: SmokeSweep) -> None:
    folder, proc = smoke_sweep.folder, smoke_sweep.proc
    db = folder / "mlflow.db"
    results = folder / "ray_results"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert db.is_file()
    assert (results / "policy-compare-smoke").is_dir()
    # the UI command; db is the default store of the working folder: no --tracking-uri
    assert "\n  python -m sweep ui policy-compare-smoke\n" in proc.stdout
    # A quiet terminal: the status table, the project's own one-line events, no Ray noise.
    out = proc.stdout + proc.stderr
    for noise in (
        "Checkpoint successfully created",  # a line per checkpoint from every worker
        "Result logdir",  # Ray's staging folder, not where the results are
        "Token authentication",  # Ray's token-auth warning
        "Creating initial MLflow database tables",
        "Traceback",
    ):
        assert noise not in out, noise
    assert f"Results: {results / 'policy-compare-smoke'}" in out
    assert "range_test_on_plateau seed 0" in out and "range test: lr " in out  # its event line
    comparison = results / "policy-compare-smoke" / "comparison"
    assert f"comparison table and plots in {comparison}" in out
    assert (comparison / "val_acc_vs_epoch.png").is_file()
    # The summary fits 120 columns; a path is as long as the user's folders make it, and a
    # command to copy (the more-seeds run repeats the sweep's own options) is never wrapped.
    summary = out.split("Browse the runs")[0].split("trials finished")[-1]
    lines = summary.replace(str(folder), "<tmp>").splitlines()
    assert max(len(line) for line in lines if not line.startswith("  python -m sweep ")) <= 120

    # The finished sweep can be compared again, and a second run of it is refused.
    proc = cli(folder, "compare", "policy-compare-smoke")
    assert proc.returncode == 0, proc.stderr
    again = cli(folder, *SMOKE_ARGS, env=SMOKE_ENV)
    assert_user_error(again, "already exists")


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.slow
@needs_cifar
def test_more_seeds_are_another_sweep_compared_as_one(
    smoke_sweep: SmokeSweep, tmp_path: Path
) -> None:
    """The smoke sweep ran seed 0; its comparison says how to get more, and doing so (another
    sweep with --seeds, then compare of both) compares every seed as one."""
    assert smoke_sweep.proc.returncode == 0, smoke_sweep.proc.stderr[-3000:]
    out = smoke_sweep.proc.stdout
    assert "too few seeds to read; more seeds, compared with these as one:" in out
    assert f"  python -m sweep {shlex.join(SMOKE_ARGS)} --seeds 1-4 --name " in out
    assert "  python -m sweep compare policy-compare-smoke policy-compare-smoke-seeds-1-4\n" in out
    import sqlite3

    work = tmp_path / "work"  # a copy of the finished sweep's store: the fixture stays as it is
    work.mkdir()
    with (
        contextlib.closing(sqlite3.connect(smoke_sweep.folder / "mlflow.db")) as src,
        contextlib.closing(sqlite3.connect(work / "mlflow.db")) as dst,
    ):
        src.backup(dst)
    more = cli(
        work, *SMOKE_ARGS, "--seeds", "1", "--name", "more-smoke", timeout=600, env=SMOKE_ENV
    )
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]

    both = cli(work, "compare", "policy-compare-smoke", "more-smoke")
    assert both.returncode == 0, both.stderr
    assert (
        "sweeps 'policy-compare-smoke' + 'more-smoke' pooled: 4 finished trial runs" in both.stdout
    )
    table = both.stdout.split("paired with constant")[1]
    assert "range_test_on_plateau  2      " in table, table  # seeds 0 and 1, paired
    assert (work / "policy-compare-smoke+more-smoke-comparison" / "comparison.json").is_file()


# ---------------------------------------------------------------------------------------------
# Helpers, in-process
# ---------------------------------------------------------------------------------------------
def test_error_lines_have_problem_and_fix() -> None:
    from sweep.errors import SweepError, one_line

    assert one_line(SweepError("bad thing", "do this")) == "error: bad thing; do this"
    # "<problem>: pass ..." (the data module's style) becomes "<problem>; pass ..."
    assert one_line(ValueError("no data in /x: pass --data-dir DIR")) == (
        "error: no data in /x; pass --data-dir DIR"
    )
    assert one_line(ValueError("two\nlines")).count("\n") == 0


def test_tracking_uri_and_resume_command(tmp_path: Path) -> None:
    from sweep.cli import resume_command, ui_command
    from sweep.store import normalize_tracking_uri

    assert (
        normalize_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    )
    assert normalize_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert normalize_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert resume_command(["run", "--spec", "a b.yaml"]) == (
        "python -m sweep run --spec 'a b.yaml' --resume"
    )
    assert ui_command("s1", "sqlite:////x/mlflow.db", tmp_path) == (
        "python -m sweep ui s1 --tracking-uri sqlite:////x/mlflow.db"
    )
    default = normalize_tracking_uri("sqlite:///mlflow.db", tmp_path)
    assert ui_command("s1", default, tmp_path) == "python -m sweep ui s1"


def test_unreachable_cluster_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = cli(tmp_path, "run", "--smoke-test", "--address", f"127.0.0.1:{port}")
    assert_user_error(proc, f"cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert listing(tmp_path) == set()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["epochs=0"], "epochs: must be >= 1, got 0"),
        (["optimzer=adam"], "optimzer: unknown key (did you mean 'optimizer'?); valid keys: "),
        (
            ["data.train_subsett=5"],
            "data.train_subsett: unknown key (did you mean 'train_subset'?)",
        ),
        (
            ["data.train_subset=60000"],
            "data.train_subset: CIFAR-10 has 40000 training images left after a val_fraction",
        ),
        (
            ["policy=nope"],
            "policy: 'nope' is not known; choose one of: constant, cyclical, reduce_on_plateau",
        ),
        (
            ["policy=range_test_on_plateau", "policy_params.rule=fastest"],
            "policy_params.rule: 'fastest' is not known (did you mean 'steepest'?); choose one "
            "of: steepest, midpoint",
        ),
        (
            ["policy=range_test_on_plateau", "policy_params.patiense=3"],
            "policy_params.patiense: unknown key (did you mean 'patience'?)",
        ),
        (
            ["policy=range_test_on_plateau", "policy_params.num_steps=3"],
            "policy_params.num_steps: must be >= 6 or null, got 3",
        ),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_trial_command_line_errors_name_the_key(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m trainables`` words a bad config as the spec does: the key path as the user
    wrote it, the problem, the valid choices; exit 2, nothing trained."""
    from trainables.__main__ import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {line}"), err
    assert "\n" not in err


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("lr=1e-6", {"lr": 1e-6}),  # YAML 1.1 (plain PyYAML) would read the string '1e-6'
        ("lr=3E-3", {"lr": 3e-3}),
        ("lr=0.001", {"lr": 0.001}),
        ("data.train_subset=500", {"data": {"train_subset": 500}}),
        (
            "policy_params={patience: 0, min_lr: 1e-5}",
            {"policy_params": {"patience": 0, "min_lr": 1e-5}},
        ),
    ],
)
def test_trial_command_line_reads_numbers_as_a_person_does(pair: str, expected: dict) -> None:
    from trainables.__main__ import parse_overrides

    assert parse_overrides([pair]) == expected


def test_trial_command_line_refuses_a_key_given_twice(capsys: pytest.CaptureFixture[str]) -> None:
    from trainables.__main__ import main

    assert main(["policy_params={patience: 0, patience: 1}"]) == 2
    assert "duplicate key 'patience'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("3", [3]), ("2,3", [2, 3]), ("2-4", [2, 3, 4]), ("0-1, 7", [0, 1, 7]), ("5-5", [5])],
)
def test_seeds_option_takes_lists_and_ranges(text: str, seeds: list[int]) -> None:
    from sweep.cli import seed_list

    assert seed_list(text) == seeds


@pytest.mark.parametrize("text", ["", "two", "-1", "1.5", "3-", "4-2", "1,,2"])
def test_seeds_option_refuses_what_is_no_list_of_seeds(text: str) -> None:
    import argparse

    from sweep.cli import seed_list

    with pytest.raises(argparse.ArgumentTypeError):
        seed_list(text)


@pytest.mark.parametrize(
    ("argv", "uri", "run", "compare"),
    [
        (
            ["run", "--data-dir", "/d"],
            "default",
            "run --data-dir /d --seeds 2-4 --name sw-seeds-2-4",
            "compare sw sw-seeds-2-4",
        ),
        (  # the sweep's own --name, --seeds and --resume give way; a path is quoted
            ["run", "--resume", "--name", "sw", "--seeds=0,1", "--spec", "a b.yaml"],
            "default",
            "run --spec 'a b.yaml' --seeds 2-4 --name sw-seeds-2-4",
            "compare sw sw-seeds-2-4",
        ),
        (  # another store: compare is told where
            ["run", "--tracking-uri", "sqlite:////x/m.db", "--seeds", "7"],
            "sqlite:////x/m.db",
            "run --tracking-uri sqlite:////x/m.db --seeds 2-4 --name sw-seeds-2-4",
            "compare sw sw-seeds-2-4 --tracking-uri sqlite:////x/m.db",
        ),
    ],
)
def test_more_seeds_commands_repeat_the_sweeps_own_options(
    argv: list[str],
    uri: str,
    run: str,
    compare: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sweep.run_command import more_seeds_commands
    from sweep.store import normalize_tracking_uri

    monkeypatch.chdir(tmp_path)
    if uri == "default":
        uri = normalize_tracking_uri("sqlite:///mlflow.db", tmp_path)
    assert more_seeds_commands(argv, "sw", uri, "2-4") == (
        f"python -m sweep {run}",
        f"python -m sweep {compare}",
    )
