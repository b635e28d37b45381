"""Helpers shared by the backup integration tests: age keys, a real S3 server
(``rclone serve s3`` on loopback), a ping receiver, a throwaway PostgreSQL."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The backup program's entry script (the package fs_backup/ is beside it, as the role installs it).
FS_BACKUP = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
VENV_BIN = os.path.dirname(sys.executable)
PG_IMAGE = "postgres:15"


def rclone_binary() -> str | None:
    for candidate in (os.path.join(VENV_BIN, "rclone"), os.path.join(ROOT, ".venv", "bin", "rclone"),
                      shutil.which("rclone")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def age_keypair() -> tuple[str, str]:
    """(identity text, public key) made with age-keygen."""
    out = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True)
    identity = out.stdout
    public = next(line.split(": ", 1)[1].strip() for line in identity.splitlines()
                  if line.startswith("# public key: "))
    return identity, public


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``rclone serve s3`` on 127.0.0.1: a real S3 API over a local folder."""

    def __init__(self, root: str):
        self.root = root
        self.port = free_port()
        self.access, self.secret = "AKFSTEST" + uuid.uuid4().hex[:12].upper(), uuid.uuid4().hex
        self.bucket = "fsbackups"
        os.makedirs(os.path.join(root, "data", self.bucket), exist_ok=True)
        self.config = os.path.join(root, "rclone.conf")
        with open(self.config, "w", encoding="utf-8") as fh:
            fh.write(f"[cloud]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:{self.port}\n"
                     f"access_key_id = {self.access}\nsecret_access_key = {self.secret}\n")
        os.chmod(self.config, 0o600)
        self.log = open(os.path.join(root, "serve.log"), "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [rclone_binary(), "serve", "s3", "--config", "/dev/null", "--addr", f"127.0.0.1:{self.port}",
             "--auth-key", f"{self.access},{self.secret}", os.path.join(root, "data")],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("rclone serve s3 did not start") from None
                time.sleep(0.1)

    @property
    def remote(self) -> str:
        return f"cloud:{self.bucket}/field_service"

    def files(self, folder: str) -> list[str]:
        path = os.path.join(self.root, "data", self.bucket, "field_service", folder)
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def put(self, folder: str, name: str, data: bytes = b"x") -> None:
        path = os.path.join(self.root, "data", self.bucket, "field_service", folder)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, name), "wb") as fh:
            fh.write(data)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class PingReceiver:
    """A tiny HTTP server on loopback that records the pings it gets."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                received.append((self.path, self.rfile.read(length).decode()))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/ping/abc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def run_program(*args: str, stdin: str | None = None, env: dict | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, FS_BACKUP, *args], capture_output=True, text=True,
                          input=stdin, timeout=timeout, env=env)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("fs_backup: ERROR: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def write_config(path: str, **config) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(config, fh)
    os.chmod(path, 0o600)
    return path
