"""A sweep on a real multi-node Ray cluster, as on AWS but on this one machine.

The cluster is two Ray nodes, each its own GCS/raylet process tree (``ray.cluster_utils``):

* head:  1 CPU, no GPU
* node2: 1 CPU, 1 *logical* GPU (there is no CUDA here)

The driver is ``python -m sweep run --address <cluster>`` in a subprocess, exactly as a user
runs it on the head; it ships the data through the object store and the code through
``runtime_env`` py_modules, and is the only MLflow writer.

1. Two trials of ``{cpu: 1, gpu: 0}`` running two at a time cannot share a 1-CPU node: they
   must run on both nodes. Every trial's metrics and artifacts must reach MLflow through the
   driver, and the node ids reported by the trials must be the cluster's.
2. One trial of ``{cpu: 1, gpu: 0.5}`` can only be placed on node2 (the only GPU); there it
   must fall back to the CPU (``trainables.device.select_device``) and say so.

Afterwards every process of the cluster (GCS, raylets, agents, workers) must be gone. The
cluster's address is never published (no ``/tmp/ray/ray_current_cluster``), so other Ray
users on this machine can neither find nor join it, and ``ray stop`` is never used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CIFAR = Path(
    os.environ.get(
        "PLATEAU_SWEEP_CIFAR", str(REPO.parent / "shared" / "data" / "cifar-10-batches-py")
    )
)
if not CIFAR.is_dir():  # the shared checkout layout of this project
    CIFAR = Path("/work/shared/data/cifar-10-batches-py")

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(not CIFAR.is_dir(), reason=f"no CIFAR-10 at {CIFAR}"),
    pytest.mark.skipif(sys.platform != "linux", reason="multi-node Ray on one host: Linux"),
]

DRIVER_TIMEOUT_S = 240
FALLBACK_WARNING = "CUDA is not available here; running on CPU"


@dataclass
class MultiNode:
    cluster: Any  # ray.cluster_utils.Cluster
    address: str  # GCS address, for --address
    head_id: str
    gpu_node_id: str
    work: Path  # driver cwd, MLflow db, Ray results

    @property
    def node_ids(self) -> set[str]:
        return {self.head_id, self.gpu_node_id}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _cluster_processes(cluster: Any) -> list[Any]:
    """Every live process of the cluster: what Ray started per node, and their descendants
    (workers, dashboard/runtime-env agents, log monitor...)."""
    import psutil  # Ray's own dependency (vendored in ray/thirdparty_files)

    procs: dict[int, psutil.Process] = {}
    for node in cluster.list_all_nodes():
        for infos in node.all_processes.values():
            for info in infos:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(info.process.pid)
                    procs[p.pid] = p
                    for child in p.children(recursive=True):
                        procs[child.pid] = child
    return list(procs.values())


def _alive(procs: list[Any]) -> list[str]:
    import psutil

    left = []
    for p in procs:
        try:
            # is_running() also guards against a reused pid (it compares creation times).
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            pass
    return left


def _processes_mentioning(fragment: str) -> list[str]:
    """Processes whose command line mentions ``fragment`` (our private Ray temp folder)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if fragment in cmdline and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{p.info['pid']} {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def multinode() -> Iterator[MultiNode]:
    import ray
    import ray._common.utils as common_utils
    import ray._private.utils as private_utils
    from ray.cluster_utils import Cluster

    # A short private temp folder: Ray's socket paths have a length limit, and the folder name
    # identifies this cluster's processes for the leftover check.
    ray_tmp = tempfile.mkdtemp(prefix="psmn-", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="plateau-sweep-multinode-"))

    # Cluster() publishes its address in /tmp/ray/ray_current_cluster (where a plain
    # `ray.init()` of anyone on this machine would find and JOIN it) and deletes that file on
    # shutdown (whoever wrote it). Keep both inside our own temp folder instead.
    write_orig, reset_orig = private_utils.write_ray_address, common_utils.reset_ray_address
    private_utils.write_ray_address = lambda address, temp_dir=None: write_orig(address, ray_tmp)
    common_utils.reset_ray_address = lambda temp_dir=None: reset_orig(ray_tmp)
    saved_env = {k: os.environ.get(k) for k in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ.pop("RAY_ADDRESS", None)
    # Deterministic auth for the local test cluster: Ray 2.60 would otherwise decide from
    # whatever ~/.ray/auth_token happens to exist (README.md covers token auth).
    os.environ["RAY_AUTH_MODE"] = "disabled"

    common = {
        "temp_dir": ray_tmp,
        "object_store_memory": 200 * 1024**2,
        "dashboard_agent_listen_port": None,  # a free port, not the shared default 52365
    }
    cluster = None
    procs: list[Any] = []
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                **common,
                "num_cpus": 1,
                "num_gpus": 0,
                "include_dashboard": False,
                # Ray still starts its (minimal) dashboard server, by default on the shared 8265.
                "dashboard_port": _free_port(),
            },
        )
        gpu_node = cluster.add_node(**common, num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes(timeout=60)
        published = Path("/tmp/ray/ray_current_cluster")
        assert not published.exists() or published.read_text().strip() != cluster.address, (
            "the test cluster's address leaked into the machine-wide Ray address file"
        )
        procs = _cluster_processes(cluster)
        yield MultiNode(
            cluster=cluster,
            address=cluster.address,
            head_id=cluster.head_node.node_id,
            gpu_node_id=gpu_node.node_id,
            work=work,
        )
        procs = _cluster_processes(cluster)  # again: workers started since
    finally:
        try:
            if ray.is_initialized():
                ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
        finally:
            private_utils.write_ray_address = write_orig
            common_utils.reset_ray_address = reset_orig
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    # Teardown check: a failure is reported as an error in the teardown of the last test.
    deadline = time.monotonic() + 30
    while (_alive(procs) or _processes_mentioning(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = _alive(procs) + _processes_mentioning(ray_tmp)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not leftovers, "Ray processes left after cluster.shutdown():\n" + "\n".join(leftovers)
    assert procs, "found no cluster processes to check"


SMOKE = yaml.safe_load((REPO / "sweep" / "specs" / "smoke.yaml").read_text())


def write_spec(folder: Path, name: str, **changes: Any) -> Path:
    raw = copy.deepcopy(SMOKE)
    raw.update(name=name, **changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_driver(mn: MultiNode, spec: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # --address alone decides which cluster the driver joins
    env.pop("PLATEAU_SWEEP_DATA", None)
    env["RAY_AUTH_MODE"] = "disabled"  # as the cluster (see the fixture)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        "--spec",
        str(spec),
        "--address",
        mn.address,
        "--data-dir",
        str(CIFAR),
        "--tracking-uri",
        f"sqlite:///{mn.work / 'mlflow.db'}",
        "--storage-path",
        str(mn.work / "ray_results"),
    ]
    proc = subprocess.run(
        cmd,
        cwd=mn.work,
        env=env,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n"
        f"{proc.stderr[-6000:]}"
    )
    return proc


def mlflow_children(mn: MultiNode, sweep: str) -> tuple[Any, Any, list[Any]]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{mn.work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(sweep)
    assert experiment is not None, f"no MLflow experiment {sweep}"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("plateau_sweep.role") == "parent"]
    assert len(parents) == 1, [r.data.tags for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return client, parent, children


def tune_result_rows(mn: MultiNode, sweep: str) -> list[dict[str, Any]]:
    """Every result Tune stored for the sweep (result.json: one JSON object per line)."""
    rows = []
    for path in sorted((mn.work / "ray_results" / sweep).glob("*/result.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def check_tracked(mn: MultiNode, sweep: str, trials: int, epochs: int) -> list[Any]:
    """Everything a trial reported reached MLflow through the driver."""
    client, parent, children = mlflow_children(mn, sweep)
    assert len(children) == trials, [c.data.tags for c in children]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "spec.yaml" in parent_files, parent_files
    for child in children:
        assert child.info.status == "FINISHED", child.info
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1)), history
        assert "test_acc" in child.data.metrics
        assert child.data.tags.get("plateau_sweep.node_id") in mn.node_ids, child.data.tags
        assert child.data.tags.get("plateau_sweep.device", "").startswith("cpu"), child.data.tags
        if child.data.tags.get("plateau_sweep.policy") == "range_test_on_plateau":
            # The smoke spec's range-test arm always runs a range test: its event artifacts.
            events = client.list_artifacts(child.info.run_id, "events")
            assert any(a.path.endswith(".json") for a in events), events
    return children


def test_trials_spread_over_the_nodes(multinode: MultiNode) -> None:
    mn = multinode
    sweep = "multinode-spread"
    spec = write_spec(mn.work, sweep, resources={"cpu": 1, "gpu": 0}, max_concurrent_trials=2)
    start = time.monotonic()
    proc = run_driver(mn, spec)
    print(f"spread sweep: {time.monotonic() - start:.0f} s")
    assert "2/2 trials finished, 0 errored" in proc.stdout, proc.stdout[-3000:]

    children = check_tracked(mn, sweep, trials=2, epochs=SMOKE["epochs"])
    nodes = {c.data.tags["plateau_sweep.node_id"] for c in children}
    assert nodes == mn.node_ids, f"trials ran on {nodes}, cluster nodes {mn.node_ids}"

    # Tune's own record (written on the nodes, gathered in storage) says the same.
    rows = tune_result_rows(mn, sweep)
    assert {r["node_id"] for r in rows} == mn.node_ids
    by_trial: dict[str, set[str]] = {}
    for row in rows:
        by_trial.setdefault(row["trial_id"], set()).add(row["node_id"])
    assert len(by_trial) == 2 and all(len(n) == 1 for n in by_trial.values()), by_trial


def test_gpu_trial_lands_on_the_gpu_node_and_falls_back_to_cpu(multinode: MultiNode) -> None:
    mn = multinode
    sweep = "multinode-gpu"
    spec = write_spec(
        mn.work,
        sweep,
        resources={"cpu": 1, "gpu": 0.5},
        policies=[{"name": "constant"}],
        max_concurrent_trials=1,
    )
    start = time.monotonic()
    proc = run_driver(mn, spec)
    print(f"gpu sweep: {time.monotonic() - start:.0f} s")
    assert "1/1 trials finished, 0 errored" in proc.stdout, proc.stdout[-3000:]

    (child,) = check_tracked(mn, sweep, trials=1, epochs=SMOKE["epochs"])
    assert child.data.tags["plateau_sweep.node_id"] == mn.gpu_node_id
    assert child.data.tags["plateau_sweep.device"].startswith("cpu")
    rows = tune_result_rows(mn, sweep)
    assert rows and {r["node_id"] for r in rows} == {mn.gpu_node_id}
    assert {r["device"].split()[0] for r in rows} == {"cpu"}
    # The trial's warning reaches the driver's console (Ray forwards worker output).
    assert FALLBACK_WARNING in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
