"""The rules behind `--network container:X`, docker cp's mounts and the routes of
volumes and networks named like an action: plain values, folders in tmp_path, and a
falcon app in memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest

from pouch.actors import mountpoints
from pouch.actors.container import cproot, joins
from pouch.actors.container.spec.mounts import Planned
from pouch.actors.container.spec.namespaces import check_network_join, namespaces
from pouch.gateway.routing import action_or_item
from pouch.proto.envelope import PouchError, not_found

DONOR_ID = "d" * 64


def donor(running: bool = True, **fields: Any) -> joins.Donor:
    return joins.Donor.of({
        "Id": DONOR_ID, "State": {"Pid": 4242 if running else 0, "Running": running,
                                  "Restarting": False},
        "HostConfig": {}, "Config": {"Hostname": "shared"},
        "HostnamePath": "/c/d/hostname", "HostsPath": "/c/d/hosts",
        "ResolvConfPath": "/c/d/resolv.conf", **fields})


def find(ref: str) -> joins.Donor:
    if ref in ("web", DONOR_ID):
        return donor()
    raise not_found(f"No such container: {ref}")


def test_a_join_is_recorded_by_the_other_containers_id():
    assert joins.network_mode("c" * 64, "container:web", find) == f"container:{DONOR_ID}"
    assert joins.network_mode("c" * 64, "bridge", find) == "bridge"
    with pytest.raises(PouchError) as missing:
        joins.network_mode("c" * 64, "container:nobody", find)
    assert (missing.value.code, missing.value.message) == ("invalid",
                                                           "No such container: nobody")
    with pytest.raises(PouchError, match="cannot join own network"):
        joins.network_mode(DONOR_ID, "container:web", find)


def test_the_other_container_must_run_in_dockerds_words():
    with pytest.raises(PouchError) as stopped:
        joins.network_donor("c" * 64, "web", lambda ref: donor(running=False))
    assert (stopped.value.code, stopped.value.message) == (
        "conflict", "cannot join network of a non running container: web")
    assert joins.network_donor("c" * 64, "web", find).pid == 4242


def test_a_joined_spec_has_the_others_namespace_hostname_and_network_files():
    spec = {"hostname": "mine", "linux": {"namespaces": [{"type": "mount"},
                                                         {"type": "network"}]},
            "mounts": [{"destination": "/etc/hosts", "type": "bind", "source": "/c/me/hosts"},
                       {"destination": "/data", "type": "bind", "source": "/v"},
                       # a bind of the user's (a pod's resolv.conf) stays
                       {"destination": "/etc/resolv.conf", "type": "bind",
                        "source": "/pod/resolv.conf"}]}
    out = joins.joined_spec(spec, None, None, "", donor(),
                            ["/c/me/hosts", "/c/me/resolv.conf"])
    assert {"type": "network", "path": "/proc/4242/ns/net"} in out["linux"]["namespaces"]
    assert [e for e in out["linux"]["namespaces"] if e["type"] == "network"] == [
        {"type": "network", "path": "/proc/4242/ns/net"}]
    assert out["hostname"] == "shared"
    assert [m["source"] for m in out["mounts"]] == ["/c/d/hosts", "/v", "/pod/resolv.conf"]
    assert spec["hostname"] == "mine"  # pure
    record: dict[str, Any] = {"Config": {"Hostname": "mine"}, "HostsPath": "/c/me/hosts"}
    joins.share_network(record, donor())
    assert (record["Config"]["Hostname"], record["HostsPath"]) == ("shared", "/c/d/hosts")


def test_joining_is_prepared_at_each_start():
    assert joins.prepares({"NetworkMode": "container:web"})
    assert not joins.prepares({"NetworkMode": "bridge"})
    ns = namespaces({}, "container:web", None)  # the path comes at start
    assert {"type": "network"} in ns.entries and not ns.private_network


@pytest.mark.parametrize(("config", "words"), [
    ({"Hostname": "h"}, "conflicting options: hostname and the network mode"),
    ({"MacAddress": "02:42:ac:11:00:02"}, "conflicting options: mac-address and the network "
                                          "mode"),
    ({"ExposedPorts": {"80/tcp": {}}}, "conflicting options: port exposing and the container "
                                       "type network mode"),
    ({"HostConfig": {"Dns": ["1.1.1.1"]}}, "conflicting options: dns and the network mode"),
    ({"HostConfig": {"PublishAllPorts": True}}, "conflicting options: port publishing and the "
                                                "container type network mode"),
])
def test_what_a_joiner_cannot_have(config: dict[str, Any], words: str):
    host = {"NetworkMode": "container:web", **config.pop("HostConfig", {})}
    with pytest.raises(PouchError, match=words):
        check_network_join({**config, "HostConfig": host})
    check_network_join({**config, "HostConfig": {**host, "NetworkMode": "bridge"}})


def test_an_empty_container_reference_is_refused():
    with pytest.raises(PouchError) as refused:
        check_network_join({"HostConfig": {"NetworkMode": "container:"}})
    assert "invalid container format container:<name|id>" in refused.value.message


# -- docker cp's mounts ----------------------------------------------------------------


def test_binds_are_volumes_and_binds_parents_first_then_network_files(tmp_path: Path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    planned = [Planned("volume", "/a/b", source="/v2", rw=False),
               Planned("tmpfs", "/run"), Planned("bind", "/a", source="/host"),
               Planned("bind", "/etc/resolv.conf", source="/mine")]
    record = {"HostsPath": str(hosts), "ResolvConfPath": str(hosts),
              "HostnamePath": str(tmp_path / "missing"), "HostConfig": {}}
    binds = cproot.binds_of(planned, record, {"/a/b": "/v2-moved"})
    assert binds == [cproot.Bind("/host", "/a", False),
                     cproot.Bind("/v2-moved", "/a/b", True),
                     cproot.Bind("/mine", "/etc/resolv.conf", False),
                     cproot.Bind(str(hosts), "/etc/hosts", False)]


def test_a_copy_in_needs_a_writable_mount_or_root():
    planned = [Planned("volume", "/data", source="/v"),
               Planned("bind", "/data/ro", source="/h", rw=False)]
    cproot.check_writable("/data/x/../y", planned, readonly_rootfs=True)
    for path, rootfs, words in (("/data/ro/f", False, "mounted volume is marked read-only"),
                                ("/datax/f", True, "container rootfs is marked read-only"),
                                ("/data/../etc", True, "container rootfs is marked read-only")):
        with pytest.raises(PouchError) as refused:
            cproot.check_writable(path, planned, rootfs)
        assert refused.value.message == words
    cproot.check_writable("/etc", planned, readonly_rootfs=False)


@pytest.fixture
def root(tmp_path: Path):
    """A container's root: a symlink to a host folder, a relative one climbing out."""
    tree, host = tmp_path / "root", tmp_path / "host"
    (tree / "mnt").mkdir(parents=True)
    host.mkdir()
    (tree / "mnt" / "out").symlink_to(host)
    (tree / "mnt" / "up").symlink_to("../../..")
    source = tmp_path / "volume"
    source.mkdir()
    (source / "f").write_text("volume\n")
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    yield tree, host, source, fd
    os.close(fd)
    for point in reversed(mountpoints.mounted_under(tree)):
        mountpoints.unmount(point)


def test_a_bind_lands_inside_the_root_whatever_the_symlinks(root):
    tree, host, source, fd = root
    for destination in ("/mnt/out", "/mnt/up/deep/er"):
        assert cproot.bind_at(fd, cproot.Bind(str(source), destination, False),
                              readonly=True, create=True)
    # /mnt/out leads to the host folder's path inside the root, made there.
    assert (tree / host.relative_to("/") / "f").read_text() == "volume\n"
    assert (tree / "deep" / "er" / "f").read_text() == "volume\n"
    assert sorted(p.name for p in host.iterdir()) == []
    with pytest.raises(OSError):
        (tree / "deep" / "er" / "g").write_text("refused: read-only")


def test_a_missing_mount_point_is_left_out_unless_made(root):
    tree, _, source, fd = root
    assert not cproot.bind_at(fd, cproot.Bind(str(source), "/absent", False), readonly=True,
                              create=False)
    assert not (tree / "absent").exists()


# -- routes of volumes and networks named like an action -------------------------------


class Created:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"made": True}


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.media = {"name": name}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.status = falcon.HTTP_204


def test_every_method_reaches_an_object_named_like_the_action():
    app = falcon.App()
    item = Item()
    app.add_route("/volumes/create", action_or_item(Created(), item, name="create"))
    app.add_route("/volumes/{name}", item)
    client = falcon.testing.TestClient(app)
    assert client.simulate_post("/volumes/create").json == {"made": True}
    assert client.simulate_get("/volumes/create").json == {"name": "create"}
    assert client.simulate_delete("/volumes/create").status_code == 204
    assert client.simulate_get("/volumes/other").json == {"name": "other"}
    assert client.simulate_put("/volumes/create").status_code == 405
