"""Listing 100 containers on pouchd, with and without sizes.

    python -m pouch.bench.list_size [--runs N] [--json PATH]

`GET /containers/json?all=1` is what `docker ps -a` asks; with `size=1` (`docker
ps -s`) every row also carries SizeRw and SizeRootFs, which cost containerd
snapshot calls. The first must not pay for the second: its figures are the
ones to compare across changes. `docker ps -a` (a new CLI process each time)
is timed too.
"""

from __future__ import annotations

import time
from pathlib import Path

from pouch.bench.common import MS, parser, run_main, summarize, table, write_json
from pouch.bench.pouchd import pouchd
from pouch.bench.request_floor import UnixConnection, get
from pouch.tests.support.daemon import PouchDaemon

CONTAINERS = 100


def timed(sock: Path, path: str, n: int) -> list[float]:
    """`n` requests on one kept-alive connection, each timed to the end of its answer."""
    conn = UnixConnection(sock)
    try:
        get(conn, path)  # connect and warm: not measured
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            get(conn, path)
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        conn.close()


def timed_cli(daemon: PouchDaemon, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        daemon.docker("ps", "-a", "-q")
        samples.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None) -> int:
    ap = parser(__doc__ or "", default_runs=200)
    args = ap.parse_args(argv)
    with pouchd() as daemon:
        for i in range(CONTAINERS):
            daemon.docker("create", "--name", f"bench-list-{i}", "busybox", "true")
        rows = []
        results = {}
        for label, path in (("containers/json?all=1", "/v1.41/containers/json?all=1"),
                            ("containers/json?all=1&size=1",
                             "/v1.41/containers/json?all=1&size=1")):
            runs = args.runs if "size" not in path else max(10, args.runs // 10)
            stats = summarize(timed(daemon.socket, path, runs))
            results[label] = stats
            rows.append([label, runs, stats["median"] * MS, stats["p90"] * MS])
        cli = summarize(timed_cli(daemon, 20))
        results["docker ps -a"] = cli
        rows.append(["docker ps -a", 20, cli["median"] * MS, cli["p90"] * MS])
        print(table(["request (100 containers)", "n", "median ms", "p90 ms"], rows))
        write_json(args.json, {"containers": CONTAINERS, "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
