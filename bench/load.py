"""A small HTTP/1.1 load generator (asyncio streams, no client library in the hot loop), run in a
process of its own so it does not share the benchmark's interpreter.

    results = run_requests("http://127.0.0.1:8000", [Request("POST", "/v1/bookings", headers, body)],
                           concurrency=32)

`concurrency` connections each send their next request as soon as the previous answer is in
(a closed loop, like wrk). gunicorn's sync workers close the connection after every answer;
the client then reconnects, as wrk does. `connect_first=True` opens every connection before any
request is written, so `concurrency` requests really are in flight at once (the hot-seat test).

The child process is started with `spawn`, which imports the caller's main module again: run
it from a module with an `if __name__ == "__main__":` guard (every bench module has one).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Answer:
    started: float  # epoch seconds, when the request was written
    finished: float  # epoch seconds, when the whole answer was read
    status: int  # 0: the connection failed
    booking_id: str | None = None


def run_requests(base_url: str, requests: Sequence[Request], *, concurrency: int,
                 connect_first: bool = False, timeout: float = 120) -> list[Answer]:
    """Send `requests` with `concurrency` connections from a separate process; answers in order."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run, base_url, list(requests), concurrency, connect_first, timeout).result()


def _run(base_url: str, requests: list[Request], concurrency: int, connect_first: bool,
         timeout: float) -> list[Answer]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = concurrency + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))
    return asyncio.run(_drive(base_url, requests, concurrency, connect_first, timeout))


async def _drive(base_url: str, requests: list[Request], concurrency: int, connect_first: bool,
                 timeout: float) -> list[Answer]:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    answers: list[Answer | None] = [None] * len(requests)
    bodies: list[bytes] = [b""] * len(requests)
    next_index = 0
    opened = [await _connect(host, port) for _ in range(min(concurrency, len(requests)))] if connect_first else []
    go = asyncio.Event()

    async def client(slot: int) -> None:
        nonlocal next_index
        conn = opened[slot] if connect_first else None
        await go.wait()
        while next_index < len(requests):
            index = next_index
            next_index += 1
            request = requests[index]
            started = time.time()
            try:
                if conn is None:
                    conn = await _connect(host, port)
                status, body, keep = await asyncio.wait_for(_exchange(conn, host, request), timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                status, body, keep = 0, b"", False
            answers[index] = Answer(started, time.time(), status)
            bodies[index] = body
            if not keep and conn is not None:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    tasks = [asyncio.create_task(client(i)) for i in range(min(concurrency, len(requests)))]
    go.set()
    await asyncio.gather(*tasks)
    out = []
    for answer, body in zip(answers, bodies, strict=True):
        assert answer is not None
        booking_id = None
        if body[:1] == b"{":
            try:
                booking_id = json.loads(body).get("id")
            except ValueError:
                pass
        out.append(Answer(answer.started, answer.finished, answer.status, booking_id))
    return out


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, limit=1 << 20)


async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], host: str,
                    request: Request) -> tuple[int, bytes, bool]:
    reader, writer = conn
    head = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(request.body)}"]
    head += [f"{k}: {v}" for k, v in request.headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + request.body)
    await writer.drain()
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length, keep = 0, True
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep


def booking_request(key: str, body: dict[str, object], idempotency_key: str) -> Request:
    return Request("POST", "/v1/bookings", {
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": idempotency_key,
    }, json.dumps(body).encode())
