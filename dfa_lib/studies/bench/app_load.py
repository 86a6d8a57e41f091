"""Load test of the Streamlit app: concurrent uploads to a local server, its peak memory and time.

The stage starts ``streamlit run`` on the app (:mod:`dfa_lib.app.streamlit_app`) bound to
127.0.0.1 on a free port, with one detector, and drives ``uploads`` browser sessions at once
through the protocol the browser uses: a WebSocket to ``/_stcore/stream`` carrying Streamlit's
protobuf messages (``rerun_script``, ``file_urls_request``), and the file itself sent with an
HTTP ``PUT`` to the upload URL the server hands out, with the XSRF cookie and header. Each
session then asks for a rerun with the uploader's new state, as the browser does, and waits
for the page to show a verdict (or a refusal). Nothing leaves the loopback interface.

While the sessions run, the server's resident memory and that of its children (the ffmpeg
decoders) are sampled every 50 ms from ``/proc`` (Linux): the server's resident set plus each
child's proportional set size (``Pss``: the libraries twenty ffmpeg processes share count
once, not twenty times). The server's own high-water mark is its ``VmHWM``. The record holds the peak, the memory before the first
upload, the seconds of each upload from its first byte to its verdict, and the wall time.

The WebSocket client below is the minimum RFC 6455 needs for this: one connection, binary
messages, no extensions.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dfa_lib.studies.bench.inference import synthetic_speechlike

SAMPLE_RATE = 16000
XSRF_COOKIE = "_streamlit_xsrf"
MAX_UPLOADS = 100  # sessions at once: a load test of one machine, not a stress test


def app_script() -> Path:
    """Return the app's script, which the stage runs as its own program (``streamlit run``)."""
    spec = importlib.util.find_spec("dfa_lib.app.streamlit_app")
    if spec is None or spec.origin is None:  # pragma: no cover - the package ships it
        raise AppLoadError("dfa_lib/app/streamlit_app.py is missing from the installed package")
    return Path(spec.origin)


class AppLoadError(RuntimeError):
    """The app server could not be started or did not answer as a browser expects."""


# --------------------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455): binary messages, masking, ping, close
# --------------------------------------------------------------------------------------


class _WebSocket:
    """One client WebSocket connection over a plain TCP socket (loopback, no TLS)."""

    def __init__(
        self, host: str, port: int, path: str, headers: dict[str, str], timeout: float
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AppLoadError("the server closed the WebSocket handshake")
            reply += chunk
        head, self.pending = reply.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in f"{status} ":
            raise AppLoadError(f"WebSocket handshake refused: {status}")

    def _read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.sock.recv(max(65536, n - len(self.pending)))
            if not chunk:
                raise AppLoadError("the server closed the WebSocket")
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)  # a client masks every frame it sends
        body = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
        self.sock.sendall(header + mask + body.tobytes())

    def send(self, payload: bytes) -> None:
        """Send one binary message."""
        self._send_frame(0x2, payload)

    def receive(self) -> bytes:
        """Return the next data message, answering pings on the way."""
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(n)
            if mask is not None:
                payload = bytes(
                    np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
                )
            if opcode == 0x8:
                raise AppLoadError("the server closed the WebSocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if first & 0x80:
                return message

    def close(self) -> None:
        """Send a close frame and drop the connection."""
        with contextlib.suppress(OSError):
            self._send_frame(0x8, struct.pack("!H", 1000))
        self.sock.close()


# --------------------------------------------------------------------------------------
# One browser session
# --------------------------------------------------------------------------------------


@dataclass
class _Page:
    """What one script run of the app showed: its texts and the uploader's widget id."""

    texts: list[str] = field(default_factory=list)
    uploader_id: str | None = None
    exception: str | None = None


class _BrowserSession:
    """Drive the app the way its web page does, over the WebSocket and the upload route."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # Streamlit's own message classes: the app extra is an optional dependency.
        from streamlit.proto import (
            BackMsg_pb2,
            ClientState_pb2,
            Common_pb2,
            ForwardMsg_pb2,
            WidgetStates_pb2,
        )

        self.back, self.client, self.common = BackMsg_pb2, ClientState_pb2, Common_pb2
        self.forward_msg, self.widgets = ForwardMsg_pb2.ForwardMsg, WidgetStates_pb2
        self.base_url, self.timeout = base_url, timeout
        host, port = base_url.removeprefix("http://").split(":")
        # The page asks for the health route first, and the server sets the XSRF cookie there.
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=timeout) as reply:
            cookies = reply.headers.get_all("Set-Cookie") or []
        self.xsrf = next(
            (c.split(";", 1)[0].split("=", 1)[1] for c in cookies if c.startswith(XSRF_COOKIE)),
            None,
        )
        headers = {"Origin": base_url, "Sec-WebSocket-Protocol": "streamlit"}
        if self.xsrf:
            headers["Sec-WebSocket-Protocol"] = f"streamlit, {self.xsrf}"
            headers["Cookie"] = f"{XSRF_COOKIE}={self.xsrf}"
        self.ws = _WebSocket(host, int(port), "/_stcore/stream", headers, timeout)
        self.session_id = ""

    def _run(self, widget_states: list[Any] | None = None) -> _Page:
        states = self.widgets.WidgetStates(widgets=widget_states or [])
        rerun = self.client.ClientState(widget_states=states)
        self.ws.send(self.back.BackMsg(rerun_script=rerun).SerializeToString())
        page = _Page()
        while True:
            forward = self.forward_msg()
            forward.ParseFromString(self.ws.receive())
            kind = forward.WhichOneof("type")
            if kind == "new_session":
                self.session_id = forward.new_session.initialize.session_id
            elif kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                which = element.WhichOneof("type")
                if which == "file_uploader":
                    page.uploader_id = element.file_uploader.id
                elif which == "alert":
                    page.texts.append(element.alert.body)
                elif which == "exception":
                    page.exception = f"{element.exception.type}: {element.exception.message}"
            elif kind == "script_finished":
                return page

    def open_page(self) -> _Page:
        """Load the page, as a browser does on connecting."""
        page = self._run()
        if page.uploader_id is None:
            raise AppLoadError(f"the app shows no file uploader: {page.texts or page.exception}")
        return page

    def upload(self, uploader_id: str, name: str, data: bytes) -> _Page:
        """Upload a file through the uploader and return the page the app shows for it."""
        request = self.common.FileURLsRequest(
            request_id=uuid.uuid4().hex, file_names=[name], session_id=self.session_id
        )
        self.ws.send(self.back.BackMsg(file_urls_request=request).SerializeToString())
        while True:
            forward = self.forward_msg()
            forward.ParseFromString(self.ws.receive())
            if forward.WhichOneof("type") == "file_urls_response":
                break
        response = forward.file_urls_response
        if response.error_msg or not response.file_urls:
            raise AppLoadError(f"the server gave no upload URL: {response.error_msg}")
        urls = response.file_urls[0]
        self._put(urls.upload_url, name, data)
        info = self.common.UploadedFileInfo(
            name=name, size=len(data), file_id=urls.file_id, file_urls=urls
        )
        uploaded = self.common.FileUploaderState(uploaded_file_info=[info])
        return self._run(
            [self.widgets.WidgetState(id=uploader_id, file_uploader_state_value=uploaded)]
        )

    def _put(self, url: str, name: str, data: bytes) -> None:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if self.xsrf:
            headers["X-Xsrftoken"] = self.xsrf
            headers["Cookie"] = f"{XSRF_COOKIE}={self.xsrf}"
        full = url if url.startswith("http") else f"{self.base_url}{url}"
        request = urllib.request.Request(full, data=body, headers=headers, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                reply.read()
        except urllib.error.HTTPError as error:
            raise AppLoadError(f"upload refused: HTTP {error.code} {error.reason}") from error

    def close(self) -> None:
        """Close the page."""
        self.ws.close()


# --------------------------------------------------------------------------------------
# The server and its memory
# --------------------------------------------------------------------------------------


def free_loopback_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def app_server(runs_dir: Path, timeout: float = 120.0, **env: str) -> Iterator[tuple[str, int]]:
    """Run the app on 127.0.0.1 on a free port; yield ``(base URL, server pid)``, then stop it."""
    port = free_loopback_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_script())]
    cmd += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    cmd += ["--server.fileWatcherType", "none", "--server.runOnSave", "false"]
    environment = {**os.environ, "DFA_RUNS_DIR": str(runs_dir), "HF_HUB_OFFLINE": "1"}
    # As `make app` runs it: glibc's per-thread arenas would keep each session's peak.
    environment.update({"MALLOC_ARENA_MAX": "2", **env})
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=runs_dir
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode("utf-8", "replace")[-2000:]
                    raise AppLoadError(f"streamlit exited with status {proc.returncode}: {tail}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise AppLoadError(f"streamlit did not answer on {url} within {timeout:.0f} s")
                time.sleep(0.2)
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _status_mb(pid: int, key: str) -> float | None:
    """Return a memory figure of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def _children(pid: int) -> list[int]:
    """Return the pids of a process's children (its threads' ``children`` files in /proc)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            path = f"/proc/{pid}/task/{task}/children"
            with contextlib.suppress(OSError, ValueError), open(path, encoding="ascii") as f:
                found += [int(c) for c in f.read().split()]
    return found


def _pss_mb(pid: int) -> float:
    """Return a process's proportional set size in MB (its resident size where unknown)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return _status_mb(pid, "VmRSS") or 0.0


def _program(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/exe")
    return None


def _tree_rss_mb(pid: int) -> tuple[float, float]:
    """Return a process's resident MB, and that plus its descendants' proportional MB.

    A child caught between fork and exec still runs the server's program in the server's
    memory (vfork shares it outright): it is skipped, or the server would count twice.
    """
    own = _status_mb(pid, "VmRSS") or 0.0
    server = _program(pid)
    total, todo = own, _children(pid)
    while todo:
        child = todo.pop()
        if _program(child) != server:
            total += _pss_mb(child)
        todo += _children(child)
    return own, total


class _MemorySampler(threading.Thread):
    """Sample a process tree's resident memory every ``interval`` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.peak_own_mb = self.peak_tree_mb = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            own, tree = _tree_rss_mb(self.pid)
            self.peak_own_mb = max(self.peak_own_mb, own)
            self.peak_tree_mb = max(self.peak_tree_mb, tree)
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


# --------------------------------------------------------------------------------------
# The load test
# --------------------------------------------------------------------------------------


def upload_files(n: int, seconds: float, folder: Path) -> list[Path]:
    """Write ``n`` different speech-like files of ``seconds`` each, in Opus at 16 kb/s."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        wav = folder / f"upload_{i:02d}.wav"
        sf.write(wav, synthetic_speechlike(seconds, seed=100 + i), SAMPLE_RATE, subtype="PCM_16")
        opus = wav.with_suffix(".opus")
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(wav)]
        subprocess.run([*cmd, "-c:a", "libopus", "-b:a", "16k", str(opus)], check=True)
        wav.unlink()
        paths.append(opus)
    return paths


def _one_upload(url: str, path: Path, timeout: float, barrier: threading.Barrier) -> dict[str, Any]:
    result: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    session = None
    try:
        session = _BrowserSession(url, timeout)
        page = session.open_page()
        barrier.wait(timeout=timeout)  # every page is open: the uploads start together
        start = time.perf_counter()
        shown = session.upload(page.uploader_id or "", path.name, path.read_bytes())
        result["seconds"] = time.perf_counter() - start
        verdict = next((t for t in shown.texts if t.startswith("Verdict:")), None)
        result["verdict"] = verdict
        result["error"] = shown.exception or (None if verdict else " | ".join(shown.texts))
    except (AppLoadError, OSError, threading.BrokenBarrierError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.abort()  # the others need not wait for a session that failed
    finally:
        if session is not None:
            session.close()
    return result


def run_app_load(
    detector: Path,
    uploads: int = 20,
    upload_seconds: float = 30.0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Upload ``uploads`` files at once to a local app server; return time and peak memory.

    ``detector`` is the detector folder the app offers (copied, so the app lists it alone).
    Each upload is ``upload_seconds`` of speech-like audio in Opus. Every session gives up
    after ``timeout`` seconds, so the stage is bounded whatever the server does.
    """
    if not 1 <= uploads <= MAX_UPLOADS:
        raise ValueError(f"uploads must be 1 to {MAX_UPLOADS}, got {uploads}")
    with tempfile.TemporaryDirectory(prefix="dfa-app-load-") as scratch:
        root = Path(scratch)
        runs = root / "runs"
        shutil.copytree(detector, runs / Path(detector).name)
        files = upload_files(uploads, upload_seconds, root / "uploads")
        with app_server(runs) as (url, pid):
            # One page first: the detector is loaded and cached before the clock starts.
            warm = _BrowserSession(url, timeout)
            try:
                warm.open_page()
            finally:
                warm.close()
            before_own, before_tree = _tree_rss_mb(pid)
            sampler = _MemorySampler(pid)
            sampler.start()
            barrier = threading.Barrier(uploads, timeout=timeout)
            results: list[dict[str, Any]] = [{} for _ in files]

            def work(i: int) -> None:
                results[i] = _one_upload(url, files[i], timeout, barrier)

            threads = [
                threading.Thread(target=work, args=(i,), daemon=True) for i in range(uploads)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=timeout + 30)
            wall = time.perf_counter() - start
            sampler.stop()
            high_water = _status_mb(pid, "VmHWM")
    seconds = [r["seconds"] for r in results if r.get("verdict")]
    failed = [r for r in results if not r.get("verdict")]
    return {
        "config": {
            "uploads": uploads,
            "upload_seconds": upload_seconds,
            "codec": "opus 16 kb/s",
            "timeout_s": timeout,
            "detector": Path(detector).name,
            "address": "127.0.0.1",
            "protocol": "WebSocket /_stcore/stream + PUT /_stcore/upload_file, as a browser",
        },
        "wall_s": wall,
        "completed": len(seconds),
        "failed": len(failed),
        "errors": sorted({str(r.get("error")) for r in failed})[:5],
        "upload_s_median": float(np.median(seconds)) if seconds else None,
        "upload_s_max": max(seconds) if seconds else None,
        "server_rss_before_mb": before_own,
        "server_peak_rss_mb": high_water if high_water is not None else sampler.peak_own_mb,
        "server_and_children_before_mb": before_tree,
        "server_and_children_peak_mb": sampler.peak_tree_mb,
        "uploads": results,
    }
