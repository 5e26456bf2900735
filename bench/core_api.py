"""Two of the container issue's figures against dockerd 20.10, alternating in one run:

    python -m pouch.bench.core_api [--runs N] [--json PATH]

    parallel starts   20 containers (busybox sleep, --network none) created and started
                      at once through the API, 20 client threads: the time until the
                      last start answered (removal afterwards is not timed)
    list 100          GET /containers/json?all=1 with 100 containers (created, not
                      started), one keep-alive connection, a block of 20 requests

Targets (issue 10): parallel starts at most 0.4x dockerd, list 100 at most 0.8x.
dockerd (Debian's docker.io, started by hand with its own roots and socket, see
bench/dockerd.py) loads the same busybox archive as pouchd.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pouch.bench.common import (
    MS,
    alternate,
    parser,
    ratio,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.dockerd import dockerd
from pouch.bench.pouchd import pouchd
from pouch.bench.request_floor import UnixConnection, get

PARALLEL = 20
LISTED = 100
LIST_BLOCK = 20
TARGETS = {"parallel starts": 0.4, "list 100": 0.8}
SLEEPER = {"Image": "busybox", "Cmd": ["sleep", "600"], "HostConfig": {"NetworkMode": "none"}}


def call(sock: Path, method: str, path: str, body: Any = None) -> Any:
    conn = UnixConnection(sock, timeout=120)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload,
                     headers={"Content-Type": "application/json"} if payload else {})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:200]!r}")
        return json.loads(data) if data else None
    finally:
        conn.close()


def create_and_start(sock: Path) -> str:
    cid = call(sock, "POST", "/v1.41/containers/create", SLEEPER)["Id"]
    call(sock, "POST", f"/v1.41/containers/{cid}/start")
    return str(cid)


def remove_all(sock: Path, ids: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda cid: call(sock, "DELETE", f"/v1.41/containers/{cid}?force=1"),
                      ids))


def parallel_starts(sock: Path) -> Callable[[], float]:
    def run() -> float:
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            start = time.perf_counter()
            ids = list(pool.map(lambda _: create_and_start(sock), range(PARALLEL)))
            elapsed = time.perf_counter() - start
        remove_all(sock, ids)
        return elapsed
    return run


def list_block(sock: Path) -> Callable[[], list[float]]:
    def run() -> list[float]:
        conn = UnixConnection(sock)
        try:
            get(conn, "/v1.41/containers/json?all=1")  # connect and warm: not measured
            samples = []
            for _ in range(LIST_BLOCK):
                start = time.perf_counter()
                get(conn, "/v1.41/containers/json?all=1")
                samples.append(time.perf_counter() - start)
            return samples
        finally:
            conn.close()
    return run


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=8)
    args = p.parse_args(argv)
    with pouchd() as daemon, dockerd() as docker:
        loaded = docker.docker("load", "-i", str(daemon.base / "busybox.tar"))
        if loaded.returncode != 0:
            raise RuntimeError(f"dockerd load: {loaded.stderr}")
        sockets = {"pouch": daemon.socket, "dockerd": docker.socket}
        starts = alternate(args.runs, {name: parallel_starts(sock)
                                       for name, sock in sockets.items()})
        listed = {name: [call(sock, "POST", "/v1.41/containers/create", SLEEPER)["Id"]
                         for _ in range(LISTED)] for name, sock in sockets.items()}
        lists = alternate(args.runs, {name: list_block(sock) for name, sock in sockets.items()})
        for name, sock in sockets.items():
            remove_all(sock, listed[name])
    results: dict[str, Any] = {}
    rows = []
    for case, samples in (("parallel starts", starts), ("list 100", lists)):
        ours, theirs = summarize(samples["pouch"]), summarize(samples["dockerd"])
        x = ratio(ours["median"], theirs["median"])
        results[case] = {"pouch": ours, "dockerd": theirs, "ratio": x, "target": TARGETS[case]}
        rows.append([case, ours["median"] * MS, ours["p90"] * MS, theirs["median"] * MS,
                     theirs["p90"] * MS, x, TARGETS[case]])
    print(table(["case", "pouch ms", "p90", "dockerd ms", "p90", "x dockerd", "target"], rows))
    write_json(args.json, {"benchmark": "core_api", "unit": "seconds", "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
