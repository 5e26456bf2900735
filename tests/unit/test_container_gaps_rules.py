"""Pure rules behind `docker ps`'s filters and joining another container's namespaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pouch.actors.container import joins, listing
from pouch.proto.envelope import PouchError


def record(**state: Any) -> dict[str, Any]:
    return {"Id": "ab" * 32, "Name": "/web", "Image": "sha256:" + "c" * 64,
            "State": {"Status": "running", "ExitCode": 0, **state},
            "Config": {"Image": "busybox", "Labels": {"tier": "front"}},
            "HostConfig": {"NetworkMode": "none"},
            "NetworkSettings": {"Networks": {"none": {"NetworkID": "none"}},
                                "Ports": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                          "53/udp": None}},
            "Mounts": [{"Name": "data", "Source": "/v/data", "Destination": "/data"}]}


def refused(filters: dict[str, list[str]]) -> str:
    with pytest.raises(PouchError) as caught:
        listing.check(filters)
    return caught.value.message


def test_filter_values_are_checked_in_dockerds_words():
    assert refused({"health": ["sick"]}) == "Unrecognised filter value for health: sick"
    assert refused({"is-task": ["maybe"]}) == "invalid filter 'is-task=[maybe]'"
    assert refused({"status": ["up"]}) == "invalid filter 'status=up'"
    assert refused({"publish": ["80:80"]}) == "filter for 'publish' should not contain ':': 80:80"
    assert "Invalid containerPort" in refused({"expose": ["web"]})
    assert refused({"exited": ["x"]}) == 'strconv.Atoi: parsing "x": invalid syntax'
    assert refused({"bogus": ["1"]}) == "invalid filter 'bogus'"
    assert listing.ports("publish", "8000-8002/udp") == {"8000/udp", "8001/udp", "8002/udp"}


@pytest.mark.parametrize(("filters", "kept"), [
    ({"health": ["none"]}, True), ({"health": ["healthy"]}, False),
    ({"isolation": ["default"]}, True), ({"isolation": ["hyperv"]}, False),
    ({"is-task": ["false"]}, True), ({"is-task": ["true"]}, False),
    ({"volume": ["data"]}, True), ({"volume": ["/data"]}, True), ({"volume": ["x"]}, False),
    ({"network": ["none"]}, True), ({"network": ["no"]}, True), ({"network": ["br"]}, False),
    ({"publish": ["8080"]}, True), ({"publish": ["80"]}, False),
    ({"expose": ["80"]}, True), ({"expose": ["53/udp"]}, True), ({"expose": ["53"]}, False),
    ({"name": ["^web$"]}, True), ({"name": ["^/web$"]}, True), ({"name": ["db"]}, False),
    ({"label": ["tier=front"]}, True),
    # The actor resolves ancestor names to image IDs first (as dockerd).
    ({"ancestor": ["sha256:" + "c" * 64]}, True), ({"ancestor": ["busybox"]}, False),
])
def test_filters_pick_containers(filters: dict[str, list[str]], kept: bool):
    assert listing.passes(record(), listing.check(filters)) is kept


def test_health_filter_reads_the_status():
    assert listing.passes(record(Health={"Status": "healthy"}), {"health": ["healthy"]})


def donor(ipc_mode: str = "shareable", running: bool = True, restarting: bool = False
          ) -> joins.Donor:
    return joins.Donor(id="d" * 64, pid=4242 if running else 0, running=running,
                       restarting=restarting, ipc_mode=ipc_mode)


def test_ipc_donor_must_run_and_be_shareable():
    assert joins.ipc_donor("db", lambda ref: donor()).pid == 4242
    for bad, code, words in (
            (donor("private"), "invalid", "non-shareable IPC (hint: use IpcMode:shareable"),
            (donor(running=False), "conflict", f"container {'d' * 64} is not running"),
            (donor(restarting=True), "conflict", "is restarting, wait until")):
        with pytest.raises(PouchError) as caught:
            joins.ipc_donor("db", {"db": bad}.__getitem__)
        assert caught.value.code == code and words in caught.value.message
        assert caught.value.message.startswith("can't join IPC of container db")


def test_pid_donor_not_found_says_so():
    def missing(ref: str) -> joins.Donor:
        raise PouchError("not_found", f"No such container: {ref}")

    with pytest.raises(PouchError) as caught:
        joins.pid_donor("gone", missing)
    assert caught.value.code == "not_found"
    assert caught.value.message == ("cannot join PID of a non running container: gone: "
                                    "No such container: gone")


def test_joined_spec_points_at_the_donors_task_and_its_dev_shm():
    namespaces = [{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}]
    spec: dict[str, Any] = {"linux": {"namespaces": namespaces},
                            "mounts": [{"destination": "/dev"}, {"destination": "/dev/mqueue"},
                                       {"destination": "/etc/hosts"}]}
    out = joins.joined_spec(spec, donor(), donor(), "/home/containers/d/mounts/shm")
    assert out["linux"]["namespaces"] == [
        {"type": "mount"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "pid", "path": "/proc/4242/ns/pid"}]
    assert [m["destination"] for m in out["mounts"]] == [
        "/dev", "/dev/mqueue", "/dev/shm", "/etc/hosts"]
    assert out["mounts"][2]["source"] == "/home/containers/d/mounts/shm"
    assert spec["mounts"][2] == {"destination": "/etc/hosts"}  # the input is left alone


def test_the_dev_shm_of_a_chain_of_joins_is_its_first_donors():
    chain = {"b": donor("container:a"), "a": donor("shareable")}
    source = joins.shm_source(donor("container:b"), chain.__getitem__,
                              lambda cid: Path("/c") / cid)
    assert source == f"/c/{'d' * 64}/mounts/shm"
    assert joins.shm_source(donor("host"), chain.__getitem__, Path) == "/dev/shm"
