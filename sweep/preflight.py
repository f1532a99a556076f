"""The checks ``run`` makes before anything starts (so a mistake leaves nothing behind), and the
data loading that ends them: storage, resources, cluster address, the sweep to resume, the
split sizes. Each refusal is a :class:`SweepError` (one line, exit 2)."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sweep.errors import SweepError


def check_storage(storage: str) -> None:
    """A local storage path must be creatable: its nearest existing parent a folder that takes
    a file. Checked by trying (a probe file, removed at once): permission bits alone say yes
    for places such as /proc."""
    if "://" in storage and not storage.startswith("file://"):
        return  # a remote URI: Ray's pyarrow filesystem reports access problems itself
    path = Path(storage[len("file://") :] if storage.startswith("file://") else storage)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise SweepError(
            f"storage path {path}: {probe} is a file, not a folder",
            "pass --storage-path with a folder",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".plateau-sweep-probe-"):
            pass
    except OSError as exc:
        raise SweepError(
            f"storage path {path}: cannot write to {probe} ({exc.strerror or exc})",
            "pass a writable --storage-path",
        ) from None


def check_local_resources(spec: Any) -> None:
    """Refuse a per-trial request a local Ray on this machine could never schedule."""
    cpus = os.cpu_count() or 1
    if spec.resources.cpu > cpus:
        raise SweepError(
            f"resources.cpu: {spec.resources.cpu:g} CPUs per trial but this machine has {cpus}",
            f"lower resources.cpu to <= {cpus}, or join a cluster with --address",
        )
    if spec.resources.gpu > 0:
        gpus = _local_gpu_count()
        if spec.resources.gpu > gpus:
            raise SweepError(
                f"resources.gpu: {spec.resources.gpu:g} GPU per trial but this machine has {gpus}",
                "set resources.gpu: 0 for a CPU run, or join a GPU cluster with --address",
            )


def _local_gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # no CUDA runtime at all: no GPU
        return 0


def check_cluster_resources(spec: Any, *, cluster: bool = False) -> None:
    """After ray.init: refuse a per-trial request larger than the whole local Ray.

    On a joined cluster (``cluster=True``, i.e. ``--address``) a GPU request the cluster does
    not have *yet* only warns: an autoscaling cluster adds GPU nodes when trials ask for them.
    """
    import ray

    total = ray.cluster_resources()
    for key, want in (("CPU", spec.resources.cpu), ("GPU", spec.resources.gpu)):
        have = float(total.get(key, 0.0))
        if want > have:
            if cluster and key == "GPU":
                print(
                    f"warning: resources.gpu: {want:g} GPU per trial but the Ray cluster has "
                    f"{have:g} now; trials wait until the autoscaler adds GPU nodes",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            raise SweepError(
                f"resources.{key.lower()}: {want:g} {key}s per trial but the Ray cluster has "
                f"{have:g} in total",
                f"lower resources.{key.lower()} or add {key} nodes to the cluster",
            )


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT or ray://HOST:PORT address must accept a TCP connection (``auto`` is left to
    ray.init, which fails fast when no cluster runs here)."""
    import socket

    if address == "auto":
        return
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, sep, port_text = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port_text = rest, "10001" if address.startswith("ray://") else "6379"
    fix = "check --address (auto, HOST:PORT or ray://HOST:10001) and that the cluster runs"
    if not host or not port_text.isdigit():
        raise SweepError(f"--address {address!r} is not HOST:PORT", fix)
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise SweepError(f"cannot reach the Ray cluster at {address}: {exc}", fix) from None


def sweep_folder_exists(storage: str, name: str) -> bool:
    """Whether the sweep's local results folder exists (made just before Ray starts)."""
    from sweep.tuner import experiment_path, is_uri

    return not is_uri(storage) and Path(experiment_path(storage, name)).is_dir()


def sweep_started(storage: str, name: str, tracking_uri: str, experiment_name: str) -> bool:
    """Whether a run of sweep ``name`` began here but stopped before Tune saved its state: its
    results folder exists, or the tracking store holds its parent run."""
    if sweep_folder_exists(storage, name):
        return True
    from sweep.store import find_parent_run

    return find_parent_run(tracking_uri, experiment_name, name) is not None


def load_data(spec: Any, data_dir: Path) -> Any:
    from trainables.cifar_files import DataError
    from trainables.data import load_options

    print(f"loading CIFAR-10 from {data_dir} ...", flush=True)
    start = time.perf_counter()
    try:
        splits = load_options(spec.data.model_copy(update={"dir": str(data_dir)}))
    except DataError as exc:
        # "train_subset=500 is not possible: the training split has 80 images, ..." is the
        # API's wording; a spec user sets data.train_subset.
        match = re.match(
            r"(train|val|test)_subset=(\S+) is not possible: the (.+?) has (\d+)", str(exc)
        )
        if match is None:
            raise
        key, value, where, have = match.groups()
        raise SweepError(
            f"data.{key}_subset: {value} is more than the {have} images of the {where} in "
            f"{data_dir}",
            f"lower data.{key}_subset to <= {have} (or null for all) in the spec",
        ) from None
    print(
        f"loaded {len(splits.train_y)} train / {len(splits.val_y)} val / {len(splits.test_y)} "
        f"test images in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    return splits


def check_data_sizes(spec: Any, splits: Any, fix: str) -> None:
    n_train = len(splits.train_y)
    sizes = [("batch_size", spec.batch_size)]
    for dim in spec.search_space.dims:
        if dim.key == "batch_size" and dim.kind in ("grid", "choice"):
            sizes += [(f"search_space.batch_size.{dim.kind}", v) for v in dim.values]
    for where, size in sizes:
        if isinstance(size, int) and size > n_train:
            raise SweepError(f"{where}: {size} is larger than the {n_train} training images", fix)
    if len(splits.val_y) == 0:
        raise SweepError("the validation split is empty", "raise data.val_fraction or val_subset")
