"""`docker info` and `docker version` as a user reads them, over the unix socket: the
numbers are the host's and the components' real ones, the CLI prints every section
without complaint, and pouchd's POST /daemon/update changes the labels /info lists."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import docker as docker_py
import pytest

from pouch.actors import hostinfo
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for


def containerd_version() -> tuple[str, str]:
    """`containerd --version`: "containerd <module> <version> <revision>"."""
    out = subprocess.run(["containerd", "--version"], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[2], out[3]


def runc_version() -> tuple[str, str]:
    found = hostinfo.runc_version()
    return found.version, found.commit


def mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def info_json(docker: Callable[..., str]) -> dict:
    return json.loads(docker("info", "--format", "{{json .}}"))


def test_docker_info_prints_every_section_cleanly(daemon: PouchDaemon):
    shown = daemon.docker_result("info")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for noise in ("unknown", "ERROR", "error", "failed"):
        assert noise not in text, text
        assert noise not in shown.stderr, shown.stderr
    revision, commit = containerd_version()[1], runc_version()[1]
    assert f" containerd version: {revision}\n" in text
    assert f" runc version: {commit}\n" in text
    assert " Swarm: inactive\n" in text
    assert " Runtimes: runc\n" in text and " Default Runtime: runc\n" in text
    assert f" Docker Root Dir: {daemon.home}\n" in text
    assert " Cgroup Driver: cgroupfs\n" in text
    assert f" Cgroup Version: {hostinfo.cgroup_version()}\n" in text
    assert " Network: bridge host null\n" in text
    if hostinfo.security_options():  # a kernel with seccomp: pouch's default profile
        assert " Security Options:\n  seccomp\n   Profile: builtin\n" in text
    # What the CLI prints as WARNING lines are the daemon's own Warnings, each true here.
    warned = [line for line in shown.stderr.splitlines() if line.startswith("WARNING")]
    info = info_json(daemon.docker)
    said = [w.splitlines()[0] for w in info["Warnings"]]
    assert [w for w in warned if "seccomp" not in w] == said


def test_info_tells_the_hosts_real_figures(daemon: PouchDaemon, api: docker_py.APIClient):
    info = api.info()
    uname = platform.uname()
    assert info["NCPU"] == os.cpu_count()
    assert info["MemTotal"] == mem_total()
    assert info["KernelVersion"] == uname.release
    assert info["Architecture"] == uname.machine
    assert info["OSType"] == "linux"
    assert info["OperatingSystem"] and info["OperatingSystem"] != "Linux"
    assert info["OSVersion"] and info["OSVersion"] in info["OperatingSystem"]  # "12"
    assert info["GenericResources"] is None
    assert info["Name"] == socket.gethostname()
    assert info["Driver"] == "overlayfs"
    assert info["DockerRootDir"] == str(daemon.home)
    assert info["ServerVersion"] == api.version()["Version"]
    assert info["Runtimes"] == {"runc": {"path": shutil.which("runc")}}
    assert info["DefaultRuntime"] == "runc"
    assert info["ContainerdCommit"]["ID"] == containerd_version()[1]
    assert info["RuncCommit"]["ID"] == runc_version()[1]
    assert info["LiveRestoreEnabled"] is True
    assert info["CgroupDriver"] == "cgroupfs"
    for name, offered in hostinfo.cgroup_support().fields().items():
        assert info[name] is offered, name
    if hostinfo.cgroup_version() == "1":  # a controller mounted is a control offered
        for controller, field in (("memory", "MemoryLimit"), ("cpu", "CPUShares"),
                                  ("cpuset", "CPUSet"), ("pids", "PidsLimit")):
            mounted = Path("/sys/fs/cgroup", controller, "cgroup.procs").exists()
            assert info[field] is mounted, field
    assert info["IPv4Forwarding"] is hostinfo.sysctl_on("net.ipv4.ip_forward")
    assert info["SecurityOptions"] == hostinfo.security_options()
    assert info["HttpProxy"] == info["HttpsProxy"] == "http://127.0.0.1:9"  # the test env's
    assert info["ListenAddresses"] == [daemon.host]
    # Go's figures, for pouchd's processes: something open, something running.
    assert info["NFd"] > 10 and info["NGoroutines"] > 10
    assert info["SystemTime"].endswith("Z")
    if (init := info["InitBinary"]):
        assert os.access(init, os.X_OK) and info["InitCommit"]["ID"]


def test_the_engine_id_outlives_a_restart_of_the_system_actor(daemon: PouchDaemon,
                                                              api: docker_py.APIClient):
    before = api.info()["ID"]
    old = daemon.pid_of("system")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: daemon.pid_of("system") != old and quiet_info(api) is not None, 30,
             "a new system actor")
    assert api.info()["ID"] == before


def quiet_info(api: docker_py.APIClient) -> dict | None:
    try:
        return api.info()
    except docker_py.errors.APIError:
        return None


def test_info_counts_running_paused_and_stopped_containers(
        docker: Callable[..., str], api: docker_py.APIClient, names: Callable[[str], str]):
    before = api.info()
    running, paused, stopped = names("up"), names("paused"), names("down")
    for name in (running, paused):
        docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    docker("pause", paused)
    docker("create", "--name", stopped, "busybox", "true")
    after = api.info()
    assert after["ContainersRunning"] == before["ContainersRunning"] + 1
    assert after["ContainersPaused"] == before["ContainersPaused"] + 1
    assert after["ContainersStopped"] == before["ContainersStopped"] + 1
    assert after["Containers"] == before["Containers"] + 3
    assert after["Images"] >= 1
    docker("unpause", paused)

    cli = info_json(docker)
    assert (cli["ContainersRunning"], cli["ContainersPaused"]) == (
        after["ContainersRunning"] + 1, after["ContainersPaused"] - 1)


def test_docker_version_names_the_real_containerd_and_runc(daemon: PouchDaemon):
    shown = json.loads(daemon.docker("version", "--format", "{{json .Server}}"))
    components = {c["Name"]: c for c in shown["Components"]}
    assert (components["containerd"]["Version"],
            components["containerd"]["Details"]["GitCommit"]) == containerd_version()
    assert (components["runc"]["Version"],
            components["runc"]["Details"]["GitCommit"]) == runc_version()
    engine = components["Engine"]
    assert engine["Version"] == shown["Version"]
    assert engine["Details"]["ApiVersion"] == shown["ApiVersion"] == "1.41"
    assert engine["Details"]["MinAPIVersion"] == shown["MinAPIVersion"] == "1.24"
    assert engine["Details"]["GitCommit"] == shown["GitCommit"] == hostinfo.source_commit()
    assert shown["GoVersion"] == f"python{platform.python_version()}"
    assert (shown["Os"], shown["KernelVersion"]) == ("linux", platform.uname().release)
    assert shown["Arch"] in ("amd64", "arm64", platform.uname().machine)

    text = daemon.docker("version")
    assert "  API version:      1.41 (minimum version 1.24)\n" in text
    assert f" containerd:\n  Version:          {containerd_version()[0]}\n" in text
    assert f"  GitCommit:        {containerd_version()[1]}\n" in text


@pytest.mark.parametrize(("version", "status", "message"), [
    ("1.42", 400, "client version 1.42 is too new. Maximum supported API version is 1.41"),
    ("2.0", 400, "client version 2.0 is too new. Maximum supported API version is 1.41"),
    ("1.23", 400, "client version 1.23 is too old. Minimum supported API version is 1.24, "
                  "please upgrade your client to a newer version"),
    ("1.24", 200, ""),
    ("1.30", 200, ""),
    ("1.41", 200, ""),
])
def test_api_versions_from_1_24_to_1_41_are_served(api: docker_py.APIClient, version: str,
                                                   status: int, message: str):
    answer = api.get(f"{api.base_url}/v{version}/version")
    assert answer.status_code == status, answer.text
    assert answer.headers["Api-Version"] == "1.41"
    if message:
        assert answer.json()["message"] == message
    else:
        assert answer.json()["ApiVersion"] == "1.41"


def test_ping_answers_head_and_get_with_the_api_version(api: docker_py.APIClient):
    for ask in (api.head, api.get):
        answer = ask(f"{api.base_url}/_ping")
        assert answer.status_code == 200
        assert answer.headers["Api-Version"] == "1.41"
        assert answer.headers["Ostype"] == "linux"
    assert api.get(f"{api.base_url}/_ping").text == "OK"


def test_docker_py_reads_version_info_and_df(client: docker_py.DockerClient):
    version = client.version()
    assert version["ApiVersion"] == "1.41"
    assert {"Engine", "containerd", "runc"} == {c["Name"] for c in version["Components"]}
    info = client.info()
    assert isinstance(info["Warnings"], list) and isinstance(info["Labels"], list)
    assert info["RegistryConfig"]["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]
    df = client.df()
    assert {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"} <= set(df)
    assert any(image["RepoTags"] == ["busybox:latest"] for image in df["Images"])


# -- a daemon of its own ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PouchDaemon]:
    """A daemon with labels, registries and a plain TCP listener on loopback."""
    config = tmp_path_factory.mktemp("conf") / "daemon.json"
    config.write_text(json.dumps({"registry-mirror": ["https://mirror.example:5000"]}))
    pouchd = PouchDaemon(extra_args=[
        "--config-file", str(config), "--label", "zone=eu", "--label", "rack=r7",
        "--insecure-registry", "registry.example:5000", "--insecure-registry", "10.9.0.0/16",
        "--listen", f"tcp://127.0.0.1:{free_port()}"])
    try:
        yield pouchd.start()
    finally:
        pouchd.stop()


def update(api: docker_py.APIClient, body: dict[str, object]) -> tuple[int, str]:
    reply = api.post(api._url("/daemon/update"), json=body)
    return reply.status_code, reply.text


def labels_of(api: docker_py.APIClient) -> list[str]:
    return [label for label in api.info()["Labels"]
            if not label.startswith(("node_ip=", "SN="))]


def test_info_shows_the_registries_as_configured(configured: PouchDaemon):
    with docker_py.APIClient(base_url=configured.host, version="1.41") as api:
        registry = api.info()["RegistryConfig"]
    assert registry["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "10.9.0.0/16"]
    assert registry["Mirrors"] == ["https://mirror.example:5000"]
    assert registry["IndexConfigs"]["registry.example:5000"]["Secure"] is False
    assert registry["IndexConfigs"]["docker.io"]["Mirrors"] == ["https://mirror.example:5000"]
    text = configured.docker("info")
    insecure = text.partition(" Insecure Registries:\n")[2].partition("\n Registry Mirrors")[0]
    assert sorted(insecure.split()) == ["10.9.0.0/16", "127.0.0.0/8", "registry.example:5000"]
    assert " Registry Mirrors:\n  https://mirror.example:5000\n" in text


def test_a_plain_tcp_listener_is_warned_of(configured: PouchDaemon):
    tcp = next(a for a in configured.extra_args if a.startswith("tcp://"))
    shown = configured.docker_result("info")
    assert shown.returncode == 0, shown.stderr
    where = tcp.removeprefix("tcp://")
    assert f"WARNING: API is accessible on http://{where} without encryption." in shown.stderr


def test_daemon_update_changes_the_labels_info_lists_until_pouchd_restarts(
        configured: PouchDaemon):
    with docker_py.APIClient(base_url=configured.host, version="1.41") as api:
        assert labels_of(api) == ["zone=eu", "rack=r7"]
        assert update(api, {"Labels": ["rack=r9", "team=core"]}) == (200, "")
        assert labels_of(api) == ["zone=eu", "rack=r9", "team=core"]
        assert "  team=core\n" in configured.docker("info") + "\n"

        # The image proxy and the labels change together, and each alone.
        assert update(api, {"ImageProxy": "http://proxy.example:3128"}) == (200, "")
        assert labels_of(api) == ["zone=eu", "rack=r9", "team=core"]
        assert api.info()["HttpProxy"] == "http://proxy.example:3128"

        # A crashed system actor reads them anew: the change stays.
        old = configured.pid_of("system")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: configured.pid_of("system") != old and quiet_info(api) is not None,
                 30, "a new system actor")
        assert labels_of(api) == ["zone=eu", "rack=r9", "team=core"]

        status, text = update(api, {"Labels": ["nokey"]})
        assert status == 400 and "label 'nokey' is not key=value" in text
        status, text = update(api, {"Labels": "zone=us"})
        assert status == 400 and "Labels must be a list of strings" in text
        assert labels_of(api) == ["zone=eu", "rack=r9", "team=core"]

    # As pouchd's, the change is not written to the flags or the config file: pouchd
    # started anew begins from them again.
    assert configured.proc is not None
    configured.proc.send_signal(signal.SIGTERM)
    assert configured.proc.wait(30) == 0
    configured.start()
    with docker_py.APIClient(base_url=configured.host, version="1.41") as api:
        assert labels_of(api) == ["zone=eu", "rack=r7"]
        assert api.info()["HttpProxy"] == "http://127.0.0.1:9"


def test_a_sighup_reads_the_labels_of_the_config_file_again(tmp_path: Path):
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"label": ["zone=eu"]}))
    pouchd = PouchDaemon(extra_args=["--config-file", str(config)])
    try:
        pouchd.start()
        with docker_py.APIClient(base_url=pouchd.host, version="1.41") as api:
            assert labels_of(api) == ["zone=eu"]
            config.write_text(json.dumps({"label": ["zone=us", "team=core"]}))
            assert pouchd.proc is not None
            pouchd.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: labels_of(api) == ["zone=us", "team=core"], 10,
                     "the file's labels in /info")
    finally:
        pouchd.stop()
