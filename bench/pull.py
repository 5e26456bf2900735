"""Pull of a 3-layer image of about 100 MB from a local registry: pouch (`docker pull`)
set against `ctr images pull --plain-http` on the same containerd, and against dockerd 20.10.

    python -m pouch.bench.pull [--runs N] [--json PATH] [--no-dockerd]

All fetch every blob, verify it, and unpack the layers: ctr and pouch into overlayfs
snapshots of the same containerd, dockerd (Debian's docker.io, started by hand with
its own roots and socket, see bench/dockerd.py) into its overlay2 graph driver. The
issue's targets: pouch at most 1.0x dockerd and 1.2x ctr. Before each sample, the image
and its content are removed from both namespaces (containerd shares blobs between
namespaces, which would turn the second pull into no download at all) and from dockerd,
whose layers must then be gone from its data root. Runs alternate. pouch and dockerd
are driven alike, by a streamed POST /images/create on their socket, and their time is
split by the progress messages: until the last "Download complete" (download and
verification) and from there to the end (unpack, names). dockerd unpacks a layer as
soon as it is downloaded, so its first part overlaps some unpacking.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
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
from pouch.bench.dockerd import DOCKERD, Dockerd, dockerd
from pouch.bench.pouchd import pouchd
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.registry import Registry, image_config, publish

LAYER_BYTES = 33 << 20
CTR_NAMESPACE = "bench-pull"
POUCH_NAMESPACE = "pouch"
CTR = "ctr images pull --plain-http"
POUCH = "pouch pull"
DOCKERD_CASE = "dockerd 20.10 pull"
# The targets: pouch's median over each baseline's, at most.
TARGETS = {DOCKERD_CASE: 1.0, CTR: 1.2}


def random_layer(index: int) -> bytes:
    """A gzipped tar of incompressible bytes, as a layer of binaries nearly is."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"data/blob{index}")
        info.size = LAYER_BYTES
        tar.addfile(info, io.BytesIO(os.urandom(LAYER_BYTES)))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)


def api_pull(socket: Path, name: str, who: str) -> tuple[float, float, list[dict[str, object]]]:
    """POST /images/create on `socket`, the progress read as it streams: the seconds to
    the last "Download complete", the seconds in all, and the messages."""
    start = time.perf_counter()
    proc = subprocess.Popen(["curl", "-sN", "--unix-socket", str(socket),
                             "-X", "POST", "http://d/v1.41/images/create?fromImage=" + name],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    downloaded = start
    messages: list[dict[str, object]] = []
    for line in proc.stdout:
        messages.append(json.loads(line))
        if messages[-1].get("status") == "Download complete":
            downloaded = time.perf_counter()
    proc.wait(300)
    elapsed = time.perf_counter() - start
    if not messages or "error" in messages[-1] or proc.returncode != 0:
        raise RuntimeError(f"{who} pull: {messages[-1] if messages else proc.returncode}")
    return downloaded - start, elapsed, messages


class Cases:
    def __init__(self, daemon: PouchDaemon, registry: Registry,
                 docker: Dockerd | None) -> None:
        self.daemon = daemon
        self.docker = docker
        self.name = f"{registry.host}/bench/big:v1"
        self.env = daemon.cli_env()
        # (download, rest) per sample, warm-up included.
        self.split: dict[str, list[tuple[float, float]]] = {POUCH: [], DOCKERD_CASE: []}

    def ctr(self, namespace: str, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.daemon.containerd_socket), "--namespace",
                namespace, *args]

    def clean(self) -> None:
        """Nothing of the image anywhere, whichever case comes next."""
        quiet(["docker", "rmi", "-f", self.name], self.env)
        quiet(self.ctr(CTR_NAMESPACE, "images", "rm", "--sync", self.name))
        for namespace in (POUCH_NAMESPACE, CTR_NAMESPACE):
            listed = subprocess.run(self.ctr(namespace, "content", "ls", "-q"),
                                    capture_output=True, text=True, timeout=60).stdout.split()
            big = [d for d in listed if d]
            if big:
                quiet(self.ctr(namespace, "content", "rm", *big))
        if self.docker is not None:
            self.docker.docker("rmi", "-f", self.name)
            self.check_dockerd_empty(self.docker)

    @staticmethod
    def check_dockerd_empty(docker: Dockerd) -> None:
        """No image, no layer left in dockerd: its next pull must download every blob."""
        images = docker.get("/images/json?all=1")
        df = docker.get("/system/df")
        overlay2 = docker.data_root / "overlay2"
        # overlay2/l holds the short links of the layers, which go with them.
        layers = ([p.name for p in overlay2.iterdir() if p.name != "l"]
                  if overlay2.is_dir() else [])
        if images or df.get("LayersSize") or layers:
            raise RuntimeError(f"dockerd still holds {len(images)} images, {len(layers)} "
                               f"layer folders, {df.get('LayersSize')} bytes of layers")

    def ctr_pull(self) -> float:
        self.clean()
        start = time.perf_counter()
        result = subprocess.run(self.ctr(CTR_NAMESPACE, "images", "pull", "--plain-http",
                                         self.name), capture_output=True, text=True, timeout=300)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"ctr pull: {result.stderr.strip()}")
        return elapsed

    def pouch_pull(self) -> float:
        self.clean()
        downloaded, elapsed, _ = api_pull(self.daemon.socket, self.name, "pouch")
        self.split[POUCH].append((downloaded, elapsed - downloaded))
        return elapsed

    def dockerd_pull(self) -> float:
        assert self.docker is not None
        self.clean()
        downloaded, elapsed, messages = api_pull(self.docker.socket, self.name, "dockerd")
        reused = [m for m in messages if m.get("status") == "Already exists"]
        if reused:
            raise RuntimeError(f"dockerd reused {len(reused)} layers: not a full pull")
        self.split[DOCKERD_CASE].append((downloaded, elapsed - downloaded))
        return elapsed


@contextlib.contextmanager
def maybe_dockerd(wanted: bool, registry: Registry) -> Iterator[Dockerd | None]:
    if not wanted:
        yield None
        return
    with dockerd(insecure_registries=[registry.host]) as docker:
        yield docker


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=5)
    p.add_argument("--no-dockerd", action="store_true",
                   help=f"leave out the dockerd 20.10 case (needs {DOCKERD} otherwise)")
    args = p.parse_args(argv)
    require("ctr", "docker", "curl", "docker-registry")
    if not args.no_dockerd:
        try:
            require(str(DOCKERD))
        except SystemExit as missing:
            sys.exit(f"{missing.code} (Debian's docker.io 20.10); --no-dockerd leaves "
                     "that case out")
    layers = [random_layer(i) for i in range(3)]
    docker_version = None
    firewall_diff = None
    with Registry() as registry, pouchd(busybox=False) as daemon, \
            maybe_dockerd(not args.no_dockerd, registry) as docker:
        publish(registry.url, "bench/big", "v1", layers, image_config(layers))
        cases = Cases(daemon, registry, docker)
        runs: dict[str, Callable[[], float]] = {CTR: cases.ctr_pull, POUCH: cases.pouch_pull}
        if docker is not None:
            docker_version = docker.version()
            runs[DOCKERD_CASE] = cases.dockerd_pull
        samples = alternate(args.runs, runs, warmup=1)
        cases.clean()
    if docker is not None:
        firewall_diff = docker.firewall_diff
    medians = {name: summarize(values)["median"] for name, values in samples.items()}
    nan = float("nan")
    results = {}
    rows = []
    for name, values in samples.items():
        s = summarize(values)
        to_ctr = ratio(s["median"], medians[CTR])
        to_dockerd = ratio(s["median"], medians[DOCKERD_CASE]) if docker is not None else nan
        results[name] = {**s, "ratio_to_ctr": to_ctr}
        if docker is not None:
            results[name]["ratio_to_dockerd"] = to_dockerd
        rows.append([name, s["n"], s["median"] * MS, s["min"] * MS, to_ctr,
                     *([to_dockerd] if docker is not None else [])])
    print(f"image: 3 layers, {sum(len(x) for x in layers) / 1e6:.0f} MB compressed"
          + (f"; dockerd {docker_version}" if docker_version else ""))
    headers = ["case (this machine)", "n", "median ms", "min ms", "x ctr"]
    print(table(headers + (["x dockerd"] if docker is not None else []), rows))
    targets = {}
    for baseline, limit in TARGETS.items():
        if baseline in medians:
            value = ratio(medians[POUCH], medians[baseline])
            targets[f"pouch/{baseline}"] = {"ratio": value, "target": limit,
                                            "met": value <= limit}
            print(f"pouch / {baseline}: {value:.2f} (target <= {limit:.1f}: "
                  f"{'met' if value <= limit else 'NOT met'})")
    split = {}
    for name, pairs in cases.split.items():
        if not pairs:
            continue
        download = summarize([d for d, _ in pairs[-args.runs:]])["median"]
        rest = summarize([r for _, r in pairs[-args.runs:]])["median"]
        split[name] = {"download": download, "unpack": rest}
        print(f"{name}, median: to the last \"Download complete\" {download * MS:.0f} ms, "
              f"from there to the end {rest * MS:.0f} ms")
    if firewall_diff:
        print("firewall rules changed while dockerd ran (see above); left as they are")
    write_json(args.json, {"benchmark": "pull", "unit": "seconds", "results": results,
                           "targets": targets, "dockerd_version": docker_version,
                           "pouch_split_s": split.get(POUCH),
                           "split_s": split, "firewall_changed": bool(firewall_diff)})
    return 0


if __name__ == "__main__":
    run_main(main)
