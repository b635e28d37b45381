"""Docker HEALTHCHECK: ``python -m field_service.healthcheck``.

Exit 0 iff ``GET http://127.0.0.1:$HTTP_PORT/ready`` answers 200 within 2 s.
Standard library only and no other field_service import, so it stays cheap.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 2.0


def check(port: int, timeout: float = TIMEOUT) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False  # HTTPError (503 ...) is a URLError


def main() -> int:
    try:
        port = int(os.environ.get("HTTP_PORT", "8080"))
    except ValueError:
        print("healthcheck: invalid HTTP_PORT", file=sys.stderr)
        return 1
    ok = check(port)
    if not ok:
        print(f"healthcheck: 127.0.0.1:{port}/ready is not 200", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
