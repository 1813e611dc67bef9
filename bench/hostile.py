"""The gateway under hostile traffic: throughput kept for a legitimate client, connections held.

Starts ``pistond-gateway`` (no daemon needed: the legitimate client asks ``GET /``) and measures,
each for ``--seconds``:

1. the legitimate client alone (``--clients`` keep-alive connections calling ``GET /``);
2. the same while attackers (another process) replay the malformed battery of
   ``tests/gateway/test_hostile.py`` (HTTP/1.1 and WebSocket openings) as fast as they can;
3. the same while ``--slow`` slowloris connections (spread over loopback addresses, as many
   clients) each trickle a request head, one byte per second: how many the gateway holds at
   once, and that each ends with its 408.

Prints the figures as JSON. Run from the repository (any user)::

    .venv/bin/python bench/hostile.py [--seconds 10] [--slow 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway.raw import (
    HTTP_BATTERY,
    WS_BATTERY,
    exchange,
    open_raw,
    upgrade_head,
)

HEAD_TIMEOUT_MS = 5000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_gateway(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """A gateway process on a free port, serving; its daemon socket does not exist."""
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PISTON_")}
    environ.update(
        PISTON_BIND_ADDRESS=f"127.0.0.1:{port}",
        PISTON_SOCKET=f"{directory}/none.sock",
        PISTON_GATEWAY_ALLOW_ROOT="true",
        PISTON_GATEWAY_HEAD_TIMEOUT=str(HEAD_TIMEOUT_MS),
        PISTON_LOG_LEVEL="ERROR",
    )
    process = subprocess.Popen([sys.executable, "-m", "pistond.gateway"], env=environ)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def legitimate(url: str, clients: int, seconds: float) -> dict[str, float]:
    """Requests per second and failures of ``clients`` keep-alive clients for ``seconds``."""
    served = failed = 0
    latencies: list[float] = []

    async def client() -> None:
        nonlocal served, failed
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            with trio.move_on_after(seconds):
                while True:
                    started = time.monotonic()
                    try:
                        answer = await http.get("/")
                    except httpx.HTTPError:
                        failed += 1
                        continue
                    latencies.append(time.monotonic() - started)
                    if answer.status_code == 200:
                        served += 1
                    else:
                        failed += 1

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    return {
        "requests_per_second": round(served / seconds, 1),
        "failed": failed,
        "p99_ms": round(p99 * 1000, 1),
    }


async def battery(url: str, attackers: int, stop: trio.Event) -> int:
    """Replay the malformed battery with ``attackers`` connections at a time until ``stop``."""
    sent = 0
    cases = [(payload, False) for _, payload, _ in HTTP_BATTERY]
    cases += [(payload, True) for _, payload in WS_BATTERY]

    async def attacker(offset: int) -> None:
        nonlocal sent
        index = offset
        while not stop.is_set():
            payload, upgraded = cases[index % len(cases)]
            index += attackers
            chunks = (upgrade_head(), payload) if upgraded else (payload,)
            await exchange(url, *chunks, wait=0.5, pause=0.01)
            sent += 1

    async with trio.open_nursery() as nursery:
        for offset in range(attackers):
            nursery.start_soon(attacker, offset)
    return sent


async def slowloris(url: str, count: int, seconds: float) -> dict[str, Any]:
    """``count`` connections trickling a head; how many were open at once, and their ends."""
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    open_now = peak = refused = timed_out = 0

    async def one(index: int) -> None:
        nonlocal open_now, peak, refused, timed_out
        source = f"127.0.1.{index % 200 + 1}"
        try:
            stream = await open_raw(url, source)
        except OSError:
            refused += 1
            return
        open_now += 1
        peak = max(peak, open_now)
        answer = b""
        async with stream:
            try:
                for byte in head:
                    await stream.send_all(bytes([byte]))
                    with trio.move_on_after(1):
                        data = await stream.receive_some(4096)
                        if not data:
                            break
                        answer += data
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        open_now -= 1
        if b" 408 " in answer:
            timed_out += 1
        elif answer:
            refused += 1

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(one, index)
            if index % 50 == 49:
                await trio.sleep(0.05)
        figures = await legitimate(url, 4, seconds)
    return {"connections": count, "held_at_once": peak, "answered_408": timed_out,
            "refused": refused, "legitimate_meanwhile": figures}  # fmt: skip


async def attack_for(url: str, attackers: int, seconds: float) -> int:
    """The battery for ``seconds`` (the attacker process)."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_after, stop, seconds)
        sent = await battery(url, attackers, stop)
    return sent


async def _stop_after(stop: trio.Event, seconds: float) -> None:
    await trio.sleep(seconds)
    stop.set()


async def measure(url: str, seconds: float, clients: int, attackers: int, slow: int) -> Any:
    alone = await legitimate(url, clients, seconds)
    attacker = await trio.lowlevel.open_process(
        [sys.executable, __file__, "--attack", url, "--seconds", str(seconds),
         "--attackers", str(attackers)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    under_battery = await legitimate(url, clients, seconds)
    assert attacker.stdout is not None
    output = b""
    while chunk := await attacker.stdout.receive_some(4096):
        output += chunk
    await attacker.wait()
    sent = [int(output)]
    held = await slowloris(url, slow, seconds)
    return {
        "legitimate_alone": alone,
        "legitimate_under_battery": under_battery,
        "battery_openings_sent": sent[0],
        "battery_openings_per_second": round(sent[0] / seconds, 1),
        "slowloris": held,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--attackers", type=int, default=32)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--attack", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        print(trio.run(attack_for, args.attack, args.attackers, args.seconds))
        return 0
    with tempfile.TemporaryDirectory(prefix="pistond-hostile-") as directory:
        process, url = start_gateway(directory)
        try:
            figures = trio.run(measure, url, args.seconds, args.clients, args.attackers, args.slow)
            figures["gateway_alive"] = process.poll() is None
        finally:
            process.terminate()
            process.wait(15)
    print(json.dumps(figures, indent=2))
    return 0 if figures["gateway_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
