"""The walking skeleton, told the way a user of the docker CLI would tell it."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest

from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.tools import require


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_loaded_image_is_listed_with_its_id(docker, busybox_tarball: Path):
    manifest = json.loads(_member(busybox_tarball, "manifest.json"))
    config_hex = manifest[0]["Config"].removesuffix(".json").split("/")[-1]
    assert docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}") == \
        f"busybox:latest {config_hex[:12]}"
    image = json.loads(docker("image", "inspect", "busybox"))[0]
    assert image["Id"] == f"sha256:{config_hex}"
    assert image["RepoTags"] == ["busybox:latest"]
    assert image["Config"]["Cmd"] == ["sh"]
    # Every field of Docker's config, as dockerd shows it, those the image leaves out too.
    assert image["Config"]["Entrypoint"] is None and image["Config"]["WorkingDir"] == ""
    assert image["ContainerConfig"]["Tty"] is False
    assert image["Os"] == "linux"


def test_run_rm_prints_hi_and_leaves_nothing(docker, daemon: PouchDaemon):
    name = unique("hi")
    result = daemon.docker_result("run", "--rm", "--name", name, "busybox", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n")
    assert name not in docker("ps", "-a", "--format", "{{.Names}}")


def test_exit_status_and_streams_stay_apart(daemon: PouchDaemon):
    name = unique("streams")
    result = daemon.docker_result("run", "--name", name, "busybox",
                                  "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert "err" in result.stderr and "out" not in result.stderr
    state = daemon.inspect(name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 3)
    daemon.docker("rm", name)


def test_logs_keep_both_streams_in_order(docker, daemon: PouchDaemon):
    name = unique("logs")
    daemon.docker_result("run", "--name", name, "busybox",
                         "sh", "-c", "echo one; echo two >&2; echo three")
    result = daemon.docker_result("logs", name)
    assert result.stdout == "one\nthree\n"
    assert result.stderr == "two\n"
    # The two pipes are read apart, as in Docker: only the stdout order is certain.
    last = daemon.docker_result("logs", "--tail", "1", name)
    assert (last.stdout + last.stderr) in ("three\n", "two\n")
    stamped = docker("logs", "--timestamps", name).splitlines()
    assert stamped[0].endswith(" one") and stamped[0][:4].isdigit()
    docker("rm", name)


def test_run_rm_of_what_cannot_start_says_why_once(daemon: PouchDaemon):
    result = daemon.docker_result("run", "--rm", "busybox", "/nonexist")
    assert result.returncode == 127
    assert "no such file or directory" in result.stderr
    assert "Error waiting for container" not in result.stderr  # said once, as by dockerd


def test_a_container_that_could_not_start_stays_created(docker, daemon: PouchDaemon, name):
    assert daemon.docker_result("run", "--name", name, "busybox", "/nonexist").returncode == 127
    state = json.loads(docker("inspect", "-f", "{{json .State}}", name))
    # As dockerd: it never ran, so it is still created, with why and the code kept.
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("created", 127, False)
    assert "/nonexist" in state["Error"]
    assert docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}") == \
        "Created"
    assert daemon.docker_result("start", name).returncode != 0  # and may be tried again
    assert docker("inspect", "-f", "{{.State.Status}}", name) == "created"


def test_start_a_of_an_exited_container_prints_its_new_run(docker, daemon: PouchDaemon):
    name = unique("again")
    assert daemon.docker_result("run", "--name", name, "busybox", "sh", "-c",
                                "echo run; echo oops >&2; exit 4").returncode == 4
    # The CLI attaches before it starts: the attach waits for the next run, as dockerd's.
    for _ in range(2):
        result = daemon.docker_result("start", "-a", name)
        assert (result.returncode, result.stdout, result.stderr) == (4, "run\n", "oops\n")
    assert docker("logs", name).count("run") == 3
    docker("rm", name)


def test_an_attach_to_an_exited_container_takes_its_next_run(daemon: PouchDaemon, api):
    name = unique("attach-next")
    cid = api.create_container("busybox", ["echo", "next"], name=name)["Id"]
    api.start(cid)
    assert api.wait(cid, timeout=20)["StatusCode"] == 0
    frames = api.attach(cid, stream=True, logs=False)
    api.start(cid)
    assert b"".join(frames) == b"next\n"
    api.remove_container(cid)


def test_a_detached_container_is_listed_inspected_and_force_removed(docker, daemon):
    name = unique("sleeper")
    cid = docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    assert len(cid) == 64
    assert docker("ps", "--format", "{{.Names}} {{.Status}}").count(f"{name} Up") == 1
    info = daemon.inspect(name)
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["Name"] == f"/{name}" and info["Config"]["Cmd"] == ["sleep", "300"]
    assert info["HostConfig"]["Runtime"] == "runc"
    folder = daemon.home / "containers" / cid
    assert {p.name for p in folder.iterdir()} >= {"meta.json", "hostname", "hosts",
                                                   "resolv.conf", "json.log"}
    assert json.loads((folder / "meta.json").read_text())["Id"] == cid
    assert (folder / "hostname").read_text() == cid[:12] + "\n"
    docker("rm", "-f", name)
    assert name not in docker("ps", "-a", "--format", "{{.Names}}")
    assert not folder.exists()


def test_the_container_sees_its_hostname_env_and_workdir(docker):
    out = docker("run", "--rm", "--hostname", "box", "--domainname", "example.org", "-e",
                 "COLOR=blue", "-w", "/tmp", "busybox", "sh", "-c",
                 "hostname; echo $COLOR; pwd; cat /etc/hostname; cat /proc/sys/kernel/domainname")
    assert out.splitlines() == ["box", "blue", "/tmp", "box", "example.org"]


def test_user_and_entrypoint_are_honoured(docker):
    assert docker("run", "--rm", "--user", "nobody", "busybox", "id", "-u") == "65534"
    assert docker("run", "--rm", "--entrypoint", "echo", "busybox", "from", "entry") == \
        "from entry"


def test_the_images_env_user_and_workdir_are_the_containers(docker, name):
    # As dockerd merges them into the container's config: inspect, exec and commit see them.
    image = f"merged-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, "busybox")
    docker("commit", "-c", "ENV B=2", "-c", "USER 1000", "-c", "WORKDIR /wd", name, image)
    docker("rm", name)
    docker("run", "-d", "--name", name, "-e", "FOO=1", image, "sleep", "60")
    config = json.loads(docker("inspect", "-f", "{{json .Config}}", name))
    assert config["Env"][0] == "FOO=1" and "B=2" in config["Env"]
    assert (config["User"], config["WorkingDir"]) == ("1000", "/wd")
    assert docker("exec", name, "sh", "-c", "id -u; pwd; echo $B").splitlines() == [
        "1000", "/wd", "2"]


def test_host_network_sees_the_hosts_interfaces(docker, name):
    out = docker("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link")
    assert "lo" in out
    none = docker("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link")
    assert len(none.splitlines()) < len(out.splitlines()) or out == none
    # ...and the host's name, in the environment and the record too (as dockerd).
    host = socket.gethostname()
    assert docker("run", "--rm", "--network", "host", "busybox", "sh", "-c",
                  "hostname; echo $HOSTNAME").splitlines() == [host, host]
    docker("create", "--name", name, "--network", "host", "busybox")
    assert docker("inspect", "-f", "{{.Config.Hostname}}", name) == host


def test_stdin_reaches_an_interactive_container(daemon):
    result = daemon.docker_result("run", "--rm", "-i", "busybox", "cat", input="piped\n")
    assert (result.returncode, result.stdout) == (0, "piped\n")


def test_unknown_things_are_404_with_dockers_words(daemon):
    with pytest.raises(DockerError) as err:
        daemon.docker("inspect", "--type", "container", "no-such-thing")
    assert "No such container" in err.value.stderr or "No such object" in err.value.stderr
    with pytest.raises(DockerError) as err:
        daemon.docker("logs", "no-such-thing")
    assert "No such container: no-such-thing" in err.value.stderr
    # Not here, so pulled: the registry cannot be reached (the test's proxy is closed).
    with pytest.raises(DockerError) as err:
        daemon.docker("create", "no-such-image:1.0")
    assert "Unable to find image 'no-such-image:1.0' locally" in err.value.stderr
    assert "cannot reach registry https://registry-1.docker.io through proxy" in err.value.stderr


def test_a_taken_name_is_a_conflict(docker, daemon):
    name = unique("taken")
    docker("create", "--name", name, "busybox")
    with pytest.raises(DockerError) as err:
        daemon.docker("create", "--name", name, "busybox")
    assert "is already in use" in err.value.stderr
    docker("rm", name)


def test_removing_a_running_container_needs_force(docker, daemon):
    name = unique("running")
    docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    with pytest.raises(DockerError) as err:
        daemon.docker("rm", name)
    assert "cannot remove a running container" in err.value.stderr
    docker("stop", "-t", "1", name)
    assert daemon.inspect(name)["State"]["Status"] == "exited"
    docker("rm", name)


def _member(tarball: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(tarball) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_metrics_count_what_the_actors_answered(docker, daemon: PouchDaemon):
    import socket

    docker("ps")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.socket))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: pouch\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    text = body.decode()
    assert 'pouch_requests_total{method="list",service="container"}' in text
    assert 'pouch_child_up{child="container"} 1.0' in text
    assert "pouch_request_seconds_bucket" in text


def test_an_interactive_terminal_works(daemon: PouchDaemon):
    import subprocess

    script, docker = require("script", "bsdutils"), require("docker", "docker.io")
    env = daemon.cli_env()
    # script gives the CLI a terminal; the shell reads its commands from it.
    result = subprocess.run(
        [script, "-qec", f"{docker} run -it --rm busybox sh", "/dev/null"],
        input="tty; stty size; exit 5\n", capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "/dev/pts/0" in result.stdout
    assert "failed to resize" not in result.stdout + result.stderr


def test_a_platform_the_local_image_is_not_of_is_not_run(daemon: PouchDaemon):
    # As dockerd: not found for that platform, so the CLI tries to pull it (no registry
    # is reachable here) instead of running the image of another architecture.
    refused = daemon.docker_result("run", "--rm", "--platform", "linux/arm64", "busybox",
                                   "true")
    assert refused.returncode == 125
    assert daemon.docker("run", "--rm", "--platform", "linux/amd64", "busybox", "echo",
                         "ok") == "ok"
