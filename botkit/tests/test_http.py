"""The kit's HTTP server: keep-alive (the deploy's nginx keeps upstream
connections), a graceful close that finishes the requests in flight, and the
refusals of what it does not understand."""

from __future__ import annotations

import asyncio

from fieldservice_botkit.http import MAX_BODY, HttpServer


async def _serve(handler):
    server = HttpServer(handler, "127.0.0.1", 0)
    await server.start()
    port = server._server.sockets[0].getsockname()[1]
    return server, port


async def _exchange(reader, writer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


def test_keep_alive_serves_several_requests_on_one_connection():
    seen = []

    async def handler(method, path, headers, body):
        seen.append((method, path, body))
        return 200, {"n": len(seen)}

    async def main():
        server, port = await _serve(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        one = await _exchange(reader, writer, b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        two = await _exchange(reader, writer, b"POST /webhook?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        three = await _exchange(reader, writer, b"GET /health HTTP/1.0\r\n\r\n")
        assert await reader.read() == b"", "HTTP/1.0 without keep-alive: closed after the answer"
        writer.close()
        await server.close(1)
        return one, two, three

    one, two, three = asyncio.run(main())
    assert one[0] == 200 and one[1]["connection"] == "keep-alive" and one[2] == b'{"n": 1}'
    assert two[0] == 200 and two[2] == b'{"n": 2}'
    assert three[1]["connection"] == "close"
    assert seen == [("GET", "/ready", b""), ("POST", "/webhook", b"{}"), ("GET", "/health", b"")]


def test_close_finishes_the_request_in_flight_and_refuses_new_connections():
    async def handler(method, path, headers, body):
        await asyncio.sleep(0.5)
        return 200, {"done": True}

    async def main():
        server, port = await _serve(handler)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        pending = asyncio.create_task(_exchange(reader, writer, b"GET /slow HTTP/1.1\r\n\r\n"))
        await asyncio.sleep(0.1)
        ended = await server.close(5)
        answer = await pending
        idle_closed = await asyncio.wait_for(idle_reader.read(), 2)
        try:
            await asyncio.open_connection("127.0.0.1", port)
            refused = False
        except OSError:
            refused = True
        writer.close()
        idle_writer.close()
        return ended, answer, idle_closed, refused

    ended, answer, idle_closed, refused = asyncio.run(main())
    assert ended is True
    assert answer[0] == 200 and answer[2] == b'{"done": true}' and answer[1]["connection"] == "close"
    assert idle_closed == b"", "an idle kept-alive connection is closed"
    assert refused


def test_what_it_does_not_understand_is_refused_with_a_status():
    async def handler(method, path, headers, body):
        raise AssertionError("never called")

    async def main():
        server, port = await _serve(handler)
        out = []
        for request in (b"POST /webhook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                        f"POST /webhook HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
                        b"POST /webhook HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                        b"nonsense\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            out.append((await _exchange(reader, writer, request))[0])
            writer.close()
        await server.close(1)
        return out

    assert asyncio.run(main()) == [411, 413, 400, 400]


def test_a_handler_that_raises_answers_500_and_keeps_serving():
    calls = []

    async def handler(method, path, headers, body):
        calls.append(path)
        if path == "/bad":
            raise RuntimeError("bug")
        return 200, {}

    async def main():
        server, port = await _serve(handler)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bad = await _exchange(reader, writer, b"GET /bad HTTP/1.1\r\n\r\n")
        good = await _exchange(reader, writer, b"GET /good HTTP/1.1\r\n\r\n")
        writer.close()
        await server.close(1)
        return bad[0], good[0]

    assert asyncio.run(main()) == (500, 200)
    assert calls == ["/bad", "/good"]
