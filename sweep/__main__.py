"""``python -m sweep``: see :mod:`sweep.cli` (and :mod:`sweep.entry` for how the process ends)."""

from sweep.entry import console

console()
