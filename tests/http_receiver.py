"""A local HTTP server that records the JSON it is sent (the notifications'
webhook and Slack-style channels, in the unit and the integration tests)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A local HTTP server that records what it is sent and answers from a script."""

    def __init__(self):
        self.got: list[dict] = []
        self.answers: list[tuple[int, dict, dict]] = []  # (status, body, headers), then 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                outer.got.append({"path": self.path, "headers": dict(self.headers),
                                  "body": json.loads(self.rfile.read(length) or b"{}")})
                status, body, headers = outer.answers.pop(0) if outer.answers else (200, {"ok": True}, {})
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
