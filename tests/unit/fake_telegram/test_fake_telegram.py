from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fake_support import FAKE_DIR, Client

TOKEN = "123456:TEST-token"
FAKE_FILE = FAKE_DIR / "fake_telegram.py"


def test_get_me_and_unknown_method(client: Client) -> None:
    status, body = client.api(TOKEN, "getMe")
    assert status == 200 and body["ok"] and body["result"]["is_bot"] is True
    status, body = client.api(TOKEN, "noSuchMethod")
    assert status == 404 and body == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_offsets_confirm_like_telegram(client: Client) -> None:
    ids = client.queue(TOKEN, "a", "b", "c")
    assert ids == [1, 2, 3]
    status, body = client.api(TOKEN, "getUpdates")
    assert status == 200
    assert [u["update_id"] for u in body["result"]] == ids
    assert body["result"][0]["message"]["text"] == "a"
    # without an offset nothing is confirmed: redelivered
    _, body = client.api(TOKEN, "getUpdates", limit=2)
    assert [u["update_id"] for u in body["result"]] == [1, 2]
    # offset=3 confirms 1 and 2 (ids < offset) and returns 3
    _, body = client.api(TOKEN, "getUpdates", offset=3)
    assert [u["update_id"] for u in body["result"]] == [3]
    stats = client.stats(TOKEN)
    assert stats["pending_ids"] == [3] and stats["confirmed"] == 2
    # a lower offset later does not bring confirmed updates back
    _, body = client.api(TOKEN, "getUpdates", offset=1)
    assert [u["update_id"] for u in body["result"]] == [3]
    _, body = client.api(TOKEN, "getUpdates", offset=4)
    assert body["result"] == []
    assert client.stats(TOKEN)["queued"] == 0


def test_negative_offset_and_params_by_query_and_form(client: Client) -> None:
    client.queue(TOKEN, "a", "b", "c", "d")
    status, body = client.request(f"/bot{TOKEN}/getUpdates?offset=-2")
    assert status == 200 and [u["update_id"] for u in body["result"]] == [3, 4]
    status, body = client.request(
        f"/bot{TOKEN}/getUpdates", raw=b"offset=4&limit=5",
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 200 and [u["update_id"] for u in body["result"]] == [4]
    status, body = client.request(f"/bot{TOKEN}/getUpdates?offset=x")
    assert status == 400 and body["error_code"] == 400


def test_long_poll_wakes_up_when_an_update_arrives(client: Client) -> None:
    result: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        result["resp"] = client.api(TOKEN, "getUpdates", timeout=5)
        result["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.3)
    client.queue(TOKEN, "wake")
    th.join(5)
    assert not th.is_alive()
    status, body = result["resp"]
    assert status == 200 and [u["message"]["text"] for u in body["result"]] == ["wake"]
    assert result["elapsed"] < 2


def test_long_poll_times_out_empty(client: Client) -> None:
    t0 = time.monotonic()
    status, body = client.api(TOKEN, "getUpdates", timeout=0)
    assert status == 200 and body["result"] == []
    assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    status, body = client.request(f"/bot{TOKEN}/getUpdates?timeout=1")
    assert status == 200 and body["result"] == []
    assert 0.9 < time.monotonic() - t0 < 3


def test_overlapping_get_updates_gets_409_and_is_counted(client: Client) -> None:
    first: dict[str, Any] = {}

    def poll() -> None:
        first["resp"] = client.request(f"/bot{TOKEN}/getUpdates?timeout=5")

    th = threading.Thread(target=poll)
    th.start()
    deadline = time.monotonic() + 3
    while not client.stats(TOKEN)["polling_in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # a second poller: the in-flight request is terminated, like Telegram does
    status, body = client.request(f"/bot{TOKEN}/getUpdates?timeout=0")
    assert status == 200
    th.join(5)
    status, body = first["resp"]
    assert status == 409
    assert body["error_code"] == 409
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")
    stats = client.stats(TOKEN)
    assert stats["conflicts_409"] == 1 and stats["get_updates_calls"] == 2
    # sequential polls are not conflicts
    client.request(f"/bot{TOKEN}/getUpdates")
    assert client.stats(TOKEN)["conflicts_409"] == 1


def test_tokens_are_independent(client: Client) -> None:
    client.queue(TOKEN, "mine")
    _, body = client.api("999:other", "getUpdates")
    assert body["result"] == []


def test_send_message_recorded(client: Client) -> None:
    status, body = client.api(TOKEN, "sendMessage", chat_id=42, text="hello")
    assert status == 200 and body["result"]["chat"]["id"] == 42
    assert body["result"]["text"] == "hello"
    status, body = client.api(TOKEN, "sendMessage", chat_id=42)
    assert status == 400 and "text is empty" in body["description"]
    _, body = client.request(f"/_control/{TOKEN}/sent")
    assert [(m["chat_id"], m["text"]) for m in body["result"]] == [(42, "hello")]


def test_webhook_conflict_and_info(client: Client) -> None:
    status, body = client.api(TOKEN, "setWebhook", url="http://127.0.0.1:9/hook")
    assert status == 200 and body["result"] is True
    status, body = client.api(TOKEN, "getUpdates")
    assert status == 409 and "webhook is active" in body["description"]
    _, body = client.api(TOKEN, "getWebhookInfo")
    assert body["result"]["url"] == "http://127.0.0.1:9/hook"
    status, body = client.api(TOKEN, "setWebhook", url="ftp://x")
    assert status == 400
    client.api(TOKEN, "deleteWebhook")
    status, body = client.api(TOKEN, "getUpdates")
    assert status == 200
    stats = client.stats(TOKEN)
    assert stats["webhook_conflicts_409"] == 1 and stats["conflicts_409"] == 0


def test_webhook_set_during_long_poll_ends_it_with_409(client: Client) -> None:
    out: dict[str, Any] = {}
    th = threading.Thread(
        target=lambda: out.update(r=client.request(f"/bot{TOKEN}/getUpdates?timeout=5")))
    th.start()
    time.sleep(0.3)
    client.api(TOKEN, "setWebhook", url="http://127.0.0.1:9/hook")
    th.join(3)
    assert out["r"][0] == 409
    client.api(TOKEN, "deleteWebhook")


def test_webhook_delivery_with_secret(client: Client) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    fail_first = {"left": 1}

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if fail_first["left"]:
                fail_first["left"] -= 1
                self.send_response(500)
            else:
                received.append((self.headers.get("X-Telegram-Bot-Api-Secret-Token"), body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        client.api(TOKEN, "setWebhook", url=f"http://127.0.0.1:{hook.server_address[1]}/webhook",
                   secret_token="s3cret")
        client.queue(TOKEN, "one", "two")
        deadline = time.monotonic() + 5
        while len(received) < 2:
            assert time.monotonic() < deadline, client.stats(TOKEN)
            time.sleep(0.05)
        assert [(s, b["message"]["text"]) for s, b in received] == [("s3cret", "one"), ("s3cret", "two")]
        # the stand-in counts a delivery once it has read the answer, just after the hook saw it
        stats = client.stats(TOKEN)
        while stats["queued"] or stats["webhook_deliveries"] < 2:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
            stats = client.stats(TOKEN)
        assert stats["queued"] == 0 and stats["webhook_failures"] == 1
        assert stats["webhook_deliveries"] == 2
    finally:
        client.api(TOKEN, "deleteWebhook")
        hook.shutdown()
        hook.server_close()


def test_fail_modes(client: Client) -> None:
    status, _ = client.request(f"/_control/{TOKEN}/fail", {"mode": "500"})
    assert status == 200
    status, body = client.api(TOKEN, "getUpdates")
    assert status == 500 and body["ok"] is False
    # other methods are unaffected by default
    assert client.api(TOKEN, "getMe")[0] == 200
    client.request(f"/_control/{TOKEN}/fail", {"mode": "409", "count": 1})
    assert client.api(TOKEN, "getUpdates")[0] == 409
    assert client.api(TOKEN, "getUpdates")[0] == 200  # count exhausted
    client.request(f"/_control/{TOKEN}/fail", {"mode": "hang", "seconds": 0.3})
    t0 = time.monotonic()
    assert client.api(TOKEN, "getUpdates")[0] == 500
    assert time.monotonic() - t0 >= 0.3
    client.request(f"/_control/{TOKEN}/fail", {"mode": "none"})
    assert client.api(TOKEN, "getUpdates")[0] == 200
    assert client.stats(TOKEN)["injected_failures"] == 3
    status, _ = client.request(f"/_control/{TOKEN}/fail", {"mode": "bogus"})
    assert status == 400


def test_reset_and_health(client: Client) -> None:
    client.queue(TOKEN, "x")
    assert client.request("/_control/health")[0] == 200
    assert client.request("/_control/reset", {})[0] == 200
    assert client.stats(TOKEN)["queued"] == 0
    # ids restart after a reset
    assert client.queue(TOKEN, "y") == [1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_standalone_cli_runs_and_stops_on_sigterm() -> None:
    """The deploy tool copies only fake_telegram.py: it must run on its own."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="fake-tg-") as tmp:
        copy = Path(tmp) / "fake_telegram.py"
        copy.write_bytes(FAKE_FILE.read_bytes())
        _run_standalone(copy, port)


def _run_standalone(copy: Path, port: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-B", str(copy), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=copy.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/health", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "fake did not start"
                time.sleep(0.05)
        c = Client(f"http://127.0.0.1:{port}")
        c.queue(TOKEN, "cli")
        assert c.api(TOKEN, "getUpdates")[1]["result"][0]["message"]["text"] == "cli"
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert b"listening on 127.0.0.1" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_module_entry_point() -> None:
    """``python -m fake_telegram --help`` works from the directory that holds it."""
    out = subprocess.run(
        [sys.executable, "-m", "fake_telegram", "--help"],
        cwd=FAKE_DIR, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "--port" in out.stdout


def test_reset_releases_in_flight_long_polls(client: Client) -> None:
    out: dict[str, Any] = {}
    th = threading.Thread(
        target=lambda: out.update(r=client.request(f"/bot{TOKEN}/getUpdates?timeout=10")))
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    client.request(f"/_control/{TOKEN}/reset", {})
    th.join(5)
    assert time.monotonic() - t0 < 2
    assert out["r"] == (200, {"ok": True, "result": []})


def _raw_long_poll(base: str, token: str, timeout: int) -> socket.socket:
    """A getUpdates long poll sent by hand; the caller closes the socket (a bot killed mid poll)."""
    host, port = base.split("//", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"GET /bot{token}/getUpdates?timeout={timeout} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def test_a_long_poll_whose_client_left_is_abandoned_not_a_409(client: Client) -> None:
    # PTB cancels its long poll on SIGTERM and calls getUpdates once more to
    # confirm the offset: Telegram answers nobody with a 409 for the
    # cancelled one, and neither does the stand-in.
    sock = _raw_long_poll(client.base, TOKEN, 20)
    deadline = time.monotonic() + 5
    while not client.stats(TOKEN)["polling_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    sock.close()
    deadline = time.monotonic() + 5
    while client.stats(TOKEN)["abandoned_polls"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = client.stats(TOKEN)
    assert stats["abandoned_polls"] == 1 and not stats["polling_in_flight"]
    client.queue(TOKEN, "after")
    status, body = client.api(TOKEN, "getUpdates", timeout=0)
    assert status == 200 and [u["message"]["text"] for u in body["result"]] == ["after"]
    assert client.stats(TOKEN)["conflicts_409"] == 0


def test_a_poll_that_still_waits_when_another_comes_is_a_409(client: Client) -> None:
    # positive control: the same overlap with the first client still waiting
    sock = _raw_long_poll(client.base, TOKEN, 20)
    try:
        deadline = time.monotonic() + 5
        while not client.stats(TOKEN)["polling_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        status, dummy = client.api(TOKEN, "getUpdates", timeout=0)
        assert status == 200
        sock.settimeout(5)
        answer = b""
        while b"terminated by other getUpdates" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()
        assert " 409 " in answer.splitlines()[0] and "terminated by other getUpdates" in answer
    finally:
        sock.close()
    stats = client.stats(TOKEN)
    assert stats["conflicts_409"] == 1 and stats["abandoned_polls"] == 0


def test_a_command_gets_its_entity_like_telegram_gives_it(client: Client) -> None:
    client.queue(TOKEN, "/start now", "plain")
    _, body = client.api(TOKEN, "getUpdates")
    first, second = (u["message"] for u in body["result"])
    assert first["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert "entities" not in second


def test_a_multipart_form_body_is_read_like_telegram_reads_it(client: Client) -> None:
    # how aiogram sends a method with a file (aiohttp's FormData), and PTB an upload
    boundary = "----fs-boundary-1"
    parts = [
        ('Content-Disposition: form-data; name="chat_id"', b"42"),
        ('Content-Disposition: form-data; name="text"', "привет, multipart".encode()),
        ('Content-Disposition: form-data; name="document"; filename="notes.txt"\r\n'
         "Content-Type: text/plain", b"x" * 300),
    ]
    raw = b"".join(f"--{boundary}\r\n{head}\r\n\r\n".encode() + value + b"\r\n" for head, value in parts)
    raw += f"--{boundary}--\r\n".encode()
    status, body = client.request(f"/bot{TOKEN}/sendMessage", raw=raw,
                                  content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200, body
    assert body["result"]["chat"]["id"] == 42 and body["result"]["text"] == "привет, multipart"
    _, sent = client.request(f"/_control/{TOKEN}/sent")
    assert [(m["chat_id"], m["text"]) for m in sent["result"]] == [(42, "привет, multipart")]
    # a body that is not multipart at all is a 400, as on Telegram
    status, body = client.request(f"/bot{TOKEN}/sendMessage", raw=b"chat_id=1",
                                  content_type="multipart/form-data")
    assert status == 400 and "multipart" in body["description"]


def test_an_offset_in_the_future_is_ignored_as_the_bot_api_does(client: Client) -> None:
    ids = client.queue(TOKEN, "a", "b")
    _, body = client.api(TOKEN, "getUpdates", offset=ids[-1] + 500)
    assert [u["update_id"] for u in body["result"]] == ids, "answered from the head of the queue"
    assert client.stats(TOKEN)["offsets_ignored"] == 1
    # one past the last id is no future offset: it confirms everything
    _, body = client.api(TOKEN, "getUpdates", offset=ids[-1] + 1)
    assert body["result"] == [] and client.stats(TOKEN)["offsets_ignored"] == 1
