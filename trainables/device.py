"""Device, dtype and memory format are chosen here, and only here.

The same training code runs on a CPU in CI and on a CUDA GPU in a cluster; everything that
differs between the two (autocast dtype, channels_last, cudnn.benchmark, thread count) is
decided once by :func:`select_device` and carried around in a :class:`DeviceSetup`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)
_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain fp32
    channels_last: bool
    num_threads: int

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({self.num_threads} threads)"

    def autocast(self) -> AbstractContextManager[None]:
        """Forward-pass context: bf16 autocast on CUDA, nothing on CPU."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def autocast_factory(self) -> Callable[[], AbstractContextManager[None]]:
        return self.autocast


def select_device(
    requested: str = "auto",
    *,
    gpus_assigned: float | None = None,
    cpus_assigned: float | None = None,
    channels_last_cpu: bool = True,
) -> DeviceSetup:
    """Pick the device for one trial.

    ``requested`` is "auto", "cpu" or "cuda". Under "auto", a trial uses CUDA when Ray gave it a
    GPU (``gpus_assigned > 0``) or, outside Ray (``gpus_assigned is None``), when CUDA exists.
    A GPU assigned by Ray on a machine without CUDA warns once and falls back to CPU.

    On CUDA: bf16 autocast (fp32 when the GPU has no bf16), channels_last, cudnn.benchmark.
    On CPU: fp32, channels_last (``channels_last_cpu``), and torch's intra-op threads set to the
    CPUs the trial was given. channels_last on CPU is on by default because oneDNN runs seed_cnn
    ~1.4x faster in it (training step) and its eval-mode forward ~2x faster:
    ``benchmarks/throughput.py`` measures it against contiguous.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    cuda_ok = torch.cuda.is_available()
    want_cuda = requested == "cuda" or (
        requested == "auto" and (gpus_assigned > 0 if gpus_assigned is not None else cuda_ok)
    )
    if want_cuda and not cuda_ok:
        warn_once(
            "a GPU was assigned to this trial but CUDA is not available here; running on CPU "
            "(check the node's CUDA driver and the torch build)"
        )
        want_cuda = False
    threads = max(1, int(cpus_assigned)) if cpus_assigned else max(1, os.cpu_count() or 1)
    if want_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        index = torch.cuda.current_device()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return DeviceSetup(torch.device("cuda", index), dtype, True, threads)
    torch.set_num_threads(threads)
    return DeviceSetup(torch.device("cpu"), None, channels_last_cpu, threads)
