"""Every well-set oracle state together: each rule against each state's mean oracle.

The four well-set setups of ``benchmarks/oracle.py`` -- ``full`` (24 states, four data
streams), ``full-test``, ``full-test2`` and ``full-test3`` (12 states each, two streams) --
are one population on different seeds. Scored one by one, 12 states give median errors whose
95% intervals span 0.3-0.4 decade; this pools their cached curves (nothing is trained) and
scores every rule over all of them, each state against the mean oracle of its own streams,
with the oracle noise of the four-stream run. A description of what the rules did, not a
choice: each default was fixed before the states that decided it were trained.

It also reads every oracle population (``POPULATIONS``) for what a "no suggestion" costs: on
the curves the default declines, its fallback's distance from the oracle against the answers
of the rules that answer every curve (fastai's, torch-lr-finder's).

    .venv/bin/python benchmarks/oracle.py --analyse-only   # first, for the oracle noise
    .venv/bin/python benchmarks/oracle_pooled.py           # ~30 s
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import _common as C
from _oracle_analysis import (
    DEFAULT_RULE,
    HORIZONS,
    against_pooled,
    declined,
    loss_noise_of,
    rule_names,
    score,
    state_rows,
    stream_count,
)
from _oracle_report import num, score_lines
from _oracle_setups import (
    FULL,
    FULL_8K,
    FULL_PLATEAU,
    FULL_PLATEAU_TEST,
    FULL_RESNET8_TEST,
    FULL_TEST,
    FULL_TEST2,
    FULL_TEST3,
    FULL_WD,
    MISSET,
    MISSET_TEST,
    MISSET_TEST2,
    MISSET_VAL,
    Setup,
)
from oracle import load_curves

WELL_SET = (FULL, FULL_TEST, FULL_TEST2, FULL_TEST3)
#: Every oracle population, each read with the default 20-step held-out probe.
POPULATIONS: dict[str, tuple[Setup, ...]] = {
    "well-set (seed_cnn, 4k)": WELL_SET,
    "8k images": (FULL_8K,),
    "weight decay": (FULL_WD,),
    "ResNet-8": (FULL_RESNET8_TEST,),
    "first plateau": (FULL_PLATEAU,),
    "first plateau, fresh": (FULL_PLATEAU_TEST,),
    "LR set badly": (MISSET, MISSET_VAL, MISSET_TEST, MISSET_TEST2),
}
#: The rules that answer curves ours declines, compared there with ours' fallback.
ANSWER_EVERY_CURVE = ("fastai_steep", "fastai_minimum", "fastai_valley", "torch_lr_finder")


def setup_rows(results_dir: Path, setup: Setup) -> tuple[dict[str, list[dict]], dict, int]:
    """One setup's rows per rule (default probe), errors against each state's mean oracle; its
    cached curves (read once); and how many of its states have a default curve."""
    doc = load_curves(results_dir / f"{setup.name}_curves", setup)
    by_rule = state_rows(doc, "held_out_default")
    streams = stream_count(doc)
    pooled = {name: against_pooled(rows, doc, streams) for name, rows in by_rule.items()}
    return pooled, doc, len(next(iter(by_rule.values()), []))


def pooled_rows(
    results_dir: Path, setups: Sequence[Setup] = WELL_SET
) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Every rule's rows over ``setups`` (default probe), errors against each state's mean
    oracle, and each setup's number of states."""
    rows: dict[str, list[dict]] = {name: [] for name in rule_names()}
    states: dict[str, int] = {}
    for setup in setups:
        by_rule, _, states[setup.name] = setup_rows(results_dir, setup)
        for name, setup_rows_of_rule in by_rule.items():
            rows[name] += setup_rows_of_rule
    return rows, states


def committed_loss_noise(results_dir: Path) -> dict[str, float] | None:
    """The oracle's loss noise per horizon from the committed ``oracle.json`` (None, with a
    line saying how to make it, when it is missing)."""
    source = results_dir / "oracle.json"
    if not source.is_file():
        print(f"{source} is missing: run benchmarks/oracle.py --analyse-only first", flush=True)
        return None
    return loss_noise_of(json.loads(source.read_text())["main"]["oracle_noise"])


def declined_by_population(results_dir: Path) -> dict[str, dict]:
    """Per population with cached curves: on the curves the default declines, its fallback
    against the answers of the rules that answer every curve (``_oracle_analysis.declined``)."""
    out = {}
    for label, setups in POPULATIONS.items():
        rows, _ = pooled_rows(results_dir, setups)
        if rows[DEFAULT_RULE]:
            out[label] = declined(rows, ANSWER_EVERY_CURVE)
    return out


def declined_lines(declines: dict[str, dict]) -> list[str]:
    """A line per population and rule: where ours declines, ours' fallback against their pick."""
    lines = ["\nwhere the default declines: its fallback's median |error| against each rule's"]
    for label, d in declines.items():
        lines.append(
            f"  {label}: declined {d['declined']} of {d['states']}"
            f" ({d['declined_real_descents']} with a real descent)"
        )
        for name in ANSWER_EVERY_CURVE if d["declined"] else ():
            cells = []
            for h in HORIZONS:
                c = d[name][h]
                cells.append(
                    f"{h} {num(c['ours_median_abs'])} vs {num(c['theirs_median_abs'])}"
                    f" (closer in {c['ours_closer_in']} of {c['states']})"
                )
            answered = f"answers {d[name]['answered']} of {d['declined']}"
            lines.append(f"    vs {name:<16} {answered}: " + "; ".join(cells))
    return lines


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    noise = committed_loss_noise(C.RESULTS_DIR)
    if noise is None:
        return 1
    rows, states = pooled_rows(C.RESULTS_DIR)
    if not any(rows.values()):
        print("no cached well-set curves in benchmarks/results", flush=True)
        return 1
    scores = {name: score(r, noise) for name, r in rows.items() if r}
    n = len(next(iter(rows.values())))
    print(f"{n} well-set states ({states}), each against its mean oracle")
    print("\n".join(score_lines(scores)), flush=True)
    declines = declined_by_population(C.RESULTS_DIR)
    print("\n".join(declined_lines(declines)), flush=True)
    C.write_result(
        "oracle_pooled",
        {
            "seconds": time.perf_counter() - t0,
            "states": states,
            "noise": noise,
            "rules": scores,
            "declined": declines,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
