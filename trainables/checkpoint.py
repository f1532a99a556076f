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
import zipfile
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back; the message names the file."""


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
