"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (stdlib only).

Chromium reads commands from its fd 3 and writes replies and events to its fd 4, each a JSON
message ended by a NUL byte. No websocket, no port, no playwright: the browser is started,
driven and killed by the test, and its profile lives in a fresh folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "find_chromium"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def _high(fd: int) -> int:
    """``fd`` moved to a number >= 10, so it cannot collide with the 3 and 4 Chromium reads."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium process with one page attached (a flat CDP session).

    Events of the page are collected in :attr:`events` as ``(method, params)``.
    """

    def __init__(self, binary: str, profile: Path, width: int, height: int, timeout: float = 60.0):
        self.timeout = timeout
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        to_chrome_r, self._to_chrome = (_high(fd) for fd in os.pipe())
        self._from_chrome, from_chrome_w = (_high(fd) for fd in os.pipe())
        args = [*FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        self.log = profile / "chromium.log"
        # posix_spawn's dup2 puts the pipe ends on fds 3 and 4, where Chromium expects them;
        # every other descriptor of ours is close-on-exec.
        self.pid = os.posix_spawn(binary, [binary, *args], dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_DUP2, to_chrome_r, 3),
            (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ])  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))
        os.close(self._from_chrome)
        self._inbox.put(None)

    def _pump(self, deadline: float) -> None:
        try:
            msg = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return
        if msg is None:
            raise RuntimeError(f"Chromium closed the pipe; its log: {self.log.read_text(errors='replace')[-2000:]}")
        if "id" in msg:
            self._replies[msg["id"]] = msg
        elif msg.get("sessionId") == getattr(self, "session", None):
            self.events.append((msg["method"], msg.get("params", {})))

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; RuntimeError on a protocol error or timeout."""
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while self._next not in self._replies:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not answer {method} within {self.timeout} s")
            self._pump(deadline)
        reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str) -> dict[str, Any]:
        """Wait for the page's next event ``method`` (e.g. ``Page.loadEventFired``)."""
        start = len(self.events)
        deadline = time.monotonic() + self.timeout
        while True:
            for name, params in self.events[start:]:
                if name == method:
                    return params
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {method} within {self.timeout} s")
            self._pump(deadline)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        out = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    def close(self) -> None:
        """Ask Chromium to quit, then kill it (this process only) if it has not within 5 s."""
        try:
            os.write(self._to_chrome, json.dumps({"id": 10**6, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._to_chrome)
