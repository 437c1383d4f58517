#!/usr/bin/env python3
"""Idle and slow clients against a collector, for bench/idle-connections/run.sh.

Holds IDLE connections that send nothing, SLOW_HEADERS that send a request's headers one
byte a second, and SLOW_BODIES that send whole headers and then their body one byte a
second; each is opened again as soon as the collector closes it, until DURATION seconds
have passed. Prints one line of key=value pairs: how many of each were open at the
peak, how many the collector closed, after how long (median and max, seconds), and the
status lines it answered before closing.

    attack.py HOST:PORT DURATION IDLE SLOW_HEADERS SLOW_BODIES
"""

import asyncio
import statistics
import sys
import time


class Kind:
    def __init__(self, name):
        self.name = name
        self.open = 0
        self.peak = 0
        self.closed = 0
        self.lifetimes = []
        self.statuses = {}
        self.connect_errors = 0

    def line(self):
        life = sorted(self.lifetimes)
        med = statistics.median(life) if life else 0
        top = life[-1] if life else 0
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items())) or "none"
        return (
            f"{self.name}_peak={self.peak} {self.name}_closed={self.closed} "
            f"{self.name}_closed_after_median_s={med:.1f} {self.name}_closed_after_max_s={top:.1f} "
            f"{self.name}_answers={statuses} {self.name}_connect_errors={self.connect_errors}"
        )


HEADERS = b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


async def one(host, port, kind, end, dribble):
    """One connection at a time, reopened when closed, until `end`."""
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            kind.connect_errors += 1
            await asyncio.sleep(0.5)
            continue
        opened = time.monotonic()
        kind.open += 1
        kind.peak = max(kind.peak, kind.open)
        answer = b""
        try:
            sender = asyncio.ensure_future(quietly(dribble)(writer, end))
            reading = asyncio.ensure_future(reader.read(4096))
            done, _ = await asyncio.wait(
                {reading}, timeout=max(0.0, end - time.monotonic())
            )
            if reading in done:
                answer = reading.result()
                # Read to the end, so that the close is what is timed.
                while answer and not reader.at_eof():
                    more = await asyncio.wait_for(reader.read(4096), end - time.monotonic() + 1)
                    if not more:
                        break
                    answer += more
                kind.closed += 1
                kind.lifetimes.append(time.monotonic() - opened)
                status = answer.split(b"\r\n", 1)[0].split(b" ")[1:2]
                key = status[0].decode() if status else "closed"
                kind.statuses[key] = kind.statuses.get(key, 0) + 1
            else:
                reading.cancel()
            sender.cancel()
        except (OSError, asyncio.TimeoutError):
            kind.closed += 1
            kind.lifetimes.append(time.monotonic() - opened)
            kind.statuses["reset"] = kind.statuses.get("reset", 0) + 1
        finally:
            kind.open -= 1
            writer.close()


def quietly(dribble):
    """A sender whose connection the collector closed just stops."""

    async def run(writer, end):
        try:
            await dribble(writer, end)
        except OSError:
            pass

    return run


async def idle(writer, end):
    await asyncio.sleep(max(0.0, end - time.monotonic()))


async def slow_headers(writer, end):
    for b in HEADERS:
        if time.monotonic() >= end:
            return
        writer.write(bytes([b]))
        await writer.drain()
        await asyncio.sleep(1)


async def slow_body(writer, end):
    writer.write(HEADERS + b"Content-Length: 100000\r\n\r\n")
    await writer.drain()
    while time.monotonic() < end:
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(1)


async def main():
    addr, duration, n_idle, n_headers, n_bodies = sys.argv[1:6]
    host, port = addr.rsplit(":", 1)
    end = time.monotonic() + float(duration)
    kinds = [
        (Kind("idle"), int(n_idle), idle),
        (Kind("slow_headers"), int(n_headers), slow_headers),
        (Kind("slow_bodies"), int(n_bodies), slow_body),
    ]
    tasks = []
    for kind, n, dribble in kinds:
        for i in range(n):
            tasks.append(asyncio.ensure_future(one(host, int(port), kind, end, dribble)))
            # Connect in waves, so that the listen backlog is not what refuses them.
            if i % 500 == 499:
                await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    print(" ".join(k.line() for k, _, _ in kinds), flush=True)


asyncio.run(main())
