"""Run one trial outside Ray, for debugging: ``python -m trainables [KEY=VALUE ...]``.

Same training function as inside a sweep, with a reporter that prints one line per epoch and
(with ``--checkpoint-dir``) keeps checkpoints in a local folder, resuming from the newest one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainables.config import ConfigError, TrialConfig
from trainables.validation import error_line
from trainables.yaml_values import load_yaml


class LocalReporter:
    def __init__(self, checkpoint_dir: Path | None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self.history: list[dict[str, Any]] = []

    def restore(self) -> dict[str, Any] | None:
        from trainables.checkpoint import load_state

        if self.checkpoint_dir is None:
            return None
        found = sorted(self.checkpoint_dir.glob("epoch_*"))
        return load_state(found[-1]) if found else None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        from trainables.checkpoint import save_state

        self.history.append(metrics)
        shown = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in shown.items()}))
        events = json.loads(metrics.get("policy_events", "[]"))
        for event in events:
            print(f"  event: {event['reason']}")
        if state is not None and self.checkpoint_dir is not None:
            folder = self.checkpoint_dir / f"epoch_{metrics['epoch']:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            save_state(state, folder)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (YAML values); a dotted key sets a nested one (data.train_subset)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, got {pair!r} (e.g. policy=cyclical epochs=3)")
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = load_yaml(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainables",
        description="Train one trial outside Ray (debugging). KEY=VALUE sets any TrialConfig "
        "field, e.g. policy=range_test_on_plateau 'policy_params={patience: 0}' epochs=3 "
        "data.train_subset=500 data.dir=../shared/data/cifar-10-batches-py.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--config", type=Path, help="YAML file with TrialConfig fields")
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="keep checkpoints here; resume from the newest"
    )
    args = parser.parse_args(argv)
    try:
        raw: dict[str, Any] = {}
        if args.config:
            raw.update(load_yaml(args.config.read_text()) or {})
        raw.update(parse_overrides(args.overrides))
        cfg = TrialConfig.model_validate(raw)
        from trainables.cifar_files import DataError
        from trainables.data import load_options
        from trainables.device import select_device
        from trainables.loop import train

        splits = load_options(cfg.data, download=True)
    except ValidationError as exc:
        print(f"error: {error_line(exc, TrialConfig)}", file=sys.stderr)
        return 2
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train(cfg, splits, LocalReporter(args.checkpoint_dir), select_device(cfg.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
