"""100,000 malformed messages against the broker, while real requests go through it.

    python -m pouch.bench.broker_fuzz [--messages N] [--calls N] [--json PATH]

The broker runs in its own process (as `pouchd broker` does), with the stand-in
echo actor under the real actor host. First the echo round trip is timed
unloaded; then a thread floods the client socket with malformed messages
(random frames, bodies of the wrong types, ids out of range, actor commands,
forged replies and events, subscriptions with bad fields) while the same
calls are timed again. Targets: the broker never exits, its RSS grows by at
most 10 MiB, and the loaded p99 is at most 2x the unloaded one.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from pouch.bench.common import parser, ratio, summarize, table, write_json
from pouch.bench.procfs import memory
from pouch.broker.client import Client
from pouch.proto import envelope as env

HEADERS = [env.CLIENT, env.ACTOR, b"", b"junk"]
COMMANDS = [env.REQ, env.REP, env.CANCEL, env.SUB, env.READY, env.PUB, env.HEARTBEAT, env.BYE]
SERVICES = [b"echo", b"broker", b"supervisor", b"nosuch", b"", b"\xff" * 70]
ODD: list[Any] = [1e300, -1, 2**64 - 1, "7", None, True, [], {}, b"\x00", float("nan")]


def malformed(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(5)
    if kind == 0:
        return [rng.randbytes(rng.randrange(1, 32)) for _ in range(rng.randrange(1, 6))]
    body: dict[str, Any] = {
        "id": rng.choice(ODD), "method": rng.choice(["echo", 5, None, "x" * 99]),
        "args": rng.choice([{}, [], "a", {"text": rng.choice(ODD)}]),
        "deadline": rng.choice([*ODD, 0])}
    if kind == 1:
        body = {"id": rng.randrange(2**20), "fields": {"Type": rng.choice(ODD)}}
    elif kind == 2:
        body = {"pid": rng.choice(ODD), "token": rng.choice(ODD), "methods": rng.choice(ODD)}
    packed = env.pack(body) if kind != 3 else rng.randbytes(rng.randrange(64))
    return [rng.choice(HEADERS), rng.choice(COMMANDS), rng.choice(SERVICES), packed]


def flood(endpoint: str, count: int, seed: int = 8) -> None:
    """Send `count` malformed messages (in a process of its own: no GIL shared with
    the timed client)."""
    rng = random.Random(seed)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    socks = [ctx.socket(zmq.DEALER) for _ in range(8)]
    for sock in socks:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(endpoint)
    try:
        for i in range(count):
            sock = socks[i % len(socks)]
            sock.send_multipart(malformed(rng))
            while sock.poll(0):
                sock.recv_multipart()  # the broker's refusals
    finally:
        for sock in socks:
            sock.close(linger=0)


def timed_calls(client: Client, n: int | None,
                while_alive: multiprocessing.process.BaseProcess | None = None) -> list[float]:
    took: list[float] = []
    while (n is not None and len(took) < n) or (while_alive is not None
                                                 and while_alive.is_alive()):
        start = time.perf_counter()
        assert client.call("echo", "echo", {"text": "x" * 40}) == "x" * 40
        took.append(time.perf_counter() - start)
    return took


def rss(pid: int) -> float:
    return memory(pid)["rss"] / 2**20


def main() -> int:
    p = parser(__doc__.splitlines()[0], default_runs=1)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--calls", type=int, default=3000)
    opts = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pouch-fuzz-"))
    endpoint = f"ipc://{folder}/broker.sock"
    broker = subprocess.Popen([sys.executable, "-c", "import sys; from pouch.broker.router "
                               "import Broker; Broker(sys.argv[1]).run()", endpoint])
    actor = subprocess.Popen([sys.executable, "-m", "pouch.tests.support.standin", endpoint])
    client = Client(endpoint, timeout=10)
    try:
        client.call("echo", "echo", {"text": "ready?"}, timeout=15)
        timed_calls(client, 300)  # warm-up
        unloaded = timed_calls(client, opts.calls)
        before = rss(broker.pid)
        sender = multiprocessing.get_context("spawn").Process(
            target=flood, args=(endpoint, opts.messages))
        started = time.monotonic()
        sender.start()
        loaded = timed_calls(client, None, sender)
        sender.join()
        elapsed = time.monotonic() - started
        after = rss(broker.pid)
        crashed = broker.poll() is not None or actor.poll() is not None
        loaded += timed_calls(client, max(0, opts.calls - len(loaded)))
    finally:
        client.close()
        for proc in (actor, broker):
            proc.terminate()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
    u, ld = summarize(unloaded), summarize(loaded)
    result = {"messages": opts.messages, "seconds": elapsed, "crashed": crashed,
              "rss_before_mib": before, "rss_after_mib": after, "rss_growth_mib": after - before,
              "unloaded": u, "loaded": ld, "p99_ratio": ratio(ld["p99"], u["p99"])}
    print(table(["case", "n", "median ms", "p99 ms"],
                [[name, s["n"], s["median"] * 1e3, s["p99"] * 1e3]
                 for name, s in (("unloaded", u), ("under fuzz", ld))]))
    print(f"{opts.messages} malformed messages in {elapsed:.1f} s; crashed: {crashed}; broker RSS "
          f"{before:.1f} -> {after:.1f} MiB (+{after - before:.1f}); p99 ratio "
          f"{result['p99_ratio']:.2f} (targets: no crash, <= 10 MiB, <= 2x)")
    write_json(opts.json, result)
    ok = not crashed and after - before <= 10 and result["p99_ratio"] <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
