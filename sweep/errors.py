"""User errors of the sweep driver, and how the CLI turns any of them into one line.

Every mistake a user can fix (a bad spec, a missing data folder, an unusable tracking store,
a sweep to resume that does not exist, ...) surfaces as ``error: <problem>; <fix>`` on stderr
with exit code 2 -- never a traceback. The error classes of the other modules (``SpecError``,
``DataError``, ``TrackingError``, ``CompareError``, ``ConfigError``) are all ``ValueError``
subclasses with one-line messages; :func:`user_error_types` collects them lazily so that this
module imports nothing heavy.
"""

from __future__ import annotations

#: Exit code of every user error (the argparse convention).
EXIT_USAGE = 2
#: How the user runs the driver: the commands that fixes and hints name.
PROG = "python -m sweep"


class SweepError(ValueError):
    """A user error found by the driver; ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


# (module, class name, default fix when the message carries none)
_KNOWN: tuple[tuple[str, str, str], ...] = (
    ("sweep.spec", "SpecError", "fix the sweep spec and rerun"),
    ("trainables.config", "ConfigError", "fix the sweep spec and rerun"),
    ("trainables.cifar_files", "DataError", "pass --data-dir with the CIFAR-10 python batches"),
    ("sweep.store", "TrackingError", "pass a usable --tracking-uri"),
    ("sweep.readback", "CompareError", "check the sweep name and --tracking-uri"),
)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "the user can fix this" (modules missing are skipped).

    Only modules already imported are consulted: an error class whose module was never imported
    cannot have been raised, and importing it here would cost time on every error path.
    """
    import sys

    found: list[type[BaseException]] = [SweepError]
    for module_name, class_name, _ in _KNOWN:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        cls = getattr(module, class_name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def default_fix(exc: BaseException) -> str:
    for module_name, class_name, fix in _KNOWN:
        for cls in type(exc).__mro__:
            if cls.__name__ == class_name and cls.__module__ == module_name:
                return fix
    return "see python -m sweep --help"


def one_line(exc: BaseException, *, fix: str | None = None) -> str:
    """``error: <problem>; <fix>`` on a single line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if text.startswith("error: "):
        text = text[len("error: ") :]
    if "; " not in text:
        # Some modules write "<problem>: pass --data-dir ..."; make that the "; <fix>" part.
        cut = max(text.rfind(f": {verb} ") for verb in _FIX_VERBS)
        if cut > 0 and fix is None:
            text = f"{text[:cut]}; {text[cut + 2 :]}"
        else:
            text = f"{text}; {fix or default_fix(exc)}"
    return f"error: {text}"


_FIX_VERBS = ("pass", "set", "use", "run", "give", "choose", "fix", "check")
