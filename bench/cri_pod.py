"""A pod with one busybox container, run and removed through the CRI, against pouch and
against Debian's containerd 1.6 with its own CRI plugin (started by hand with its own
root, state and socket), alternating in the same run.

    python -m pouch.bench.cri_pod [--runs N] [--json PATH]

One run: RunPodSandbox (host network, so that no CNI plugin's time is in it),
CreateContainer, StartContainer, then StopPodSandbox and RemovePodSandbox; each step
is timed too, to say where the time goes. Both serve the same offline pause and busybox
images, and are asked for the same work: the container comes with the masked and
read-only paths a kubelet always sends (containerd's CRI masks only what it is sent,
pouch Docker's defaults when it is sent none).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from pouch.actors.containerd.config import render_config
from pouch.bench.common import (
    MS,
    alternate,
    end_process,
    parser,
    ratio,
    require,
    run_main,
    summarize,
    table,
    write_json,
)
from pouch.bench.pouchd import stop as stop_pouchd
from pouch.bench.pouchd import uninterrupted
from pouch.tests.images import PAUSE_CMD, build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon

PAUSE = "pouch/pause:latest"
STEPS = ("run pod", "create", "start", "stop pod", "remove pod")
START_TIMEOUT = 30.0
# What a current kubelet sends for every container (its default proc mount, kept in
# step with dockerd's defaults).
KUBELET_LINUX = cri.LinuxContainerConfig(security_context=cri.LinuxContainerSecurityContext(
    masked_paths=["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                  "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                  "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                  "/sys/devices/virtual/powercap"],
    readonly_paths=["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]))


class CriClient:
    def __init__(self, socket: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)

    def ready(self) -> bool:
        try:
            self.runtime.Version(cri.VersionRequest(), timeout=1)
            return True
        except grpc.RpcError:
            return False

    def cycle(self, n: int, steps: dict[str, list[float]]) -> float:
        """One pod's life; its seconds (and each step's into `steps`)."""
        config = cri.PodSandboxConfig(metadata=cri.PodSandboxMetadata(
            name=f"bench-{n}", namespace="bench", uid=f"bench-{os.getpid()}-{n}"))
        config.linux.security_context.namespace_options.network = cri.NODE
        marks = [time.perf_counter()]
        pod = self.runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config),
                                         timeout=60).pod_sandbox_id
        marks.append(time.perf_counter())
        container = self.runtime.CreateContainer(cri.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=config, config=cri.ContainerConfig(
                metadata=cri.ContainerMetadata(name="busybox"),
                image=cri.ImageSpec(image="busybox"), command=["sleep", "3600"],
                linux=KUBELET_LINUX)),
            timeout=60).container_id
        marks.append(time.perf_counter())
        self.runtime.StartContainer(cri.StartContainerRequest(container_id=container),
                                    timeout=60)
        marks.append(time.perf_counter())
        self.runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        marks.append(time.perf_counter())
        self.runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod),
                                      timeout=60)
        marks.append(time.perf_counter())
        for name, start, end in zip(STEPS, marks, marks[1:], strict=False):
            steps.setdefault(name, []).append(end - start)
        return marks[-1] - marks[0]

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def pouch_cri(images: Path) -> Iterator[CriClient]:
    daemon = PouchDaemon(debug=False)
    daemon.extra_args += ["--enable-cri", "--listen-cri", str(daemon.base / "cri.sock"),
                          "--sandbox-image", PAUSE, "--cni-conf-dir",
                          str(daemon.base / "net.d"), "--stream-server-port", "0"]
    client = None
    try:
        daemon.start()
        for tarball in ("busybox.tar", "pause.tar"):
            daemon.docker("load", "-i", str(images / tarball))
        client = CriClient(daemon.base / "cri.sock")
        yield client
    finally:
        with uninterrupted():
            if client is not None:
                client.close()
            stop_pouchd(daemon)


@contextlib.contextmanager
def containerd_cri(images: Path) -> Iterator[CriClient]:
    """Debian's containerd with its CRI plugin, all of its own under a temporary folder."""
    base = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))
    socket = base / "containerd.sock"
    config = render_config(root=base / "root", state=base / "state", address=socket,
                           stock_gc=True)
    # Ours disables the CRI plugin; this one is containerd's own CRI, so enable it.
    config = "\n".join(line for line in config.splitlines()
                       if not line.startswith("disabled_plugins"))
    config += "\n".join([
        "",
        '[plugins."io.containerd.grpc.v1.cri"]',
        f'  sandbox_image = "docker.io/{PAUSE}"',
        # This machine refuses a lower oom_score_adj than containerd's own.
        "  restrict_oom_score_adj = true",
        f'  root_dir = "{base / "cri-root"}"',
        f'  state_dir = "{base / "cri-state"}"',
        '[plugins."io.containerd.grpc.v1.cri".cni]',
        f'  conf_dir = "{base / "net.d"}"',
        '  bin_dir = "/usr/lib/cni"',
        "",
    ])
    (base / "config.toml").write_text(config)
    proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")],
                            stdout=subprocess.DEVNULL, stderr=open(base / "log", "wb"),  # noqa: SIM115
                            start_new_session=True)
    client = CriClient(socket)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not client.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {(base / 'log').read_text()}")
            time.sleep(0.1)
        ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
        for tarball in ("busybox.tar", "pause.tar"):
            subprocess.run([*ctr, "images", "import", str(images / tarball)], check=True,
                           capture_output=True)
        yield client
    finally:
        with uninterrupted():
            client.close()
            end_process(proc, timeout=10)
            _unmount_under(base)
            shutil.rmtree(base, ignore_errors=True)


def _unmount_under(base: Path) -> None:
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    for point in sorted((p for p in points if p.startswith(str(base))), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], default_runs=20)
    args = p.parse_args(argv)
    require("containerd", "ctr", "docker")
    images = Path(tempfile.mkdtemp(prefix="bi-", dir="/tmp"))
    try:
        build_busybox_tarball(images / "busybox.tar")
        build_busybox_tarball(images / "pause.tar", tag=PAUSE, cmd=PAUSE_CMD)
        with pouch_cri(images) as pouch, containerd_cri(images) as ctrd:
            counter = itertools.count()
            steps: dict[str, dict[str, list[float]]] = {"pouch": {}, "containerd": {}}

            def case(client: CriClient, name: str) -> Callable[[], float]:
                return lambda: client.cycle(next(counter), steps[name])

            samples = alternate(args.runs, {"containerd 1.6 CRI": case(ctrd, "containerd"),
                                            "pouch CRI": case(pouch, "pouch")}, warmup=2)
    finally:
        shutil.rmtree(images, ignore_errors=True)
    baseline = summarize(samples["containerd 1.6 CRI"])
    results = {}
    rows = []
    for name, values in samples.items():
        s = summarize(values)
        results[name] = {**s, "ratio_to_containerd": ratio(s["median"], baseline["median"])}
        rows.append([name, s["n"], s["median"] * MS, s["p90"] * MS, s["min"] * MS,
                     ratio(s["median"], baseline["median"])])
    print(table(["pod + busybox, run and removed", "n", "median ms", "p90 ms", "min ms",
                 "x containerd"], rows))
    print()
    step_rows = []
    for step in STEPS:
        ours = summarize(steps["pouch"][step])["median"]
        theirs = summarize(steps["containerd"][step])["median"]
        step_rows.append([step, ours * MS, theirs * MS, ratio(ours, theirs)])
    print(table(["step (median)", "pouch ms", "containerd ms", "x containerd"], step_rows))
    write_json(args.json, {"benchmark": "cri_pod", "unit": "seconds", "results": results,
                           "steps": {who: {k: summarize(v) for k, v in by.items()}
                                     for who, by in steps.items()}})
    return 0


if __name__ == "__main__":
    run_main(main)
