"""A headless Chromium driven over the DevTools protocol, for testing pages as a person sees
them. Standard library only: Chromium's ``--remote-debugging-pipe`` speaks JSON messages ended
by a NUL byte on file descriptors 3 (commands in) and 4 (replies and events out), so no
WebDriver, websocket client or download is needed, and nothing leaves the machine.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; ``evaluate`` runs JS in it, ``click`` clicks
    with the mouse where an element is drawn."""

    def __init__(self, executable: str, timeout: float = 15.0, width: int = 1400,
                 height: int = 1000):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="cola-chromium-")
        # our ends: we write commands to `to_browser`, read replies from `from_browser`
        browser_in, to_browser = os.pipe()
        from_browser, browser_out = os.pipe()
        # the browser wants its ends as fds 3 and 4: bash moves them there (dash takes one
        # digit fds only), from fds above 9 so that neither is already 3 or 4
        for fd in (browser_in, browser_out):
            os.set_inheritable(fd, False)
        low = (browser_in, browser_out)
        browser_in, browser_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in low)
        for fd in low:
            os.close(fd)
        shell = f'exec 3<&{browser_in} 4>&{browser_out} {browser_in}<&- {browser_out}>&- "$@"'
        args = [executable, "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--mute-audio",
                f"--window-size={width},{height}", "about:blank"]
        self._process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", shell, "bash", *args],
            pass_fds=(browser_in, browser_out), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(browser_in)
        os.close(browser_out)
        self._write, self._read = to_browser, from_browser
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session = ""
        try:
            targets = self.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self._session = self.send("Target.attachToTarget",
                                      {"targetId": page["targetId"], "flatten": True},
                                      session=False)["sessionId"]
            self.send("Page.enable")
            self.send("Runtime.enable")
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- protocol

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("the browser did not answer in time")
            ready, _, _ = select.select([self._read], [], [], left)
            if ready:
                chunk = os.read(self._read, 1 << 16)
                if not chunk:
                    raise BrowserError("the browser closed its pipe (did it start?)")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(index)
            self._events.append(self._message(deadline))

    # ---------------------------------------------------------------- page

    def open(self, url: str) -> None:
        self._events.clear()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JS expression (JSON-able), or BrowserError with the JS error."""
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JS error: {text}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        return [str(e["params"]) for e in self._events
                if e.get("method") == "Runtime.exceptionThrown"]

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) on the middle of the element, scrolled
        into view first: what a person's click does, not a synthetic ``element.click()``."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()")
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                   "button": "left", "clickCount": 1})

    def close(self) -> None:
        try:
            if self._session:
                self.send("Browser.close", session=False)
        except (BrowserError, OSError):
            pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._write, self._read):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def page_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
