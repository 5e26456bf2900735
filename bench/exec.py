"""`docker exec c true` on a running container: pouch set against dockerd 20.10.

    python -m pouch.bench.exec [--runs N] [--json PATH]

The same docker CLI drives both, each daemon with one running busybox container
(`sleep`, no network) of its own: dockerd (Debian's docker.io, started by hand with its
own roots and socket, see bench/dockerd.py) and pouchd, each on its own containerd. One
sample is one `docker exec c true`: the CLI pings, inspects the container, creates the
exec, starts it attached (an upgraded stream that ends when the process has exited) and
inspects it for the exit code. Runs alternate. The issue's target: pouch at most 0.8x
dockerd. A second table splits pouch's and dockerd's time by API call (a client of our
own making the same calls, alternating between the daemons), which shows what the CLI's
own start-up adds to both; the start is split where its head (101) arrives. Its last row
is the floor both share: `runc exec` of the same process run by hand on each daemon's
container (what containerd's shim runs for a start; most of it is runc compiling the
container's seccomp filter for the new process). Last, what that leaves any daemon:
dockerd's time less its own calls outside the exec's run, over dockerd's time (the CLI's
start-up and the run in the shim are the same for every daemon; the run step also holds
dockerd's bit of work at the exit, so a daemon with none could do slightly better).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from pouch.bench.dockerd import DOCKERD, Dockerd, dockerd
from pouch.bench.pouchd import pouchd
from pouch.tests.images import build_busybox_tarball

NAME = "bench-exec"
POUCH = "pouch docker exec"
DOCKERD_CASE = "dockerd 20.10 docker exec"
TARGET = 0.8  # pouch's median over dockerd's, at most
RUN_STEP = "start exec: to the end"  # the exec's run (runc's, in the shim) and its end
STEPS = ("ping", "inspect container", "create exec", "start exec: head", RUN_STEP,
         "inspect exec")
RUNC_ALONE = "runc exec alone (floor)"
RUNC_ROOTS = ("/run/containerd/runc",)  # pouch's containerd's, and a system one's


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds `argv` took; it must succeed."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: "
                           f"{result.stderr.strip()}")
    return elapsed


def http(path: Path, method: str, target: str, body: Any = None,
         upgrade: bool = False, marks: list[float] | None = None) -> bytes:
    """One request on the daemon's socket; the whole answer (an upgraded stream's, until
    the daemon ends it). `marks` gets the time its first bytes arrived."""
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} /v1.41{target} HTTP/1.1\r\nHost: d\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n")
    if upgrade:
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(head.encode() + b"\r\n" + data)
        answer = b""
        while chunk := s.recv(65536):
            if not answer and marks is not None:
                marks.append(time.perf_counter())
            answer += chunk
            if not upgrade and _complete(answer):
                break
    return answer


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return body.endswith(b"0\r\n\r\n")


def api_steps(path: Path) -> list[float]:
    """The CLI's calls for `docker exec c true`, each timed (the start twice: to its
    head, and from there to its end)."""
    marks = [time.perf_counter()]
    http(path, "GET", "/_ping")
    marks.append(time.perf_counter())
    http(path, "GET", f"/containers/{NAME}/json")
    marks.append(time.perf_counter())
    created = http(path, "POST", f"/containers/{NAME}/exec",
                   {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})
    exec_id = json.loads(created.partition(b"\r\n\r\n")[2])["Id"]
    marks.append(time.perf_counter())
    http(path, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False},
         upgrade=True, marks=marks)
    marks.append(time.perf_counter())
    shown = json.loads(http(path, "GET", f"/exec/{exec_id}/json").partition(b"\r\n\r\n")[2])
    marks.append(time.perf_counter())
    if shown.get("ExitCode") != 0:
        raise RuntimeError(f"exec {exec_id} ended with {shown.get('ExitCode')!r}")
    return [b - a for a, b in itertools.pairwise(marks)]


def runc_exec(cid: str, roots: list[Path], spec_dir: Path) -> Callable[[], float]:
    """A sample of `runc exec` of `true` in the container, as its shim runs an exec (the
    container's own process spec, its arguments replaced), timed alone. The spec is
    written in `spec_dir`."""
    runc = shutil.which("runc") or "runc"
    state = next((p for root in roots for p in root.glob(f"**/{cid}/state.json")), None)
    if state is None:
        raise RuntimeError(f"no runc state for container {cid} under {roots}")
    root = state.parent.parent
    shown = subprocess.run([runc, "--root", str(root), "state", cid], capture_output=True,
                           text=True, check=True)
    process = json.loads((Path(json.loads(shown.stdout)["bundle"]) / "config.json")
                         .read_text())["process"]
    process.update(args=["true"], terminal=False)
    spec = spec_dir / f"runc-exec-{cid[:12]}.json"
    spec.write_text(json.dumps(process))
    return lambda: timed([runc, "--root", str(root), "exec", "--process", str(spec), cid],
                         os.environ.copy())


@contextlib.contextmanager
def dockerd_with_busybox(tarball: Path) -> Iterator[Dockerd]:
    with dockerd() as docker:
        loaded = docker.docker("load", "-i", str(tarball))
        if loaded.returncode != 0:
            raise RuntimeError(f"dockerd load: {loaded.stderr.strip()}")
        try:
            yield docker
        finally:
            docker.docker("rm", "-f", NAME)


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], default_runs=30).parse_args(argv)
    require("docker", "runc", str(DOCKERD))
    with pouchd() as daemon:
        tarball = daemon.base / "busybox.tar"
        if not tarball.exists():
            build_busybox_tarball(tarball)
        with dockerd_with_busybox(tarball) as docker:
            for run in (daemon.docker_result, docker.docker):
                started = run("run", "-d", "--name", NAME, "--network", "none", "busybox",
                              "sleep", "3600")
                if started.returncode != 0:
                    raise RuntimeError(f"starting {NAME}: {started.stderr.strip()}")
            version = docker.version()
            pouch_env = daemon.cli_env()
            argv_exec = ["docker", "exec", NAME, "true"]
            cases: dict[str, Callable[[], float]] = {
                POUCH: lambda: timed(argv_exec, pouch_env),
                DOCKERD_CASE: lambda: timed(argv_exec, docker.cli_env()),
            }
            samples = alternate(args.runs, cases, warmup=2)
            steps: dict[str, list[list[float]]] = {POUCH: [], DOCKERD_CASE: []}
            for _ in range(max(5, args.runs // 2)):
                steps[POUCH].append(api_steps(daemon.socket))
                steps[DOCKERD_CASE].append(api_steps(docker.socket))
            alone = alternate(max(5, args.runs // 2), {
                POUCH: runc_exec(daemon.inspect(NAME)["Id"], [Path(r) for r in RUNC_ROOTS],
                                 daemon.base),
                DOCKERD_CASE: runc_exec(docker.get(f"/containers/{NAME}/json")["Id"],
                                        [docker.exec_root], docker.base)}, warmup=1)
        firewall_diff = docker.firewall_diff
    medians = {name: summarize(values)["median"] for name, values in samples.items()}
    results: dict[str, Any] = {}
    rows = []
    for name, values in samples.items():
        s = summarize(values)
        results[name] = {**s, "ratio_to_dockerd": ratio(s["median"], medians[DOCKERD_CASE])}
        rows.append([name, s["n"], s["median"] * MS, s["p90"] * MS, s["min"] * MS,
                     ratio(s["median"], medians[DOCKERD_CASE])])
    print(f"dockerd {version}; one busybox container each; docker exec {NAME} true")
    print(table(["case (this machine)", "n", "median ms", "p90 ms", "min ms", "x dockerd"],
                rows))
    value = ratio(medians[POUCH], medians[DOCKERD_CASE])
    met = value <= TARGET
    print(f"pouch / dockerd: {value:.2f} (target <= {TARGET:.1f}: {'met' if met else 'NOT met'})")
    split = {name: [summarize([run[i] for run in runs])["median"] for i in range(len(STEPS))]
             for name, runs in steps.items()}
    print()
    floor = {name: summarize(values)["median"] for name, values in alone.items()}
    print(table(["API call, median ms", "pouch", "dockerd", "x dockerd"],
                [[step, split[POUCH][i] * MS, split[DOCKERD_CASE][i] * MS,
                  ratio(split[POUCH][i], split[DOCKERD_CASE][i])]
                 for i, step in enumerate(STEPS)]
                + [[RUNC_ALONE, floor[POUCH] * MS, floor[DOCKERD_CASE] * MS,
                    ratio(floor[POUCH], floor[DOCKERD_CASE])]]))
    # What no daemon can make quicker: the CLI's own time and the exec's run in the shim
    # (runc), which both daemons pay alike; dockerd's own part is the rest of its calls.
    dockerd_own = sum(split[DOCKERD_CASE]) - split[DOCKERD_CASE][STEPS.index(RUN_STEP)]
    best = ratio(medians[DOCKERD_CASE] - dockerd_own, medians[DOCKERD_CASE])
    print(f"\nwhat any daemon could do here, about (dockerd's time less its own "
          f"{dockerd_own * MS:.2f} ms outside the exec's run): {best:.2f} x dockerd")
    if firewall_diff:
        print("firewall rules changed while dockerd ran (see above); left as they are")
    write_json(args.json, {"benchmark": "exec", "unit": "seconds", "results": results,
                           "target": {"ratio": value, "target": TARGET, "met": met},
                           "dockerd_version": version,
                           "api_steps_s": {name: dict(zip(STEPS, values, strict=True))
                                           for name, values in split.items()},
                           "runc_exec_alone_s": floor, "best_reachable_ratio": best,
                           "firewall_changed": bool(firewall_diff)})
    return 0


if __name__ == "__main__":
    run_main(main)
