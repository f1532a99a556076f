"""What a trial's config, results and errors become in MLflow: flat params without secrets,
run names, numbers read from results and tags, one-line error and warning summaries."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.store import TAG_POLICY, TAG_POLICY_LABEL, TAG_SEED

#: MLflow's limit on a param value (mlflow.utils.validation).
MAX_PARAM_LEN = 6000

#: Config keys that are never logged as params (secrets, environments).
_SECRET_KEY = re.compile(
    r"(token|secret|passw|api[_-]?key|credential|auth|private[_-]?key|(^|[._])env($|[._])|environ)",
    re.IGNORECASE,
)


def now_ms() -> int:
    return int(time.time() * 1000)


def number(value: Any) -> float | None:
    """A metric value, or None for what is not a number (strings, None, lists)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return None


def integer(value: Any) -> int | None:
    """An int from a number or a numeric string (tags are strings), else None."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    num = number(value)
    if num is None or not math.isfinite(num):
        return None
    return int(num)


def _plain(value: Any) -> str | None:
    """The param/tag string of a plain value, or None for objects that are not plain data."""
    if value is None or isinstance(value, str | bool | int | float):
        return str(value)
    if isinstance(value, list | tuple):
        if all(v is None or isinstance(v, str | bool | int | float) for v in value):
            return json.dumps(list(value))
        return None
    return None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flat string params of a trial config: nested dicts joined with dots.

    Keys that look like secrets or environments (token, secret, password, api_key, env, ...)
    and values that are not plain data (object refs, callables) are left out.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            out.update(flatten_config(value, prefix=f"{name}."))
            continue
        text = _plain(value)
        if text is not None:
            out[name] = text[:MAX_PARAM_LEN]
    return out


def one_line_text(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def trial_error_text(trial: Any) -> str:
    """The latest error of a trial: ``error_msg`` if set, else the tail of its error file."""
    msg = getattr(trial, "error_msg", None)
    if isinstance(msg, str) and msg.strip():
        return msg.strip()
    path = None
    with contextlib.suppress(Exception):
        path = trial.error_file
    if path and os.path.isfile(path):
        with contextlib.suppress(OSError):
            text = Path(path).read_text(errors="replace")
            blocks = re.split(r"(?m)^Failure # \d+.*$", text)
            last = blocks[-1].strip() if blocks else text.strip()
            if last:
                return last
    with contextlib.suppress(Exception):
        err = trial.get_error()
        if err:
            return str(err).strip()
    return "unknown error (see the trial's error.txt in the Tune results folder)"


def running_best(best: float | None, value: float | None) -> float | None:
    """The higher of ``best`` and ``value``; a missing or non-finite value changes nothing."""
    if value is None or not math.isfinite(value):
        return best
    return value if best is None else max(best, value)


def child_run_name(
    tags: Mapping[str, str], config: Mapping[str, Any], name_keys: Sequence[str], trial_id: str
) -> str:
    """A trial's run name as the MLflow runs table shows it: ``constant · seed 0``, followed
    by the values of ``name_keys`` (the search-space keys, ``lr 0.003``) when there are any."""
    parts = [tags.get(TAG_POLICY_LABEL) or tags.get(TAG_POLICY) or f"trial {trial_id}"]
    if tags.get(TAG_SEED) is not None:
        parts.append(f"seed {tags[TAG_SEED]}")
    for key in name_keys:
        value = config.get(key)
        if value is not None:
            text = f"{value:.3g}" if isinstance(value, float) else str(value)
            parts.append(f"{key} {text}")
    return " · ".join(parts)


def error_summary(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return one_line_text(lines[-1] if lines else text)


def not_learning_line(event: dict[str, Any]) -> str:
    """``epoch 4: val_loss 2.3 is no better than chance (2.3): the run is not learning; ...``:
    the policy's own words after its plateau clause."""
    reason = str(event.get("reason") or "the monitored metric is no better than chance")
    return f"epoch {event.get('epoch')}: {reason.split('; ', 1)[-1]}"
