"""`docker build` (the classic builder) of a 5-step Dockerfile against pouch and against
dockerd 20.10, cold (--no-cache) and fully cached, alternating in the same run.

    python -m pouch.bench.build [--runs N] [--json PATH] [--no-dockerd]

The Dockerfile: FROM busybox, COPY of 20 MB in 1,000 files, two RUNs, CMD. dockerd
(Debian's docker.io, started by hand with its own roots and socket: bench/dockerd.py)
builds the same context. Targets (issue 12): cold and cached builds each at most 1.0x
dockerd's. The figures say where the time goes only as a whole; run pouch under
bench/pyspy.py for the split.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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

FILES = 1000
TOTAL = 20 << 20
DOCKERFILE = """\
FROM busybox
COPY data /data
RUN find /data -type f | wc -l > /count
RUN du -s /data > /size
CMD ["cat", "/count", "/size"]
"""


def make_context(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    for i in range(FILES):
        sub = folder / "data" / f"d{i % 20:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:04d}").write_bytes(os.urandom(TOTAL // FILES))
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return elapsed


def cases(context: Path, daemon: PouchDaemon, docker: Dockerd | None
          ) -> dict[str, Callable[[], float]]:
    envs = {"pouch": {**daemon.cli_env(), "DOCKER_BUILDKIT": "0"}}
    if docker is not None:
        envs["dockerd"] = {**docker.cli_env(), "DOCKER_BUILDKIT": "0"}
    def case(env: dict[str, str], *flags: str) -> Callable[[], float]:
        return lambda: timed(["docker", "build", *flags, "-t", "bench:build", str(context)],
                             env)

    runs: dict[str, Callable[[], float]] = {}
    for name, env in envs.items():
        runs[f"{name} cold"] = case(env, "--no-cache")
        runs[f"{name} cached"] = case(env)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=5)
    p.add_argument("--no-dockerd", action="store_true", help="leave dockerd out")
    args = p.parse_args(argv)
    require("docker")
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp, pouchd() as daemon, \
            contextlib.ExitStack() as stack:
        context = make_context(Path(tmp) / "ctx")
        docker = None
        if not args.no_dockerd:
            docker = stack.enter_context(dockerd())
            loaded = docker.docker("load", "-i", str(daemon.base / "busybox.tar"))
            if loaded.returncode != 0:
                raise RuntimeError(f"dockerd load: {loaded.stderr}")
        samples = alternate(args.runs, cases(context, daemon, docker), warmup=1)
    results = {name: summarize(values) for name, values in samples.items()}
    print(table(["case (this machine)", "n", "median ms", "p90 ms", "min ms"],
                [[name, s["n"], s["median"] * MS, s["p90"] * MS, s["min"] * MS]
                 for name, s in results.items()]))
    if "dockerd cold" in results:
        print()
        print(table(["pouch against dockerd (this run)", "x dockerd"],
                    [[kind, ratio(results[f"pouch {kind}"]["median"],
                                  results[f"dockerd {kind}"]["median"])]
                     for kind in ("cold", "cached")]))
    write_json(args.json, {"benchmark": "build", "unit": "seconds", "results": results})
    return 0


if __name__ == "__main__":
    run_main(main)
