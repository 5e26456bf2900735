"""A create joins the namespaces of the donors that run already, so that a pod's first
start has no spec to update; a donor that does not run is left to the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pouch.actors.container import joins

POD = "d" * 64
ME = "e" * 64


def sandbox(running: bool = True) -> dict[str, Any]:
    return {"Id": POD, "State": {"Running": running, "Pid": 4242 if running else 0},
            "HostConfig": {"IpcMode": "shareable"}, "Config": {"Hostname": "pod"}}


def plain_spec() -> dict[str, Any]:
    return {"linux": {"namespaces": [{"type": "mount"}, {"type": "ipc"}, {"type": "pid"}]},
            "mounts": [{"destination": "/dev"}, {"destination": "/dev/mqueue"}]}


def folder(cid: str) -> Path:
    return Path("/c") / cid


def test_a_pods_container_is_made_in_its_running_sandboxs_namespaces():
    asked: list[str] = []

    def inspect(ref: str) -> dict[str, Any]:
        asked.append(ref)
        return sandbox()

    host = {"IpcMode": f"container:{POD}", "PidMode": f"container:{POD}"}
    out = joins.initial_spec(plain_spec(), inspect, folder, ME, host)
    assert out["linux"]["namespaces"] == [
        {"type": "mount"}, {"type": "ipc", "path": "/proc/4242/ns/ipc"},
        {"type": "pid", "path": "/proc/4242/ns/pid"}]
    assert [m["destination"] for m in out["mounts"]] == ["/dev", "/dev/mqueue", "/dev/shm"]
    assert out["mounts"][2]["source"] == f"/c/{POD}/mounts/shm"
    assert asked == [POD]  # one donor for both namespaces: asked about once


def test_a_donor_that_does_not_run_is_left_to_the_start():
    host = {"IpcMode": f"container:{POD}", "PidMode": f"container:{POD}"}
    assert joins.initial_spec(plain_spec(), lambda ref: sandbox(running=False), folder, ME,
                              host) == plain_spec()


def test_a_shareable_container_is_made_with_its_own_dev_shm_bound():
    def inspect(ref: str) -> dict[str, Any]:
        raise AssertionError(f"no donor to ask about, asked about {ref}")

    out = joins.initial_spec(plain_spec(), inspect, folder, ME, {"IpcMode": "shareable"})
    assert out["mounts"][2] == {"destination": "/dev/shm", "type": "bind",
                                "source": f"/c/{ME}/mounts/shm",
                                "options": ["rbind", "rprivate"]}
    assert out["linux"] == plain_spec()["linux"]
    assert joins.initial_spec(plain_spec(), inspect, folder, ME,
                              {"IpcMode": "private"}) == plain_spec()
