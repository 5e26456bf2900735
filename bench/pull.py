"""Pull of a 3-layer image of about 100 MB from a local registry: pouch (`docker pull`)
set against `ctr images pull --plain-http` on the same containerd.

    python -m pouch.bench.pull [--runs N] [--json PATH]

Both fetch every blob, verify it, and unpack the layers into overlayfs snapshots, so
the ratio is pouch's own cost over containerd's client. Before each sample, the image
and its content are removed from both namespaces (containerd shares blobs between
namespaces, which would turn the second pull into no download at all). Runs alternate.
The figures split pouch's time by its progress messages: until the last "Download
complete" (download and verification) and from there to the end (unpack, names).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
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
from pouch.tests.support.registry import Registry, image_config, publish

LAYER_BYTES = 33 << 20
CTR_NAMESPACE = "bench-pull"
POUCH_NAMESPACE = "pouch"


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


class Cases:
    def __init__(self, daemon: PouchDaemon, registry: Registry) -> None:
        self.daemon = daemon
        self.name = f"{registry.host}/bench/big:v1"
        self.env = {**os.environ, "DOCKER_HOST": daemon.host,
                    "DOCKER_CONFIG": str(daemon.docker_config)}
        self.split: list[tuple[float, float]] = []  # pouch: (download, rest)

    def ctr(self, namespace: str, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.daemon.containerd_socket), "--namespace",
                namespace, *args]

    def clean(self) -> None:
        quiet(["docker", "rmi", "-f", self.name], self.env)
        quiet(self.ctr(CTR_NAMESPACE, "images", "rm", "--sync", self.name))
        for namespace in (POUCH_NAMESPACE, CTR_NAMESPACE):
            listed = subprocess.run(self.ctr(namespace, "content", "ls", "-q"),
                                    capture_output=True, text=True, timeout=60).stdout.split()
            big = [d for d in listed if d]
            if big:
                quiet(self.ctr(namespace, "content", "rm", *big))

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
        start = time.perf_counter()
        proc = subprocess.Popen(["curl", "-sN", "--unix-socket", str(self.daemon.socket),
                                 "-X", "POST", "http://d/v1.41/images/create?fromImage="
                                 + self.name], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        downloaded = start
        last: dict[str, object] = {}
        for line in proc.stdout:
            last = json.loads(line)
            if last.get("status") == "Download complete":
                downloaded = time.perf_counter()
        proc.wait(300)
        elapsed = time.perf_counter() - start
        if "error" in last or proc.returncode != 0:
            raise RuntimeError(f"pouch pull: {last}")
        self.split.append((downloaded - start, elapsed - (downloaded - start)))
        return elapsed


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0], default_runs=5).parse_args(argv)
    require("ctr", "docker", "curl", "docker-registry")
    layers = [random_layer(i) for i in range(3)]
    with Registry() as registry, pouchd(busybox=False) as daemon:
        publish(registry.url, "bench/big", "v1", layers, image_config(layers))
        cases = Cases(daemon, registry)
        runs: dict[str, Callable[[], float]] = {"ctr images pull --plain-http": cases.ctr_pull,
                                                "pouch pull": cases.pouch_pull}
        samples = alternate(args.runs, runs, warmup=1)
        cases.clean()
    baseline = summarize(samples["ctr images pull --plain-http"])
    results = {}
    rows = []
    for name, values in samples.items():
        s = summarize(values)
        results[name] = {**s, "ratio_to_ctr": ratio(s["median"], baseline["median"])}
        rows.append([name, s["n"], s["median"] * MS, s["min"] * MS,
                     ratio(s["median"], baseline["median"])])
    print(f"image: 3 layers, {sum(len(x) for x in layers) / 1e6:.0f} MB compressed")
    print(table(["case (this machine)", "n", "median ms", "min ms", "x ctr"], rows))
    download = summarize([d for d, _ in cases.split[-args.runs:]])["median"]
    rest = summarize([r for _, r in cases.split[-args.runs:]])["median"]
    print(f"pouch pull, median: download and verify {download * MS:.0f} ms, "
          f"unpack and name {rest * MS:.0f} ms")
    write_json(args.json, {"benchmark": "pull", "unit": "seconds", "results": results,
                           "pouch_split_s": {"download": download, "unpack": rest}})
    return 0


if __name__ == "__main__":
    run_main(main)
