"""Volumes and networks as a user meets them at their edges: a volume or network named
`create` or `prune`, `:z` on -v, `--network container:<name>`, and `docker cp` and
`docker export` seeing a container's volumes and bind mounts."""

from __future__ import annotations

import json
import tarfile
import uuid
from collections.abc import Iterator

import pytest

from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.volumes import fails
from pouch.tests.support.wait import wait_for


@pytest.fixture
def action_names(daemon: PouchDaemon) -> Iterator[None]:
    """The volumes and networks named `create` and `prune` are gone before and after."""
    def clean() -> None:
        for name in ("create", "prune"):
            daemon.docker_result("volume", "rm", "-f", name)
            daemon.docker_result("network", "rm", name)
    clean()
    yield
    clean()


@pytest.mark.usefixtures("action_names")
@pytest.mark.parametrize("name", ["create", "prune"])
def test_a_volume_named_like_an_action_is_inspected_and_removed(daemon: PouchDaemon, name):
    docker = daemon.docker
    assert docker("volume", "create", name) == name
    assert json.loads(docker("volume", "inspect", name))[0]["Name"] == name
    assert docker("volume", "rm", name) == name
    assert "no such volume" in fails(daemon, "volume", "inspect", name).lower()
    assert docker("volume", "create", "--label", "keep=1", "other-" + name)  # POST still creates
    docker("volume", "rm", "other-" + name)


@pytest.mark.usefixtures("action_names")
@pytest.mark.parametrize("name", ["create", "prune"])
def test_a_network_named_like_an_action_is_inspected_and_removed(daemon: PouchDaemon, name):
    docker = daemon.docker
    nid = docker("network", "create", name)
    assert json.loads(docker("network", "inspect", name))[0]["Id"] == nid
    assert docker("network", "rm", name) == name
    assert "not found" in fails(daemon, "network", "inspect", name).lower()


def test_prune_still_prunes_while_a_volume_is_named_prune(daemon: PouchDaemon,
                                                          action_names: None) -> None:
    docker = daemon.docker
    label = f"gap={uuid.uuid4().hex[:8]}"  # this test's volumes only: the daemon is shared
    docker("volume", "create", "--label", label, "prune")
    assert "prune" in docker("volume", "prune", "-f", "--filter", f"label={label}").split()
    assert "prune" not in docker("volume", "ls", "-q").split()


def test_z_on_a_bind_mount_is_accepted_and_changes_nothing_without_selinux(
        daemon: PouchDaemon, name: str, tmp_path) -> None:
    """dockerd relabels for :z and :Z only where SELinux is on; here it is not."""
    (tmp_path / "f").write_text("seen\n")
    volume = f"z-{uuid.uuid4().hex[:8]}"
    try:
        out = daemon.docker("run", "--rm", "--name", name, "-v", f"{tmp_path}:/data:z",
                            "-v", f"{volume}:/v:Z", "busybox", "sh", "-c",
                            "cat /data/f && echo w > /v/f && cat /v/f")
        assert out.split() == ["seen", "w"]
    finally:
        daemon.docker_result("volume", "rm", volume)



def eth0(daemon: PouchDaemon, container: str) -> str:
    """The address and MAC of eth0 as the container sees them."""
    return daemon.docker("exec", container, "sh", "-c",
                         "ip -o -4 addr show eth0 | awk '{print $4}'; cat /sys/class/net/eth0/"
                         "address")


def test_a_container_joins_anothers_network(daemon: PouchDaemon, names) -> None:
    docker = daemon.docker
    donor, joiner = names("donor"), names("joiner")
    donor_id = docker("run", "-d", "--name", donor, "--network", "bridge", "--hostname",
                      "shared-host", "busybox", "sleep", "300")
    docker("run", "-d", "--name", joiner, "--network", f"container:{donor}", "busybox",
           "sleep", "300")
    seen = eth0(daemon, donor)
    assert seen.split()[0].startswith(daemon.inspect(donor)["NetworkSettings"]["IPAddress"])
    assert eth0(daemon, joiner) == seen  # the same interface: one namespace
    assert docker("exec", joiner, "hostname") == "shared-host"
    assert docker("exec", joiner, "cat", "/etc/hosts") == docker("exec", donor, "cat",
                                                                  "/etc/hosts")
    found = daemon.inspect(joiner)
    assert found["HostConfig"]["NetworkMode"] == f"container:{donor_id}"
    assert found["Config"]["Hostname"] == "shared-host"
    assert found["HostsPath"] == daemon.inspect(donor)["HostsPath"]
    # A server in one listens on the other's loopback: the same network stack.
    docker("exec", "-d", donor, "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc")
    wait_for(lambda: "127.0.0.1:8080" in docker("exec", joiner, "netstat", "-ltn"), 10,
             "the donor's server seen from the joiner")


def test_the_joined_container_must_run(daemon: PouchDaemon, names) -> None:
    docker = daemon.docker
    donor, joiner = names("donor"), names("joiner")
    donor_id = docker("create", "--name", donor, "--network", "bridge", "busybox",
                      "sleep", "300")
    docker("create", "--name", joiner, "--network", f"container:{donor_id}", "busybox",
           "sleep", "300")
    said = fails(daemon, "start", joiner)
    assert f"cannot join network of a non running container: {donor_id}" in said
    docker("start", donor)
    docker("start", joiner)
    assert daemon.inspect(joiner)["State"]["Running"]
    assert "No such container: nobody-here" in fails(
        daemon, "create", "--network", "container:nobody-here", "busybox")


@pytest.mark.parametrize(("option", "words"), [
    (["--hostname", "h"], "conflicting options: hostname and the network mode"),
    (["--dns", "1.1.1.1"], "conflicting options: dns and the network mode"),
    (["--add-host", "a:10.0.0.1"], "conflicting options: custom host-to-IP mapping and the "
                                   "network mode"),
    (["-p", "8080:80"], "conflicting options: port publishing and the container type "
                        "network mode"),
    (["--expose", "80"], "conflicting options: port exposing and the container type "
                         "network mode"),
])
def test_a_joiner_cannot_have_network_settings_of_its_own(daemon: PouchDaemon, name: str,
                                                          option: list[str], words: str) -> None:
    said = fails(daemon, "create", "--name", name, "--network", "container:whoever", *option,
                 "busybox")
    assert words in said


# -- docker cp and docker export with volumes and binds --------------------------------


@pytest.fixture
def volume(daemon: PouchDaemon) -> Iterator[str]:
    """A named volume, removed after the test with the containers that use it."""
    made = f"cpv-{uuid.uuid4().hex[:8]}"
    yield made
    users = daemon.docker_result("ps", "-aq", "--filter", f"volume={made}").stdout.split()
    if users:
        daemon.docker_result("rm", "-f", *users)
    daemon.docker("volume", "rm", "-f", made)


def with_mounts(daemon: PouchDaemon, name: str, volume: str, bound, *how: str) -> None:
    """A container with `volume` at /mnt/vol and the host folder `bound` at /mnt/bound,
    each holding a file it wrote."""
    daemon.docker(*how, "--name", name, "-v", f"{volume}:/mnt/vol", "-v", f"{bound}:/mnt/bound",
                  "busybox", "sh", "-c", "echo in-volume > /mnt/vol/f; "
                  "echo in-layer > /mnt/layer; exec sleep 300")


def copied(daemon: PouchDaemon, source: str, into) -> None:
    daemon.docker("cp", source, str(into))


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_cp_out_sees_volumes_and_binds(daemon: PouchDaemon, name: str, volume: str,
                                       tmp_path, state: str) -> None:
    bound = tmp_path / "bound"
    bound.mkdir()
    (bound / "g").write_text("in-bind\n")
    with_mounts(daemon, name, volume, bound, "run", "-d")
    wait_for(lambda: daemon.docker_result("exec", name, "cat", "/mnt/vol/f").stdout
             == "in-volume\n", 10, "the container's writes")
    if state == "stopped":
        daemon.docker("stop", "-t", "0", name)
    out = tmp_path / "out"
    out.mkdir()
    copied(daemon, f"{name}:/mnt", out)  # the folder above both mounts
    assert (out / "mnt" / "vol" / "f").read_text() == "in-volume\n"
    assert (out / "mnt" / "bound" / "g").read_text() == "in-bind\n"
    assert (out / "mnt" / "layer").read_text() == "in-layer\n"
    copied(daemon, f"{name}:/mnt/vol/f", out / "f")
    assert (out / "f").read_text() == "in-volume\n"
    stat = daemon.docker_result("exec", name, "true") if state == "running" else None
    assert stat is None or stat.returncode == 0


@pytest.mark.parametrize("state", ["running", "stopped", "created"])
def test_cp_in_writes_into_volumes_and_binds(daemon: PouchDaemon, name: str, volume: str,
                                             tmp_path, state: str) -> None:
    bound = tmp_path / "bound"
    bound.mkdir()
    with_mounts(daemon, name, volume, bound, *(["create"] if state == "created" else
                                               ["run", "-d"]))
    if state == "stopped":
        daemon.docker("stop", "-t", "0", name)
    (tmp_path / "new").write_text("copied\n")
    copied(daemon, str(tmp_path / "new"), f"{name}:/mnt/vol/new")
    copied(daemon, str(tmp_path / "new"), f"{name}:/mnt/bound/new")
    assert (bound / "new").read_text() == "copied\n"
    assert daemon.docker("run", "--rm", "-v", f"{volume}:/v", "busybox", "cat",
                         "/v/new") == "copied"
    out = tmp_path / "out"
    out.mkdir()
    copied(daemon, f"{name}:/mnt/vol", out)  # and read back through the container
    assert (out / "vol" / "new").read_text() == "copied\n"


def test_cp_never_follows_a_symlink_out_of_the_container(daemon: PouchDaemon, name: str,
                                                         volume: str, tmp_path) -> None:
    """A bind's symlink to a host folder leads, inside the container, to the container's
    folder of that name: a copy through it never reaches the host's."""
    bound, outside = tmp_path / "bound", tmp_path / "outside"
    bound.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host only\n")
    (bound / "escape").symlink_to(outside)
    (bound / "up").symlink_to("../../../..")
    with_mounts(daemon, name, volume, bound, "create")
    (tmp_path / "new").write_text("copied\n")
    for state in ("created", "running"):
        if state == "running":
            daemon.docker("start", name)
        assert daemon.docker_result("cp", str(tmp_path / "new"),
                                    f"{name}:/mnt/bound/escape/").returncode != 0
        # ../../../.. from /mnt/bound is the container's root, not the host's folder.
        daemon.docker("cp", str(tmp_path / "new"), f"{name}:/mnt/bound/up/new-up")
        out = tmp_path / f"out-{state}"
        out.mkdir()
        assert daemon.docker_result("cp", f"{name}:/mnt/bound/escape/secret",
                                    str(out)).returncode != 0
        daemon.docker("cp", f"{name}:/new-up", str(out))
        assert (out / "new-up").read_text() == "copied\n"
        assert sorted(p.name for p in outside.iterdir()) == ["secret"]
        assert not (bound / "up" / "new-up").exists()


def test_export_leaves_volumes_out_as_dockerd_does(daemon: PouchDaemon, name: str,
                                                   volume: str, tmp_path) -> None:
    """dockerd's export is the container's layers: a volume's files are not in it, the
    folder under the volume is (docs: docker container export)."""
    bound = tmp_path / "bound"
    bound.mkdir()
    (bound / "g").write_text("in-bind\n")
    with_mounts(daemon, name, volume, bound, "run", "-d")
    wait_for(lambda: daemon.docker_result("exec", name, "cat", "/mnt/layer").stdout
             == "in-layer\n", 10, "the container's writes")
    tarball = tmp_path / "export.tar"
    daemon.docker("export", "-o", str(tarball), name)
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert "mnt/layer" in names and "mnt/vol" in names
    assert "mnt/vol/f" not in names and "mnt/bound/g" not in names


def test_cp_into_a_read_only_container_reaches_its_writable_volumes_only(
        daemon: PouchDaemon, name: str, volume: str, tmp_path) -> None:
    """dockerd's rule: with --read-only a copy may go into a volume, not elsewhere; never
    into a volume mounted read-only."""
    bound = tmp_path / "bound"
    bound.mkdir()
    daemon.docker("run", "-d", "--name", name, "--read-only", "-v", f"{volume}:/data",
                  "-v", f"{bound}:/ro:ro", "busybox", "sleep", "300")
    (tmp_path / "new").write_text("copied\n")
    copied(daemon, str(tmp_path / "new"), f"{name}:/data/new")
    assert daemon.docker("exec", name, "cat", "/data/new") == "copied"
    assert "container rootfs is marked read-only" in fails(
        daemon, "cp", str(tmp_path / "new"), f"{name}:/tmp/new")
    assert "mounted volume is marked read-only" in fails(
        daemon, "cp", str(tmp_path / "new"), f"{name}:/ro/new")
    assert list(bound.iterdir()) == []
