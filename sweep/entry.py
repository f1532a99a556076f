"""The command's own process (``python -m sweep``, ``plateau-sweep``): :func:`sweep.cli.main`,
then an exit without the interpreter's teardown.

Once torch, torchvision, Ray and MLflow are imported, CPython spends about 2.4 s after the last
line is printed freeing every module and object one by one (measured on a 2-core Xeon:
``benchmarks/cli_exit.py``), memory the operating system takes back at once anyway. So the
process ends with ``os._exit`` instead, but only after everything an exit owes has run: the
interpreter has waited for every non-daemon thread, and every ``atexit`` handler (logging,
MLflow, Ray, temporary folders) has run, because ours was registered before any of theirs and
atexit runs handlers last-registered first. An uncaught exception or a ``SystemExit`` from
argparse exits the ordinary way.

:func:`sweep.cli.main` itself stays free of this: tests call it in-process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn

_exit_code: int | None = None  # set once main() returned: only then may the teardown be skipped


def _skip_teardown() -> None:
    """The last exit handler: flush what was printed and end the process with main's code."""
    if _exit_code is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`) or stream
            stream.flush()
    os._exit(_exit_code)


def console() -> NoReturn:
    """Run the command line and exit with its code (see the module's docstring)."""
    global _exit_code
    atexit.register(_skip_teardown)  # first registered: runs after every other handler
    from sweep.cli import main

    _exit_code = main()
    raise SystemExit(_exit_code)
