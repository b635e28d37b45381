"""Helpers for the fake Telegram tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# The stand-in lives in the role that runs it (roles/demo_telegram/files).
FAKE_DIR = Path(__file__).resolve().parents[3] / "roles" / "demo_telegram" / "files"
sys.path.insert(0, str(FAKE_DIR))

from fake_telegram import FakeTelegram  # noqa: E402

__all__ = ["Client", "FakeTelegram"]


class Client:
    """Tiny JSON client for the fake (Bot API and control API)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(self, path: str, body: Any = None, *, method: str | None = None,
                timeout: float = 10, raw: bytes | None = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def api(self, token: str, method: str, http_timeout: float = 10,
            **params: Any) -> tuple[int, Any]:
        return self.request(f"/bot{token}/{method}", params, method="POST", timeout=http_timeout)

    def queue(self, token: str, *texts: str, chat_id: int = 1) -> list[int]:
        status, body = self.request(
            f"/_control/{token}/updates", [{"text": t, "chat_id": chat_id} for t in texts]
        )
        assert status == 200, body
        return body["update_ids"]

    def stats(self, token: str) -> dict[str, Any]:
        return self.request(f"/_control/{token}/stats")[1]["result"]
