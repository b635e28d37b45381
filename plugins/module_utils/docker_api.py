# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tiny Docker Engine API client over the unix socket, stdlib only.

Just what the health check and the switch need: ping, inspect, list,
create, start, stop and remove containers, read their logs, run a command in
one (exec) and copy files into one (a tar archive). It speaks the Engine API v1.41
(Docker 20.10 and later) and runs with or without Ansible, so that the logic
built on it is unit tested as is.

Errors are explicit: ``DockerUnavailable`` when the engine cannot be reached
(socket missing, refused, not permitted), ``DockerAPIError`` (with the HTTP
status and the engine's message) when it answers with an error, and
``DockerTimeout`` when an answer takes longer than allowed.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time
import urllib.parse

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_API_VERSION = "1.41"
DEFAULT_TIMEOUT = 60.0

STREAM_STDIN = 0
STREAM_STDOUT = 1
STREAM_STDERR = 2
_FRAME_HEADER = struct.Struct(">BxxxL")


class DockerError(Exception):
    """Base class of the errors of this client."""


class DockerUnavailable(DockerError):
    """The Docker engine cannot be reached (socket missing, refused or not permitted)."""


class DockerTimeout(DockerError):
    """The engine did not answer (or a command did not finish) in time."""


class DockerAPIError(DockerError):
    """The engine answered with an HTTP error status."""

    def __init__(self, status: int, message: str, method: str = "", path: str = ""):
        self.status = int(status)
        self.message = str(message)
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method else ""
        super().__init__(f"Docker API error {self.status}{where}: {self.message}")


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` over an AF_UNIX stream socket."""

    def __init__(self, socket_path: str, timeout: float | None = DEFAULT_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def parse_docker_host(docker_host: str) -> tuple[str, str]:
    """Split ``unix:///path`` or ``tcp://host:port`` into (scheme, address)."""
    if not docker_host:
        docker_host = DEFAULT_DOCKER_HOST
    if docker_host.startswith("unix://"):
        path = docker_host[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"invalid docker_host {docker_host!r}: unix socket path must be absolute")
        return "unix", path
    if docker_host.startswith("/"):
        return "unix", docker_host
    for prefix in ("tcp://", "http://"):
        if docker_host.startswith(prefix):
            address = docker_host[len(prefix):].rstrip("/")
            if not address:
                raise ValueError(f"invalid docker_host {docker_host!r}: missing host")
            return "tcp", address
    raise ValueError(
        f"invalid docker_host {docker_host!r}: expected unix:///path/to/socket or tcp://host:port"
    )


def demux_stream(data: bytes) -> tuple[bytes, bytes]:
    """Split Docker's multiplexed stream (no TTY) into (stdout, stderr).

    Each frame is an 8-byte header ``[stream, 0, 0, 0, size (uint32 big-endian)]``
    followed by ``size`` bytes. stdin frames (0) are counted as stdout. A
    truncated last frame keeps what arrived.
    """
    out = bytearray()
    err = bytearray()
    pos = 0
    size_total = len(data)
    while pos + _FRAME_HEADER.size <= size_total:
        stream, size = _FRAME_HEADER.unpack_from(data, pos)
        if stream not in (STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR):
            raise ValueError(f"not a multiplexed Docker stream (stream byte {stream} at offset {pos})")
        pos += _FRAME_HEADER.size
        chunk = data[pos:pos + size]
        pos += size
        (err if stream == STREAM_STDERR else out).extend(chunk)
    return bytes(out), bytes(err)


def looks_multiplexed(data: bytes) -> bool:
    """True if ``data`` starts like a multiplexed stream frame."""
    return len(data) >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\x00\x00\x00"


def _since_param(since: float | int | str) -> str:
    if isinstance(since, str):
        return since
    if isinstance(since, int):
        return str(since)
    seconds = int(since)
    nanos = int(round((since - seconds) * 1e9))
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return f"{seconds}.{nanos:09d}"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class DockerClient:
    """Minimal Engine API client. One HTTP connection per request."""

    def __init__(
        self,
        docker_host: str = DEFAULT_DOCKER_HOST,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        self.docker_host = docker_host or DEFAULT_DOCKER_HOST
        self.scheme, self.address = parse_docker_host(self.docker_host)
        self.api_version = api_version.lstrip("v")
        self.timeout = timeout

    # -- transport -------------------------------------------------------

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return UnixHTTPConnection(self.address, timeout=timeout)
        return http.client.HTTPConnection(self.address, timeout=timeout)

    def _url(self, path: str, params: dict | None = None) -> str:
        url = f"/v{self.api_version}{path}"
        if params:
            clean = {k: v for k, v in params.items() if v is not None}
            if clean:
                url += "?" + urllib.parse.urlencode(clean)
        return url

    def _open(self, method: str, path: str, params: dict | None = None, body=None,
              timeout: float | None = None):
        """Send a request; return (connection, response). Caller closes the connection."""
        timeout = self.timeout if timeout is None else timeout
        url = self._url(path, params)
        headers = {"Host": "docker"}
        payload = None
        if isinstance(body, bytes):  # a tar archive (PUT /containers/{id}/archive)
            payload = body
            headers["Content-Type"] = "application/x-tar"
        elif body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout)
        try:
            conn.request(method, url, body=payload, headers=headers)
            sock = conn.sock
            resp = conn.getresponse()
            # getresponse() drops conn.sock for read-until-close answers; keep it
            # to adjust the read timeout of streamed answers.
            resp.fs_sock = sock
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
            conn.close()
            raise DockerUnavailable(
                f"cannot connect to the Docker engine at {self.docker_host}: {exc.strerror or exc}"
            ) from exc
        except TimeoutError as exc:
            conn.close()
            raise DockerTimeout(
                f"{method} {path}: no answer from the Docker engine within {timeout}s"
            ) from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            conn.close()
            raise DockerUnavailable(
                f"cannot talk to the Docker engine at {self.docker_host}: {exc}"
            ) from exc
        if resp.status >= 400:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            raise DockerAPIError(resp.status, self._error_message(raw, resp.reason), method, path)
        return conn, resp

    @staticmethod
    def _error_message(raw: bytes, reason: str) -> str:
        text = _decode(raw).strip()
        try:
            data = json.loads(text)
        except ValueError:
            return text or reason
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
        return text or reason

    def request(self, method: str, path: str, params: dict | None = None, body=None,
                timeout: float | None = None) -> bytes:
        """Send a request and return the whole body (raises on HTTP errors)."""
        conn, resp = self._open(method, path, params, body, timeout)
        try:
            return resp.read()
        except TimeoutError as exc:
            raise DockerTimeout(f"{method} {path}: reading the answer timed out") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DockerUnavailable(f"{method} {path}: connection lost: {exc}") from exc
        finally:
            conn.close()

    def request_json(self, method: str, path: str, params: dict | None = None, body=None,
                     timeout: float | None = None):
        raw = self.request(method, path, params, body, timeout)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise DockerAPIError(200, f"invalid JSON from the engine: {exc}", method, path) from exc

    # -- API -------------------------------------------------------------

    def ping(self) -> bool:
        """True when the engine answers ``GET /_ping`` with OK."""
        return self.request("GET", "/_ping").strip() == b"OK"

    def version(self) -> dict:
        return self.request_json("GET", "/version")

    @staticmethod
    def _unless_missing(call, *args, **kwargs):
        """``call(...)``, or None when the engine answers 404 (no such object)."""
        try:
            return call(*args, **kwargs)
        except DockerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def inspect_container(self, name: str) -> dict | None:
        """The container's inspect dict, or None when it does not exist."""
        return self._unless_missing(self.request_json, "GET",
                                    f"/containers/{urllib.parse.quote(name, safe='')}/json")

    def list_containers(self, labels: dict | None = None, all: bool = True) -> list[dict]:  # noqa: A002
        """Containers (all states by default), optionally filtered by labels.

        ``labels`` maps a label to a required value; a value of None only
        requires the label to be present.
        """
        params: dict = {"all": "1" if all else "0", **_label_filter(labels)}
        return self.request_json("GET", "/containers/json", params) or []

    def inspect_image(self, name: str) -> dict | None:
        """The image's inspect dict, or None when it is not there."""
        return self._unless_missing(self.request_json, "GET",
                                    f"/images/{urllib.parse.quote(name, safe='')}/json")

    def create_container(self, name: str, body: dict) -> str:
        """Create a container from a ``POST /containers/create`` body; its id."""
        created = self.request_json("POST", "/containers/create", {"name": name}, body=body)
        return created["Id"]

    def start_container(self, name: str) -> None:
        """Start it (a running container stays as it is)."""
        self.request("POST", f"/containers/{urllib.parse.quote(name, safe='')}/start")

    def stop_container(self, name: str, timeout: int) -> None:
        """SIGTERM (its stop signal), ``timeout`` seconds, then SIGKILL. A
        stopped or missing container is left as it is."""
        self._unless_missing(self.request, "POST", f"/containers/{urllib.parse.quote(name, safe='')}/stop",
                             {"t": str(int(timeout))}, timeout=max(self.timeout, int(timeout) + 30))

    def remove_container(self, name: str, force: bool = False, volumes: bool = True) -> None:
        """Remove it with its anonymous volumes; a missing container is fine."""
        self._unless_missing(self.request, "DELETE", f"/containers/{urllib.parse.quote(name, safe='')}",
                             {"force": "1" if force else "0", "v": "1" if volumes else "0"})

    def create_network(self, name: str, internal: bool = False, labels: dict | None = None) -> str:
        """Create a bridge network (``internal``: no way out of it); its id."""
        created = self.request_json("POST", "/networks/create", body={
            "Name": name, "Driver": "bridge", "Internal": bool(internal), "CheckDuplicate": True,
            "Labels": {str(k): str(v) for k, v in (labels or {}).items()}})
        return created["Id"]

    def list_networks(self, labels: dict | None = None) -> list[dict]:
        """Networks, optionally filtered by labels (as ``list_containers``)."""
        return self.request_json("GET", "/networks", _label_filter(labels)) or []

    def remove_network(self, name: str) -> None:
        """Remove it; a missing network is fine."""
        self._unless_missing(self.request, "DELETE", f"/networks/{urllib.parse.quote(name, safe='')}")

    def put_archive(self, name: str, path: str, data: bytes) -> None:
        """Unpack a tar archive into the container's directory ``path``."""
        self.request("PUT", f"/containers/{urllib.parse.quote(name, safe='')}/archive", {"path": path},
                     body=bytes(data))

    def container_logs(
        self,
        name: str,
        since: float | int | str | None = None,
        tail: int | str | None = None,
        timestamps: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool | None = None,
    ) -> str:
        """The container's logs (stdout and stderr interleaved) as text.

        ``since`` is a UNIX timestamp (float seconds allowed). Without a TTY the
        engine sends the multiplexed frame format, which is demultiplexed here;
        ``tty`` is read from the container's config when not given.
        """
        if tty is None:
            info = self.inspect_container(name)
            if info is None:
                raise DockerAPIError(404, f"No such container: {name}", "GET", f"/containers/{name}/logs")
            tty = bool((info.get("Config") or {}).get("Tty"))
        params = {
            "stdout": "1" if stdout else "0",
            "stderr": "1" if stderr else "0",
            "timestamps": "1" if timestamps else "0",
            "since": None if since is None else _since_param(since),
            "tail": None if tail is None else str(tail),
        }
        raw = self.request("GET", f"/containers/{urllib.parse.quote(name, safe='')}/logs", params)
        if tty:
            return _decode(raw)
        return _decode(_interleave(raw))

    def exec_run(
        self,
        container: str,
        cmd: list[str],
        user: str | None = None,
        env: dict | None = None,
        workdir: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> tuple[int, str, str]:
        """Run ``cmd`` in a running container; return (exit_code, stdout, stderr).

        Exec create, exec start attached (the answer is the multiplexed stream
        of the command's output until it ends), then exec inspect for the exit
        code. Raises DockerTimeout when the command runs longer than ``timeout``.
        """
        if not cmd or not all(isinstance(c, str) for c in cmd):
            raise ValueError("cmd must be a non-empty list of strings")
        deadline = time.monotonic() + timeout
        config: dict = {
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": list(cmd),
        }
        if user:
            config["User"] = user
        if env:
            config["Env"] = [f"{k}={v}" for k, v in env.items()]
        if workdir:
            config["WorkingDir"] = workdir
        created = self.request_json(
            "POST", f"/containers/{urllib.parse.quote(container, safe='')}/exec", body=config,
            timeout=min(self.timeout, timeout),
        )
        exec_id = created["Id"]
        raw = self._read_stream(
            "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}, deadline
        )
        out, err = demux_stream(raw)
        exit_code = None
        while True:
            info = self.request_json("GET", f"/exec/{exec_id}/json", timeout=min(self.timeout, timeout))
            exit_code = info.get("ExitCode")
            if not info.get("Running") and exit_code is not None:
                break
            if time.monotonic() >= deadline:
                raise DockerTimeout(f"exec {cmd[0]!r} in {container}: still running after {timeout}s")
            time.sleep(0.05)
        return int(exit_code), _decode(out), _decode(err)

    def _read_stream(self, method: str, path: str, body, deadline: float) -> bytes:
        """POST and read the (hijacked) answer until the engine closes it, or the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DockerTimeout(f"{method} {path}: deadline passed")
        conn, resp = self._open(method, path, body=body, timeout=remaining)
        chunks = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DockerTimeout(f"{method} {path}: output not finished in time")
                sock = getattr(resp, "fs_sock", None)
                if sock is not None:
                    sock.settimeout(remaining)
                chunk = resp.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError as exc:
            raise DockerTimeout(f"{method} {path}: output not finished in time") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise DockerUnavailable(f"{method} {path}: connection lost: {exc}") from exc
        finally:
            conn.close()
        return b"".join(chunks)


def _label_filter(labels: dict | None) -> dict:
    """The ``filters`` parameter of a list call: each label required, with its
    value unless that is None."""
    if not labels:
        return {}
    return {"filters": json.dumps(
        {"label": [k if v is None else f"{k}={v}" for k, v in sorted(labels.items())]})}


def _interleave(data: bytes) -> bytes:
    """Payloads of a multiplexed stream in arrival order (stdout and stderr mixed)."""
    if not looks_multiplexed(data):
        return data
    out = bytearray()
    pos = 0
    while pos + _FRAME_HEADER.size <= len(data):
        stream, size = _FRAME_HEADER.unpack_from(data, pos)
        if stream not in (STREAM_STDIN, STREAM_STDOUT, STREAM_STDERR):
            break
        pos += _FRAME_HEADER.size
        out.extend(data[pos:pos + size])
        pos += size
    return bytes(out)
