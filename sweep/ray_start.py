"""Starting Ray for a sweep: a local Ray bound to loopback with a private auth token, or a
joined cluster that receives this checkout's code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from sweep.errors import SweepError


def bind_ray_to_loopback() -> None:
    """Make a local Ray listen on 127.0.0.1 only (GCS, raylet, workers), not on every interface.

    Ray binds its servers to the node IP; with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's
    own single-machine mode, the default on macOS/Windows) the node IP is the loopback address.
    Set before Ray is imported -- its child processes read it too; the already-imported
    constant is updated in case something imported Ray earlier in this process.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


#: Where Ray keeps the token of a local cluster with token authentication.
RAY_TOKEN_FILE = Path("~/.ray/auth_token")


def private_auth_token(
    path: Path = RAY_TOKEN_FILE, environ: MutableMapping[str, str] = os.environ
) -> None:
    """Token authentication for the local Ray, with a token file only its owner can read.

    Ray 2.60 turns token authentication on for a new local cluster and writes the token with
    the default umask (0644 as a rule). The file is made here first, mode 0600, or an existing
    one is narrowed to 0600; ``RAY_AUTH_MODE=token`` then says so explicitly (which also
    spares the warning Ray prints when it decides by itself). A mode the user set is kept.
    """
    if environ.get("RAY_AUTH_MODE"):
        return
    token = path.expanduser()
    token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if token.stat().st_mode & 0o077:
            token.chmod(0o600)
    else:
        import secrets

        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    environ["RAY_AUTH_MODE"] = "token"
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None and environ is os.environ:  # Ray read its config at import: again
        raylet.Config.initialize("")


def init_ray(address: str | None) -> None:
    import ray

    if address:
        import sweep
        import trainables

        # Ship this checkout's code to the cluster, so trials run exactly the driver's version.
        modules = [str(Path(sweep.__file__).parent), str(Path(trainables.__file__).parent)]
        print(f"joining the Ray cluster at {address}", flush=True)
        try:
            ray.init(
                address=address,
                runtime_env={"py_modules": modules},
                logging_level=logging.WARNING,
            )
        except ConnectionError as exc:
            raise SweepError(
                f"cannot connect to the Ray cluster at {address}: {' '.join(str(exc).split())}",
                "check --address, that the cluster runs (ray status), and its auth token "
                "(RAY_AUTH_MODE=token with ~/.ray/auth_token) if it uses one",
            ) from None
        return
    private_auth_token()
    # address="local": always a fresh Ray on this machine, never a cluster found via
    # RAY_ADDRESS or a running `ray start` (that is what --address is for).
    ray.init(
        address="local",
        include_dashboard=False,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
    )
