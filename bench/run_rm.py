"""`docker run --rm busybox true` against pouch, set against `ctr run --rm` on the same containerd.

    python -m pouch.bench.run_rm [--runs N] [--json PATH]

Both are Go CLIs that start, talk to a daemon over a unix socket and wait for
the container to exit and be removed, so the ratio is pouch's own cost
(gateway, broker, actors) over containerd's. Runs alternate: ctr, docker,
docker --network none, ctr, ...
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Callable

from pouch.bench.common import (
    MS,
    alternate,
    parser,
    ratio,
    require,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.pouchd import pouchd
from pouch.tests.support.daemon import PouchDaemon

IMAGE = "docker.io/library/busybox:latest"
NAMESPACE = "pouch"
# Figures from the issue, measured on another machine: context, not a baseline.
REFERENCE_MS = {"ctr run --rm": 87.0, "dockerd 20.10 run --rm": 240.0,
                "dockerd 20.10 run --rm --network none": 185.0}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds `argv` took; it must succeed."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return elapsed


def cases(daemon: PouchDaemon) -> dict[str, Callable[[], float]]:
    ids = itertools.count()
    prefix = f"bench-{os.getpid()}-"
    ctr = ["ctr", "--address", str(daemon.containerd_socket), "--namespace", NAMESPACE]
    docker_env = {**os.environ, "DOCKER_HOST": daemon.host,
                  "DOCKER_CONFIG": str(daemon.docker_config)}

    def ctr_run() -> float:
        return timed([*ctr, "run", "--rm", IMAGE, f"{prefix}{next(ids)}", "true"])

    def docker_run(*flags: str) -> Callable[[], float]:
        return lambda: timed(["docker", "run", "--rm", *flags, "busybox", "true"], docker_env)

    return {"ctr run --rm": ctr_run,
            "docker run --rm": docker_run(),
            "docker run --rm --network none": docker_run("--network", "none")}


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], default_runs=30).parse_args(argv)
    require("ctr", "docker")
    with pouchd() as daemon:
        samples = alternate(args.runs, cases(daemon), warmup=2)
    baseline = summarize(samples["ctr run --rm"])
    rows = []
    results = {}
    for name, values in samples.items():
        s = summarize(values)
        results[name] = {**s, "ratio_to_ctr": ratio(s["median"], baseline["median"])}
        rows.append([name, s["n"], s["median"] * MS, s["p90"] * MS, s["min"] * MS,
                     ratio(s["median"], baseline["median"])])
    print(table(["case (this machine)", "n", "median ms", "p90 ms", "min ms", "x ctr"], rows))
    ref_ctr = REFERENCE_MS["ctr run --rm"]
    print()
    print(table(["reference (issue, other machine)", "ms", "x ctr"],
                [[name, ms, ms / ref_ctr] for name, ms in REFERENCE_MS.items()]))
    write_json(args.json, {"benchmark": "run_rm", "unit": "seconds", "results": results,
                           "reference_ms": REFERENCE_MS})
    return 0


if __name__ == "__main__":
    run_main(main)
