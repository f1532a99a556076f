"""Trial checkpoints: one ``state.pt`` per checkpoint folder, loaded with ``weights_only=True``.

A checkpoint holds everything needed to continue a trial exactly: model, optimiser, LR-policy
state, RNG streams, the epoch reached (which fixes the position in the data order, since each
epoch's shuffle and augmentation are drawn from generators keyed by seed and epoch) and the
counters reported so far. Only tensors and plain python values go in, so the safe unpickler of
``torch.load(weights_only=True)`` reads it and a hostile file cannot run code.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

STATE_FILE = "state.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back; the message names the file."""


def rng_state() -> dict[str, Any]:
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [
            str(np_state[0]),
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``state`` atomically into ``directory/state.pt``."""
    path = Path(directory) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"format": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_state(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint folder back; any damage is a :class:`CheckpointError` naming the file."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing its {STATE_FILE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a plateau-sweep checkpoint (format)")
    return state


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    return value
