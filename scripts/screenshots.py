"""Make the README's two screenshots from a real sweep.

    python scripts/screenshots.py [--data-dir DIR] [--out docs/img]

1. Runs ``python -m sweep run --spec scripts/screenshots.yaml`` in a new temporary folder (four
   policies, one seed, 5 epochs on 3,000 images: about 2 minutes on a 2-core CPU; CIFAR-10 from
   --data-dir, else where ``sweep run`` looks for it). Its terminal output is what the README
   quotes.
2. Starts ``python -m sweep ui`` there and opens the link it prints in headless Chromium
   (Debian's ``chromium``), driven over the DevTools protocol: it waits until the runs table
   lists every trial run, closes MLflow's assistant side panel (MLflow opens it by itself on a
   browser's first visit to a local server) and saves ``mlflow_runs.png``.
3. Copies the range-test plot of the range-test trial from its MLflow artifacts
   (``events/epoch_NNN_range_test.png``) to ``range_test.png``.

Both PNGs are reduced to under 150 KB. The temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SPEC = REPO / "scripts" / "screenshots.yaml"
SWEEP = "screenshots"  # the name in SPEC
WINDOW = (1280, 560)  # the runs view of four trials fits; the README shows it at this size
MAX_BYTES = 150_000
#: Headless Chromium on a machine with no outside network: without the background-networking
#: flags it keeps opening connections the network refuses (tests/test_ui.py uses them too).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_S = 240.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="CIFAR-10 folder for the sweep")
    parser.add_argument("--out", default=str(REPO / "docs" / "img"), help="where the PNGs go")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(
            f"error: no {CHROMIUM}; install it with: apt-get install -y chromium", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="plateau_sweep_shots_"))
    try:
        run_sweep(work, args.data_dir)
        shot = runs_view_screenshot(work)
        write_png(out / "mlflow_runs.png", shot)
        write_png(out / "range_test.png", range_test_plot(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweep", *args]


def sweep_env() -> dict[str, str]:
    """This checkout's ``sweep`` package, whatever the working folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_sweep(work: Path, data_dir: str | None) -> None:
    command = sweep_command("run", "--spec", str(SPEC))
    if data_dir:
        command += ["--data-dir", str(Path(data_dir).resolve())]
    print(f"$ {' '.join(command[1:])}  (in {work})", flush=True)
    subprocess.run(command, cwd=work, env=sweep_env(), check=True)


def runs_view_screenshot(work: Path) -> bytes:
    """Start ``sweep ui`` in ``work``, screenshot its link, stop it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(
        sweep_command("ui", SWEEP, "--port", str(port)),
        cwd=work,
        env=sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in ui.stdout or ()], daemon=True).start()
    try:
        link = wait_for_link(ui, lines)
        print(f"opening {link}", flush=True)
        trials = trial_count(work)
        with Browser(work / "chromium-profile", WINDOW) as browser:
            browser.navigate(link)
            browser.wait_for(
                "new Set([...document.querySelectorAll('[role=row][row-id]')]"
                ".map(row => row.getAttribute('row-id'))).size",
                lambda rows: rows == trials,
                what=f"{trials} trial rows",
            )
            browser.evaluate(
                "document.querySelector("
                "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
            )
            time.sleep(2)  # the table re-lays out to the freed width
            return browser.screenshot()
    finally:
        if ui.poll() is None:
            ui.send_signal(signal.SIGINT)  # Ctrl-C: sweep ui stops its server
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)
                ui.wait()


def wait_for_link(ui: subprocess.Popen[str], lines: queue.Queue[str]) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if ui.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("  http://"):
            return line.strip()
    raise RuntimeError("sweep ui printed no link:\n" + "".join(seen))


def _client(work: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{work}/mlflow.db")


def _trials(work: Path) -> list[Any]:
    client = _client(work)
    experiment = client.get_experiment_by_name(SWEEP)
    return list(
        client.search_runs([experiment.experiment_id], "tags.`plateau_sweep.role` = 'child'")
    )


def trial_count(work: Path) -> int:
    return len(_trials(work))


def range_test_plot(work: Path) -> bytes:
    """The first range-test plot of the sweep's range-test trial."""
    client = _client(work)
    for run in _trials(work):
        plots = sorted(
            f.path
            for f in client.list_artifacts(run.info.run_id, "events")
            if f.path.endswith("_range_test.png")
        )
        if plots:
            local = client.download_artifacts(run.info.run_id, plots[0], str(work / "plots"))
            return Path(local).read_bytes()
    raise RuntimeError("no range-test plot in the sweep's artifacts (did a range test run?)")


def write_png(path: Path, png: bytes) -> None:
    """``png`` as is when small enough, else with a 256-colour palette."""
    if len(png) > MAX_BYTES:
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        png = buffer.getvalue()
    path.write_bytes(png)
    print(f"wrote {path} ({len(png) / 1000:.0f} KB)", flush=True)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    it reads commands on fd 3, answers on fd 4; each message is JSON ending in a NUL byte)."""

    def __init__(self, profile: Path, window: tuple[int, int]) -> None:
        self._profile, self._window = profile, window
        self._id = 0
        self._buffer = b""

    def __enter__(self) -> Browser:
        to_chromium, self._commands = os.pipe()
        self._answers, from_chromium = os.pipe()

        def onto_fds_3_and_4() -> None:  # in the child, before exec
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chromium, from_chromium)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self._proc = subprocess.Popen(
            [
                str(CHROMIUM),
                *HEADLESS_FLAGS,
                "--hide-scrollbars",
                f"--user-data-dir={self._profile}",
                f"--window-size={self._window[0]},{self._window[1]}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,  # fds 3 and 4 must reach Chromium
            preexec_fn=onto_fds_3_and_4,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page, flatten=True)["sessionId"]
        width, height = self._window
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
            session=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.call("Browser.close")
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._commands)
        os.close(self._answers)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:  # events and other answers are skipped
            answer = self._read()
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url, session=True)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, session=True
        )
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, done: Any, *, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if done(value):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the page never showed {what} (last: {value!r})")

    def screenshot(self) -> bytes:
        data = self.call("Page.captureScreenshot", format="png", session=True)["data"]
        return base64.b64decode(data)


if __name__ == "__main__":
    raise SystemExit(main())
