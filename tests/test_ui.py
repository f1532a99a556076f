"""``python -m sweep ui``: the saved runs view, the link, bad input, and -- in headless
Chromium -- that the link really opens on every trial run of a real smoke sweep.

The fast tests build a small MLflow store by hand (parent and child runs tagged as the
tracker tags them); bad input goes through ``sweep.cli.main`` in-process with the server start
replaced by a failure, so "nothing started" is checked, not assumed. The slow test takes a
real smoke sweep (the session's ``smoke_sweep``, shared with the CLI's end-to-end test), starts
``python -m sweep ui`` as a user would, and reads the page's DOM (``chromium --dump-dom``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import REPO, SmokeSweep, cli, needs_cifar, new_store
from mlflow import MlflowClient

from sweep import runs_view, ui
from sweep.cli import main
from sweep.store import (
    BEST_VAL_ACC_METRIC,
    EXPERIMENT_KIND_TRAINING,
    TAG_EXPERIMENT_KIND,
    TAG_PARENT_RUN_ID,
    TAG_POLICY_LABEL,
    TAG_ROLE,
    TAG_SEED,
    TAG_SWEEP,
)

CHROMIUM = Path("/usr/bin/chromium")
#: What MLflow's GenAI experiment overview shows and its model-training runs page does not.
GENAI_TEXTS = ("Detect Issues", "Token Usage", "Tool calls")


# -- a store laid out as the tracker lays it out ---------------------------------------------
def _log_trial(
    client: MlflowClient, exp: str, parent: str, sweep: str, label: str, seed: int, **kw: Any
) -> str:
    run = client.create_run(
        exp,
        run_name=f"{label} · seed {seed}",
        tags={
            TAG_PARENT_RUN_ID: parent,
            TAG_ROLE: "child",
            TAG_SWEEP: sweep,
            TAG_POLICY_LABEL: label,
            TAG_SEED: str(seed),
        },
    )
    run_id = run.info.run_id
    client.log_param(run_id, "policy_label", label)
    client.log_param(run_id, "seed", str(seed))
    for epoch, acc in enumerate(kw.get("val_acc", ()), start=1):
        client.log_metric(run_id, "val_acc", acc, step=epoch)
    if kw.get("status"):
        client.set_terminated(run_id, kw["status"])
    return run_id


def _log_sweep(client: MlflowClient, exp: str, sweep: str) -> str:
    parent = client.create_run(exp, run_name=sweep, tags={TAG_SWEEP: sweep, TAG_ROLE: "parent"})
    return parent.info.run_id


def make_store(folder: Path, empty_store: Path) -> dict[str, Any]:
    """Sweep 'demo' (one finished trial without best_val_acc, one still running) and sweep
    'other' in a second experiment."""
    uri = new_store(empty_store, folder)
    client = MlflowClient(uri)
    exp = client.create_experiment("demo")
    parent = _log_sweep(client, exp, "demo")
    done = _log_trial(
        client, exp, parent, "demo", "constant", 0, val_acc=(0.3, 0.5, 0.4), status="FINISHED"
    )
    running = _log_trial(client, exp, parent, "demo", "range_test_on_plateau", 0, val_acc=(0.2,))
    other = client.create_experiment("other")
    _log_trial(client, other, _log_sweep(client, other, "other"), "other", "constant", 1)
    return {"uri": uri, "client": client, "exp": exp, "parent": parent, "trials": [done, running]}


@pytest.fixture
def store(tmp_path: Path, empty_store: Path) -> dict[str, Any]:
    return make_store(tmp_path, empty_store)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> str:
    """A store that the tests using it only read."""
    return str(make_store(tmp_path_factory.mktemp("store"), empty_store)["uri"])


def saved_state(client: MlflowClient, experiment_id: str, key: str) -> dict[str, Any]:
    envelope = json.loads(
        client.get_experiment(experiment_id).tags[runs_view.VIEW_TAG_PREFIX + key]
    )
    return dict(json.loads(envelope["state"]))


# -- the view and the link ---------------------------------------------------------------------
def test_link_opens_the_saved_view_in_model_training_mode() -> None:
    link = runs_view.runs_link("http://127.0.0.1:5001/", "7", "plateau_sweep.trials.s-1.a")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:5001", "/")
    route, _, query = parts.fragment.partition("?")
    assert route == "/experiments/7/runs"
    assert parse_qs(query) == {
        "workflowType": ["machine_learning"],
        "viewStateShareKey": ["plateau_sweep.trials.s-1.a"],
    }


def test_saved_view_is_mlflows_envelope_around_the_state() -> None:
    state = runs_view.view_state(runs_view.trials_filter("s"))
    envelope = json.loads(runs_view.saved_view("trials of s", state, 123))
    # what MLflow's UI checks before it lists a saved view: name, createdAt, state (a string)
    assert envelope["name"] == "trials of s" and envelope["createdAt"] == 123
    assert json.loads(envelope["state"]) == state
    assert state["selectedColumns"] == [
        "metrics.`best_val_acc`",
        "metrics.`test_acc`",
        "params.`policy_label`",
        "params.`seed`",
    ]
    assert state["orderByKey"] == "tags.`mlflow.runName`"


def test_publish_view_lists_the_trials_and_marks_the_experiment(store: dict[str, Any]) -> None:
    client, exp = store["client"], store["exp"]
    view = runs_view.publish_view(client, store["uri"], "demo")
    assert view.experiment_id == exp and view.parent_run_id == store["parent"]
    assert view.trial_runs == ("constant · seed 0", "range_test_on_plateau · seed 0")
    assert client.get_experiment(exp).tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING
    state = saved_state(client, exp, view.key)
    # the saved filter finds exactly the sweep's trials (never the parent)
    found = client.search_runs([exp], state["searchFilter"])
    assert sorted(r.info.run_id for r in found) == sorted(store["trials"])
    # best_val_acc filled in for the finished trial only (the running one is the tracker's)
    done, running = (client.get_run(r) for r in store["trials"])
    best = client.get_metric_history(done.info.run_id, BEST_VAL_ACC_METRIC)
    assert sorted((m.step, m.value) for m in best) == [(1, 0.3), (2, 0.5), (3, 0.5)]
    assert BEST_VAL_ACC_METRIC not in running.data.metrics
    # again: nothing changes, a kind the user chose is kept
    client.set_experiment_tag(exp, TAG_EXPERIMENT_KIND, "genai_development")
    assert runs_view.publish_view(client, store["uri"], "demo") == view
    assert client.get_experiment(exp).tags[TAG_EXPERIMENT_KIND] == "genai_development"
    assert len(client.get_metric_history(done.info.run_id, BEST_VAL_ACC_METRIC)) == 3


def test_a_sweep_name_run_twice_shows_the_newest(store: dict[str, Any]) -> None:
    client, exp = store["client"], store["exp"]
    time.sleep(0.01)  # parents are told apart by start time
    newer = _log_sweep(client, exp, "demo")
    trial = _log_trial(client, exp, newer, "demo", "constant", 5, status="FINISHED")
    view = runs_view.publish_view(client, store["uri"], "demo")
    assert view.parent_run_id == newer
    assert view.trial_runs == ("constant · seed 5",)
    search_filter = saved_state(client, exp, view.key)["searchFilter"]
    assert search_filter == runs_view.trials_filter("demo", newer)
    assert [r.info.run_id for r in client.search_runs([exp], search_filter)] == [trial]


# -- bad input: one error line, exit 2, no server --------------------------------------------
def _busy_port() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("ui",), "no MLflow database at"),
        (("ui", "nope", "--tracking-uri", "{uri}"), "no sweep named 'nope'"),
        (("ui", "demo", "--tracking-uri", "{uri}", "--port", "0"), "--port 0 is not a TCP port"),
        (("ui", "demo", "--tracking-uri", "{uri}", "--port", "70000"), "is not a TCP port"),
        (("ui", "demo", "--port", "five"), "invalid int value: 'five'"),
        (("ui", "demo", "--tracking-uri", "{uri}", "--port", "{busy}"), "already in use"),
        (("ui", "demo", "--tracking-uri", "./mlruns"), "refuses file stores"),
        (("ui", "demo", "--tracking-uri", "http://127.0.0.1:9", "--port", "1"), "drop --port"),
        (("ui", "demo", "--tracking-uri", "databricks"), "its own MLflow UI"),
        (("ui", "demo", "--tracking-uri", "sqlite:///missing/m.db"), "no MLflow database"),
    ],
)
def test_bad_input(
    args: tuple[str, ...],
    fragment: str,
    store_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_server(*a: Any, **k: Any) -> None:
        raise AssertionError("a server was started")

    monkeypatch.setattr(subprocess, "Popen", no_server)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with _busy_port() as busy:
        port = str(busy.getsockname()[1])
        argv = [a.format(uri=store_uri, busy=port) for a in args]
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "; " in err[0], err
    assert fragment in err[0]
    assert list(cwd.iterdir()) == []  # no db, no mlartifacts, no log


def test_bad_input_as_a_process(tmp_path: Path) -> None:
    proc = cli(tmp_path, "ui", "--port", "99999")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --port 99999 is not a TCP port; pass a port in 1-65535"


def test_help_lists_every_option(tmp_path: Path) -> None:
    proc = cli(tmp_path, "ui", "--help")
    assert proc.returncode == 0
    for option in ("NAME", "--tracking-uri", "--port"):
        assert option in proc.stdout


def test_server_command_binds_loopback_only(tmp_path: Path) -> None:
    command = ui.server_command(f"sqlite:///{tmp_path}/mlflow.db", 5123)
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5123"
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")


# -- the real thing ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _read_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_for_link(proc: subprocess.Popen[str], lines: queue.Queue[str], seen: list[str]) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "".join(seen)
            continue
        seen.append(line)
        if line.startswith("  http://"):
            return line.strip()
    raise AssertionError("no link within 240 s:\n" + "".join(seen))


def _screenshot_flags() -> tuple[str, ...]:
    """The Chromium flags of scripts/screenshots.py (not a package: loaded from its file)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "screenshots", REPO / "scripts" / "screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.HEADLESS_FLAGS)


HEADLESS_FLAGS = _screenshot_flags()


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium sees it on a wide screen
    (the runs table renders only the columns in view)."""
    profile.mkdir()
    proc = subprocess.run(
        [
            str(CHROMIUM),
            *HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1920,1080",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def row_ids(dom: str) -> set[str]:
    """The run ids of the rows of the runs table."""
    return set(re.findall(r'role="row"[^>]*row-id="([0-9a-f]{32})"', dom))


def texts(dom: str) -> set[str]:
    dom = re.sub(r"<(script|style|svg)\b.*?</\1>", "", dom, flags=re.S)
    return {t.strip() for t in re.split(r"<[^>]+>", dom) if t.strip()}


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.realdata
@needs_cifar
@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no headless browser at {CHROMIUM}")
def test_the_link_opens_on_every_trial_run(smoke_sweep: SmokeSweep, tmp_path: Path) -> None:
    work, proc = smoke_sweep.folder, smoke_sweep.proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "\n  python -m sweep ui policy-compare-smoke\n" in proc.stdout

    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("policy-compare-smoke").experiment_id],
        "tags.`plateau_sweep.role` = 'parent'",
    )
    trials = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(trials) == 2

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweep", "ui", "policy-compare-smoke", "--port", str(port)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(server.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        link = _wait_for_link(server, lines, seen)
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/")

        dom = dump_dom(link, tmp_path / "profile")
        shown = texts(dom)
        assert row_ids(dom) == {t.info.run_id for t in trials}  # every trial, not the parent
        assert {t.info.run_name for t in trials} <= shown
        assert {"best_val_acc", "test_acc", "policy_label", "seed"} <= shown
        assert "Model training" in shown and not shown & set(GENAI_TEXTS)

        # The same page without the link's view: the check above would fail on it.
        plain = dump_dom(link.split("?")[0], tmp_path / "profile-plain")
        assert row_ids(plain) != row_ids(dom), "the plain runs page lists the trials by itself"

        # A tracking server's store: nothing started, the link points to that server.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        server_uri = f"http://127.0.0.1:{port}"
        remote = cli(elsewhere, "ui", "policy-compare-smoke", "--tracking-uri", server_uri)
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout.splitlines()[-1] == f"  {link}", remote.stdout

        # Ctrl-C stops the server, and the port is free again.
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        time.sleep(1)  # the reader thread drains the last lines
        while not lines.empty():
            seen.append(lines.get())
        assert "stopped the MLflow UI" in "".join(seen)
        ui.check_port(port)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)  # the MLflow server dies with it (Linux)
            server.wait()
