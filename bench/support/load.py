"""A small open-loop HTTP load generator (asyncio, raw HTTP/1.1 keep-alive), for fixed offered rates.

Why not locust: on a 2-core machine the load generator shares the CPUs with the API, the worker
and Valkey; locust (gevent, a stats pipeline, a web UI process) costs far more CPU per request
than this does, and its users are closed-loop (a slow answer delays the next request, hiding
queueing: "coordinated omission"). Here request i is due at start + i/rate whatever happened
before; a busy connection never delays it (a new connection is opened instead), and latency is
measured from the DUE time to the last byte of the answer, so any queueing, in the server or in
this generator, counts against the server. The send-to-answer time is kept too.

`closed_loop` is the other kind, for finding a saturation rate: `concurrency` clients, each on its
own keep-alive connection, send the next request as soon as the previous answer is in; the number
of answers per second is the most the server gives at that concurrency (its latencies are
send-to-answer, queueing in the generator is not counted: use open_loop below that rate for them).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    offered_rate: float
    duration: float
    latencies: list[float] = field(default_factory=list)  # due -> answer, seconds
    service: list[float] = field(default_factory=list)  # sent -> answer, seconds
    lag: list[float] = field(default_factory=list)  # due -> sent (generator lateness)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # failed requests (connection error, timeout)
    unsent: int = 0  # due while every one of max_connections was busy: never sent
    connections: int = 0
    elapsed: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


def _request(method: str, path: str, host: str, port: int) -> bytes:
    """One bodiless HTTP/1.1 request, sent as is on a keep-alive connection."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    return (head + "Content-Length: 0\r\nUser-Agent: librarian-bench\r\n\r\n").encode()


async def open_loop(
    host: str,
    port: int,
    path: str,
    *,
    rate: float,
    duration: float,
    method: str = "POST",
    timeout: float = 10.0,
    max_connections: int = 512,
    record: bool = True,
) -> LoadResult:
    request = _request(method, path, host, port)
    result = LoadResult(offered_rate=rate, duration=duration)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    open_count = 0
    clock = time.perf_counter  # uvloop's loop.time() has millisecond granularity

    async def one(due: float) -> None:
        nonlocal open_count
        try:
            if idle:
                reader, writer = idle.pop()
            else:
                if open_count >= max_connections:
                    result.unsent += 1
                    return
                open_count += 1
                result.connections += 1
                reader, writer = await asyncio.open_connection(host, port)
            sent = clock()
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), timeout)
            done = clock()
            idle.append((reader, writer))
        except Exception:  # noqa: BLE001 (any failed request counts as an error; the run goes on)
            result.errors += 1
            open_count -= 1
            return
        if record:
            result.latencies.append(done - due)
            result.service.append(done - sent)
            result.lag.append(sent - due)
            result.statuses[status] = result.statuses.get(status, 0) + 1

    total = int(rate * duration)
    start = clock() + 0.05
    tasks = []
    began = clock()
    for i in range(total):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    result.elapsed = clock() - began
    for _, writer in idle:
        writer.close()
    return result


async def closed_loop(
    host: str,
    port: int,
    path: str,
    *,
    concurrency: int,
    duration: float,
    method: str = "POST",
    timeout: float = 10.0,
    record: bool = True,
) -> LoadResult:
    """`concurrency` clients, one connection each, back to back for `duration` seconds. The result's
    `latencies` and `service` are both send-to-answer; `offered_rate` is 0 (nothing was offered)."""
    request = _request(method, path, host, port)
    result = LoadResult(offered_rate=0.0, duration=duration)
    clock = time.perf_counter

    async def client(stop: float) -> None:
        reader = writer = None
        while clock() < stop:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                    result.connections += 1
                sent = clock()
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), timeout)  # type: ignore[arg-type]
                done = clock()
            except Exception:  # noqa: BLE001 (a failed request counts as an error; the client reconnects)
                result.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
                continue
            if record:
                result.latencies.append(done - sent)
                result.service.append(done - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1
        if writer is not None:
            writer.close()

    began = clock()
    await asyncio.gather(*(client(began + duration) for _ in range(concurrency)))
    result.elapsed = clock() - began
    return result


def _run(coroutine):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coroutine)


def run_closed_loop(*args, **kwargs) -> LoadResult:  # type: ignore[no-untyped-def]
    return _run(closed_loop(*args, **kwargs))


def run_open_loop(*args, **kwargs) -> LoadResult:  # type: ignore[no-untyped-def]
    return _run(open_loop(*args, **kwargs))
