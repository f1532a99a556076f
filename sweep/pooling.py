"""Whether the trial runs of several sweeps may be compared as one: more seeds of one setup.

A sweep's arms share seeds, data split and data order; adding seeds later means another sweep
of the same spec with other seeds (``--resume`` continues a sweep, it does not grow one).
``python -m sweep compare A B`` pools them, and :func:`pooling_problem` decides whether that is
sound: the sweeps ran the same setup (every trial param but the seed, the policy's and a few
that say where, not what), each policy arm with the same params in every sweep, and no arm ran
a seed twice (a rerun of a seed is not another sample). Pure: it reads flat trial params, as
the tracker logs them, and imports nothing from MLflow or Ray.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Trial params that say where or how often, not what was trained: they may differ.
WHERE_NOT_WHAT = frozenset({"data.dir", "device", "checkpoint_every", "lr_trace_points"})
#: Params that name the arm; the arm's own params are ``policy_params.*``.
ARM_KEYS = frozenset({"policy", "policy_label"})
POLICY_PREFIX = "policy_params."
FIX = "pool only sweeps of one spec that differ in their seeds (or compare them one at a time)"


@dataclass(frozen=True)
class PooledRun:
    """One finished trial run: its sweep, its comparison group (the policy label, plus the
    search-space values that set it apart), its seed and its flat params."""

    sweep: str
    group: str
    seed: str | None
    params: Mapping[str, str]


def pooling_problem(runs: Sequence[PooledRun]) -> str | None:
    """None when the runs may be compared as one population of seeds; else one line naming
    what differs, where, and the fix."""
    sweeps = list(dict.fromkeys(r.sweep for r in runs))
    if len(sweeps) < 2:
        return None
    return _setup_problem(runs, sweeps) or _arm_problem(runs) or _seed_problem(runs)


def _values(runs: Sequence[PooledRun], key: str) -> set[str]:
    return {str(r.params.get(key)) for r in runs}


def _shown(values: set[str]) -> str:
    return "/".join(sorted(values))


def _setup_problem(runs: Sequence[PooledRun], sweeps: list[str]) -> str | None:
    """Every setup key takes the same values in every sweep (a search space may vary a key
    inside each sweep, over the same values)."""
    by_sweep = {s: [r for r in runs if r.sweep == s] for s in sweeps}
    keys = sorted({k for r in runs for k in r.params} - WHERE_NOT_WHAT - ARM_KEYS - {"seed"})
    for key in keys:
        if key.startswith(POLICY_PREFIX):
            continue
        first = _values(by_sweep[sweeps[0]], key)
        for other in sweeps[1:]:
            values = _values(by_sweep[other], key)
            if values != first:
                return (
                    f"the sweeps differ in '{key}': '{sweeps[0]}' ran {_shown(first)}, "
                    f"'{other}' ran {_shown(values)}; {FIX}"
                )
    return None


def _arm_problem(runs: Sequence[PooledRun]) -> str | None:
    """Each comparison group ran with one set of policy params in every sweep."""
    for group in dict.fromkeys(r.group for r in runs):
        members = [r for r in runs if r.group == group]
        keys = sorted({k for r in members for k in r.params if k.startswith(POLICY_PREFIX)})
        for key in ["policy", *keys]:
            seen: dict[str, str] = {}  # value -> the first sweep that ran it
            for r in members:
                seen.setdefault(str(r.params.get(key)), r.sweep)
            if len(seen) > 1:
                (v1, s1), (v2, s2) = list(seen.items())[:2]
                return (
                    f"arm '{group}' ran with {key}={v1} in '{s1}' but {key}={v2} in '{s2}'; "
                    f"{FIX}, or give the arms different labels"
                )
    return None


def _seed_problem(runs: Sequence[PooledRun]) -> str | None:
    """No arm ran one seed in two sweeps."""
    first: dict[tuple[str, str | None], str] = {}
    for r in sorted(runs, key=lambda r: (r.group, str(r.seed))):  # stable: sweeps keep order
        where = first.setdefault((r.group, r.seed), r.sweep)
        if where != r.sweep:
            return (
                f"arm '{r.group}' ran seed {r.seed} in both '{where}' and '{r.sweep}'; "
                "a rerun of a seed is not another sample: pool sweeps over different seeds"
            )
    return None
