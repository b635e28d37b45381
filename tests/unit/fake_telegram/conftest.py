from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_support import Client, FakeTelegram


@pytest.fixture()
def server() -> Iterator[FakeTelegram]:
    srv = FakeTelegram("127.0.0.1", 0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def client(server: FakeTelegram) -> Client:
    return Client(server.url)
