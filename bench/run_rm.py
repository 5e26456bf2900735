"""`docker run --rm busybox true` against pouch, set against `ctr run --rm` on the same
containerd, and against dockerd 20.10.

    python -m pouch.bench.run_rm [--runs N] [--json PATH] [--no-dockerd]

Both are Go CLIs that start, talk to a daemon over a unix socket and wait for
the container to exit and be removed, so the ratio to ctr is pouch's own cost
(gateway, broker, actors) over containerd's. dockerd (Debian's docker.io, started by
hand with its own roots and socket: bench/dockerd.py) runs the same command on a
bridge of its own, and with --network none. Runs alternate: ctr, docker (the default
bridge), docker --network none, dockerd, dockerd --network none, ctr, ...
"""

from __future__ import annotations

import contextlib
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
from pouch.bench.dockerd import Dockerd, dockerd
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


def cases(daemon: PouchDaemon, docker: Dockerd | None) -> dict[str, Callable[[], float]]:
    ids = itertools.count()
    prefix = f"bench-{os.getpid()}-"
    ctr = ["ctr", "--address", str(daemon.containerd_socket), "--namespace", NAMESPACE]
    docker_env = daemon.cli_env()

    def ctr_run() -> float:
        return timed([*ctr, "run", "--rm", IMAGE, f"{prefix}{next(ids)}", "true"])

    def docker_run(env: dict[str, str], *flags: str) -> Callable[[], float]:
        return lambda: timed(["docker", "run", "--rm", *flags, "busybox", "true"], env)

    runs = {"ctr run --rm": ctr_run,
            "docker run --rm": docker_run(docker_env),
            "docker run --rm --network none": docker_run(docker_env, "--network", "none")}
    if docker is not None:
        runs["dockerd run --rm"] = docker_run(docker.cli_env())
        runs["dockerd run --rm --network none"] = docker_run(docker.cli_env(), "--network", "none")
    return runs


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=30)
    p.add_argument("--no-dockerd", action="store_true", help="leave dockerd out")
    args = p.parse_args(argv)
    require("ctr", "docker")
    with pouchd() as daemon, contextlib.ExitStack() as stack:
        docker = None
        if not args.no_dockerd:
            docker = stack.enter_context(dockerd(bridge=True))
            loaded = docker.docker("load", "-i", str(daemon.base / "busybox.tar"))
            if loaded.returncode != 0:
                raise RuntimeError(f"dockerd load: {loaded.stderr}")
        samples = alternate(args.runs, cases(daemon, docker), warmup=2)
    baseline = summarize(samples["ctr run --rm"])
    rows = []
    results = {}
    for name, values in samples.items():
        s = summarize(values)
        results[name] = {**s, "ratio_to_ctr": ratio(s["median"], baseline["median"])}
        rows.append([name, s["n"], s["median"] * MS, s["p90"] * MS, s["min"] * MS,
                     ratio(s["median"], baseline["median"])])
    print(table(["case (this machine)", "n", "median ms", "p90 ms", "min ms", "x ctr"], rows))
    if "dockerd run --rm" in results:
        print()
        pairs = [("docker run --rm", "dockerd run --rm"),
                 ("docker run --rm --network none", "dockerd run --rm --network none")]
        print(table(["pouch against dockerd (this run)", "x dockerd"],
                    [[ours, ratio(results[ours]["median"], results[theirs]["median"])]
                     for ours, theirs in pairs]))
    ref_ctr = REFERENCE_MS["ctr run --rm"]
    print()
    print(table(["reference (issue, other machine)", "ms", "x ctr"],
                [[name, ms, ms / ref_ctr] for name, ms in REFERENCE_MS.items()]))
    write_json(args.json, {"benchmark": "run_rm", "unit": "seconds", "results": results,
                           "reference_ms": REFERENCE_MS})
    return 0


if __name__ == "__main__":
    run_main(main)
