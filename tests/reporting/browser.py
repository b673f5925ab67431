"""Headless Chromium for the dashboard tests, driven over the Chrome DevTools Protocol.

Debian's chromium (`/usr/bin/chromium`), started with `--remote-debugging-port`; the protocol's
WebSocket is spoken here with the standard library (RFC 6455: a masked text frame out, frames in),
so the tests need no browser driver package. Enough of the protocol for a dashboard test: open an
address at a window width, evaluate an expression, take a screenshot of the whole page.

`sign_in_page` is the way without the protocol (the README's "Screenshots of the dashboard"): a page
on another port of 127.0.0.1 that posts a token to the dashboard's sign-in form, so that one
`chromium --headless --screenshot` (or `--dump-dom`) of it ends on the signed-in dashboard.
"""

from __future__ import annotations

import base64
import contextlib
import html
import http.server
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not found:
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    return found


class _Socket:
    """A WebSocket client connection (text frames, no extensions)."""

    def __init__(self, url: str) -> None:
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        assert m, url
        self.sock = socket.create_connection((m[1], int(m[2])), timeout=60)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            (
                f"GET {m[3]} HTTP/1.1\r\nHost: {m[1]}:{m[2]}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = secrets.token_bytes(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the browser closed the connection"
            data += chunk
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._exact(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._exact(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._exact(8))[0]
            message += self._exact(size)
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    def __init__(self, socket_: _Socket) -> None:
        self.ws = socket_
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == ident:
                assert "error" not in message, message
                return message.get("result", {})

    def wait_event(self, method: str) -> dict:
        while True:
            message = json.loads(self.ws.receive())
            if message.get("method") == method:
                return message.get("params", {})

    def open(self, url: str, width: int, height: int = 900) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=width < 600
        )
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def submit(self, expression: str) -> None:
        """Run `expression` (which submits a form or follows a link) and wait for the next page."""
        self.call("Runtime.evaluate", expression=expression)
        self.wait_event("Page.loadEventFired")

    def screenshot(self, path: Path) -> None:
        height = self.evaluate("document.documentElement.scrollHeight")
        width = self.evaluate("document.documentElement.clientWidth")
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.contextmanager
def headless(profile: Path) -> Iterator[Browser]:
    process = subprocess.Popen(
        [chromium(), *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        assert process.stderr is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m[1])
        assert port, "chromium did not open its DevTools port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as reply:
            pages = [t for t in json.load(reply) if t["type"] == "page"]
        ws = _Socket(pages[0]["webSocketDebuggerUrl"])
        try:
            yield Browser(ws)
        finally:
            ws.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def sign_in_page(dashboard: str, token: str, next_path: str = "/") -> Iterator[str]:
    """The address of a page that posts `token` to `dashboard`'s sign-in form at once, served on a
    free port of 127.0.0.1 while the block runs. Another port of the same host is the same site, so
    the SameSite=Strict cookie the sign-in sets is sent on its redirect (from a `file://` page it is
    not, and the redirect ends on the sign-in page)."""
    body = (
        f'<form method="post" action="{html.escape(dashboard.rstrip("/"))}/sign-in">'
        f'<input name="token" value="{html.escape(token)}"><input name="next" value="{html.escape(next_path)}">'
        "</form><script>document.forms[0].submit()</script>"
    ).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sign-in.html"
    finally:
        server.shutdown()
        server.server_close()
