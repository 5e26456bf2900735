"""Round trip and messages/s of a 50-byte request through pouch's broker and actor host,
set against raw pyzmq DEALER -> ROUTER -> DEALER in the same run.

    python -m pouch.bench.broker_rtt [--runs N] [--block N] [--json PATH] [--profile DIR]

Every peer is its own process on the same ipc transport: pouch's broker (the
`pouchd broker` role), the stand-in echo actor under the real actor host,
and, from `pouch.bench.peers`, a minimal ROUTER forwarder, a minimal DEALER
echo and a bare actor that speaks pouch's frames on one thread. Four paths
run in alternating blocks:

    raw                RawClient  -> forwarder -> echo          the baseline
    pouch              Client     -> broker    -> actor host    the figure (target <= 1.5x raw)
    client+bare actor  Client     -> broker    -> bare actor    without pykka and the contract
    bare both          BareClient -> broker    -> bare actor    broker and msgpack alone

so the differences of their medians say where pouch's extra time goes. The
actor host serves a request on the service actor's own thread (its pykka
inbox polls the broker socket, see `pouch.actors.host.Host`), as the bare
actor does, so what separates the two is pykka's envelope and dispatch,
contract validation, the Reply and the metrics, not a thread hop.
Besides wall time, each path's CPU time per call is read from every
process's schedstat: one call at a time, that CPU is the critical path.
What msgpack costs per round trip is timed alone in this process. Then each
path's server side is driven pipelined (a window of requests in flight) for
messages/s. `--profile DIR` also samples broker, actor host and client with
py-spy (not a dependency: `pip install py-spy` into .venv).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from pouch.bench import peers
from pouch.bench.common import (
    US,
    alternate,
    children,
    parser,
    ratio,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.procfs import context_switches, cpu_ns
from pouch.bench.pyspy import print_profile, profile_processes
from pouch.broker.client import Client
from pouch.proto import envelope as env

TEXT = "x" * 50
PAYLOAD = TEXT.encode()
TARGET = 1.5
WINDOW = 16
START_TIMEOUT = 20.0


@dataclass
class Topology:
    broker: str            # pouch's broker endpoint
    raw: str               # the raw forwarder's endpoint
    pids: dict[str, int]   # role -> pid, for the profiler


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    base = Path(tempfile.mkdtemp(prefix="pb-", dir="/tmp"))
    run_dir = base / "run"
    broker_ep = f"ipc://{run_dir / 'broker.sock'}"
    raw_ep = f"ipc://{base / 'raw.sock'}"
    log = open(base / "peers.log", "ab")  # noqa: SIM115 - the children keep it
    try:
        with children() as procs:
            def start(argv: list[str]) -> int:
                procs.append(subprocess.Popen(argv, stdout=log, stderr=log,
                                              stdin=subprocess.DEVNULL))
                return procs[-1].pid

            pids = {
                "broker": start(broker_argv(base, run_dir)),
                "forwarder": start(python_module(
                    "pouch.bench.peers", "forwarder", raw_ep)),
            }
            wait_for_broker(broker_ep)
            pids["actor host"] = start(python_module(
                "pouch.tests.support.standin", broker_ep))
            pids["bare actor"] = start(python_module(
                "pouch.bench.peers", "bare-actor", broker_ep))
            pids["echo"] = start(python_module("pouch.bench.peers", "echo", raw_ep))
            wait_for_services(broker_ep, ("echo", peers.BARE_SERVICE), procs)
            wait_for_raw(raw_ep)
            yield Topology(broker_ep, raw_ep, pids)
    finally:
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def broker_argv(base: Path, run_dir: Path) -> list[str]:
    return python_module("pouch.actors.supervisor.main", "--home-dir", str(base / "home"),
                         "--exec-root-dir", str(run_dir), "--config-file", "", "broker")


def wait_for_broker(endpoint: str) -> None:
    client = Client(endpoint, timeout=START_TIMEOUT)
    try:
        client.call("broker", "ping")
    finally:
        client.close()


def wait_for_services(endpoint: str, names: tuple[str, ...],
                      procs: list[subprocess.Popen[Any]]) -> None:
    client = Client(endpoint, timeout=2.0)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a peer exited: {dead}")
            services = client.call("broker", "services")
            if all((services.get(n) or {}).get("workers") for n in names):
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError(f"{names} did not register with the broker in {START_TIMEOUT:.0f} s")


def wait_for_raw(endpoint: str) -> None:
    """Until the echo has said HELLO the forwarder drops messages: probe, then drain."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            sock.send(PAYLOAD)
            if sock.poll(100):
                while sock.poll(200):
                    sock.recv()
                return
        raise RuntimeError("the raw echo did not answer")
    finally:
        sock.close(linger=0)


# -- the measured paths ---------------------------------------------------------


@dataclass
class Route:
    """One way a request can travel: how to make one call, and how to pipeline."""

    call: Callable[[], Any]
    send: Callable[[], None] | None = None
    receive: Callable[[], Any] | None = None


def paths(top: Topology) -> tuple[dict[str, Route], list[Callable[[], None]]]:
    pouch_client = Client(top.broker)
    raw = peers.RawClient(top.raw)
    bare_to_host = peers.BareClient(top.broker, "echo")
    bare_to_bare = peers.BareClient(top.broker, peers.BARE_SERVICE)
    closers = [pouch_client.close, raw.close, bare_to_host.close, bare_to_bare.close]
    for name, result in (("pouch", pouch_client.call("echo", "echo", {"text": TEXT})),
                         ("client+bare actor",
                          pouch_client.call(peers.BARE_SERVICE, "echo", {"text": TEXT})),
                         ("bare both", bare_to_bare.call(TEXT)), ("raw", raw.call(PAYLOAD))):
        if result not in (TEXT, PAYLOAD):
            raise RuntimeError(f"{name}: echo answered {result!r}")
    found = {
        "raw": Route(lambda: raw.call(PAYLOAD), lambda: raw.send(PAYLOAD), raw.receive),
        "pouch": Route(lambda: pouch_client.call("echo", "echo", {"text": TEXT}),
                       lambda: bare_to_host.send(TEXT), bare_to_host.receive),
        "client+bare actor": Route(
            lambda: pouch_client.call(peers.BARE_SERVICE, "echo", {"text": TEXT})),
        "bare both": Route(lambda: bare_to_bare.call(TEXT), lambda: bare_to_bare.send(TEXT),
                           bare_to_bare.receive),
    }
    return found, closers


class CpuMeter:
    """CPU time and context switches of each process while one path's blocks ran."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent: dict[str, dict[str, int]] = {}
        self.switches: dict[str, dict[str, int]] = {}
        self.calls: dict[str, int] = {}

    def around(self, path: str, block: Callable[[], list[float]]) -> Callable[[], list[float]]:
        def measured() -> list[float]:
            cpu_before = {name: cpu_ns(pid) for name, pid in self.pids.items()}
            sw_before = {name: context_switches(pid) for name, pid in self.pids.items()}
            samples = block()
            spent = self.spent.setdefault(path, dict.fromkeys(self.pids, 0))
            switches = self.switches.setdefault(path, dict.fromkeys(self.pids, 0))
            for name, pid in self.pids.items():
                spent[name] += cpu_ns(pid) - cpu_before[name]
                switches[name] += context_switches(pid) - sw_before[name]
            self.calls[path] = self.calls.get(path, 0) + len(samples)
            return samples
        return measured

    def per_call_us(self) -> dict[str, dict[str, float]]:
        return {path: {name: ns / 1e3 / self.calls[path] for name, ns in spent.items()}
                for path, spent in self.spent.items()}

    def switches_per_call(self) -> dict[str, dict[str, float]]:
        return {path: {name: n / self.calls[path] for name, n in counts.items()}
                for path, counts in self.switches.items()}


def sequential(call: Callable[[], Any], n: int) -> Callable[[], list[float]]:
    def block() -> list[float]:
        out = []
        clock = time.perf_counter
        for _ in range(n):
            start = clock()
            call()
            out.append(clock() - start)
        return out
    return block


def pipelined(send: Callable[[], None], receive: Callable[[], Any], total: int,
              window: int) -> Callable[[], float]:
    def block() -> float:
        start = time.perf_counter()
        sent = 0
        for _ in range(min(window, total)):
            send()
            sent += 1
        for _ in range(total):
            receive()
            if sent < total:
                send()
                sent += 1
        return total / (time.perf_counter() - start)
    return block


def codec() -> None:
    """What one round trip encodes and decodes: request and reply, each at three peers."""
    body = env.request(1, "echo", {"text": TEXT}, time.time() + 30)
    env.unpack(body)
    env.unpack(body)
    reply = env.ok_reply(1, TEXT)
    env.unpack(reply)
    env.unpack(reply)


def per_block_rate(samples: list[float], block: int) -> list[float]:
    return [block / sum(samples[i:i + block]) for i in range(0, len(samples), block)]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=10)
    p.add_argument("--block", type=int, default=500, help="calls per block (default 500)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="also sample broker, actor host and client with py-spy into DIR")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    with topology() as top:
        found, closers = paths(top)
        try:
            meter = CpuMeter({**top.pids, "client (this process)": os.getpid()})
            rtt = alternate(args.runs, {name: meter.around(name, sequential(path.call, args.block))
                                        for name, path in found.items()})
            codec_times = alternate(args.runs, {"codec": sequential(codec, args.block)})["codec"]
            rates = alternate(args.runs, {
                name: pipelined(path.send, path.receive, args.block * 4, WINDOW)
                for name, path in found.items() if path.send and path.receive})
            profile = None
            if args.profile:
                profile = profile_processes(
                    {"broker": top.pids["broker"], "actor host": top.pids["actor host"],
                     "client": None}, found["pouch"].call, args.profile, args.profile_seconds)
        finally:
            for close in closers:
                close()
    return report(args, rtt, rates, meter, codec_times, profile)


def report(args: Any, rtt: dict[str, list[float]], rates: dict[str, list[float]],
           meter: CpuMeter, codec_times: list[float], profile: dict[str, Any] | None) -> int:
    raw = summarize(rtt["raw"])
    raw_rate = summarize(per_block_rate(rtt["raw"], args.block))
    results: dict[str, Any] = {"round_trip": {}, "pipelined": {}}
    rows = []
    for name, values in rtt.items():
        s = summarize(values)
        rate = summarize(per_block_rate(values, args.block))
        results["round_trip"][name] = {
            **s, "calls_per_s_median": rate["median"],
            "ratio_median": ratio(s["median"], raw["median"]),
            "ratio_p99": ratio(s["p99"], raw["p99"]),
            "ratio_rate": ratio(raw_rate["median"], rate["median"])}
        rows.append([name, s["n"], s["median"] * US, s["p90"] * US, s["p99"] * US,
                     rate["median"], ratio(s["median"], raw["median"])])
    print(f"round trip of a {len(PAYLOAD)}-byte request, one in flight "
          f"({args.runs} alternating blocks of {args.block} per path)")
    print(table(["path", "n", "median us", "p90 us", "p99 us", "calls/s", "x raw"], rows))

    med = {name: results["round_trip"][name]["median"] * US for name in rtt}
    print("\nwhere pouch's extra time goes (differences of medians, us):")
    print(table(["part", "us", "share"], [
        [name, value, ratio(value, med["pouch"] - med["raw"])]
        for name, value in (
            ("actor host (pykka, validation, Reply, metrics)",
             med["pouch"] - med["client+bare actor"]),
            ("Client extras (monitor poll, retries)", med["client+bare actor"] - med["bare both"]),
            ("broker, and pouch's frames and msgpack at all three peers",
             med["bare both"] - med["raw"]))]))

    cpu = meter.per_call_us()
    switches = meter.switches_per_call()
    for title, figures in (("CPU per call by process (us, all its threads, zmq's I/O thread "
                            "included)", cpu),
                           ("context switches per call by process", switches)):
        # A process that only heartbeats while another path runs is left out of its row.
        procs = [n for n in meter.pids if any(figures[p][n] >= 0.5 for p in figures)]
        print(f"\n{title}:")
        print(table(["path", *procs, "total"],
                    [[path, *(figures[path][n] if figures[path][n] >= 0.5 else "" for n in procs),
                      sum(figures[path].values())] for path in figures]))
    results["cpu_us_per_call"] = cpu
    results["context_switches_per_call"] = switches

    codec_s = summarize(codec_times)
    results["msgpack_per_round_trip"] = codec_s
    print(f"\nmsgpack per round trip (2 packs + 4 unpacks), alone in this process: "
          f"median {codec_s['median'] * US:.1f} us, p99 {codec_s['p99'] * US:.1f} us")

    raw_pipe = summarize(rates["raw"])
    rows = []
    for name, values in rates.items():
        s = summarize(values)
        results["pipelined"][name] = {**s, "ratio_to_raw": ratio(s["median"], raw_pipe["median"])}
        rows.append([name, len(values), s["median"], s["min"], ratio(raw_pipe["median"],
                                                                    s["median"])])
    print(f"\nmessages/s with {WINDOW} requests in flight (a bare client drives each server side;"
          " 'pouch' = broker + actor host)")
    print(table(["path", "blocks", "median msg/s", "min msg/s", "raw/path"], rows))

    pouch = results["round_trip"]["pouch"]
    verdict = "met" if pouch["ratio_median"] <= TARGET else "NOT met"
    print(f"\ntarget pouch <= {TARGET}x raw round trip: {verdict} "
          f"(median {pouch['ratio_median']:.2f}x, p99 {pouch['ratio_p99']:.2f}x)")
    if profile:
        print_profile(profile)
        results["profile"] = profile
    write_json(args.json, {"benchmark": "broker_rtt", "unit": "seconds", "payload": len(PAYLOAD),
                           "block": args.block, "window": WINDOW, "target": TARGET,
                           "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
