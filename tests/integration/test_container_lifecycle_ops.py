"""restart, pause and unpause, rename, update, prune, and the restart policy, told the
way a user of the docker CLI (and docker-py) sees them."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from docker.errors import APIError

from pouch.broker.client import Client
from pouch.tests.support.daemon import DockerError, PouchDaemon
from pouch.tests.support.wait import wait_for

MiB = 1024 * 1024
# A process that ends at once on SIGTERM, with status 0: proof the stop signal got there.
TRAPS_TERM = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]


def refused(daemon: PouchDaemon, *args: str) -> str:
    """The docker CLI's error output for a command that must fail."""
    with pytest.raises(DockerError) as err:
        daemon.docker(*args)
    return err.value.stderr


def state(daemon: PouchDaemon, name: str) -> dict:
    return daemon.inspect(name)["State"]


def events_of(calls: Client, cid: str, since: float, until_action: str) -> list[dict]:
    """The container's events since `since`, once `until_action` is among them."""
    def told() -> list[dict]:
        with calls.stream("system", "events", {"since": since, "until": time.time(),
                                               "filters": {"container": [cid]}},
                          timeout=20) as stream:
            history = [e for e in stream if e["Actor"]["ID"] == cid]
        return history if until_action in [e["Action"] for e in history] else []
    return wait_for(told, 10, f"the {until_action} event of {cid[:12]}")


def cgroup_file(pid: int, controller: str, v1_name: str, v2_name: str) -> Path:
    """One of the container's cgroup files, seen from the host (cgroup v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup", controller, path.lstrip("/"), v1_name)
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup", path.lstrip("/"), v2_name)
    raise AssertionError(f"no {controller} cgroup for pid {pid}")


def frozen(pid: int) -> bool:
    """Whether the cgroup freezer holds the process (read from the host)."""
    unified = ""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            state_file = Path("/sys/fs/cgroup/freezer", path.lstrip("/"), "freezer.state")
            return state_file.read_text().strip() == "FROZEN"
        if controllers == "":
            unified = path
    events = Path("/sys/fs/cgroup", unified.lstrip("/"), "cgroup.events").read_text()
    return "frozen 1" in events


def actor_pid(daemon: PouchDaemon) -> int | None:
    """The container actor's pid, or None while none is written (it is starting)."""
    try:
        return daemon.pid_of("container")
    except (OSError, ValueError):
        return None


# -- restart -------------------------------------------------------------------------


def test_restart_stops_with_the_stop_signal_then_starts_again(docker, daemon, names, calls):
    name = names("restart")
    since = time.time()
    cid = docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
    before = daemon.inspect(name)
    assert docker("restart", "-t", "30", name) == name
    after = daemon.inspect(name)
    assert after["State"]["Status"] == "running"
    assert after["State"]["Pid"] not in (0, before["State"]["Pid"])
    assert after["State"]["StartedAt"] > before["State"]["StartedAt"]
    assert after["RestartCount"] == 0
    history = events_of(calls, cid, since, "restart")
    actions = [e["Action"] for e in history]
    assert actions[actions.index("die"):] == ["die", "stop", "start", "restart"]
    # The trap answered SIGTERM: the exit was the stop's, not the SIGKILL's.
    die = next(e for e in history if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "0"


def test_restart_starts_a_container_that_does_not_run(docker, daemon, names):
    created, exited = names("restart-created"), names("restart-exited")
    docker("create", "--name", created, "busybox", "sleep", "300")
    docker("run", "-d", "--name", exited, "busybox", "sleep", "300")
    docker("stop", "-t", "0", exited)
    assert docker("restart", created, exited).splitlines() == [created, exited]
    assert state(daemon, created)["Status"] == "running"
    assert state(daemon, exited)["Status"] == "running"


def test_restart_keeps_an_auto_removed_container(docker, daemon, names):
    name = names("restart-rm")
    docker("run", "-d", "--rm", "--name", name, "busybox", "sleep", "300")
    pid = state(daemon, name)["Pid"]
    docker("restart", "-t", "0", name)
    after = state(daemon, name)
    assert after["Status"] == "running" and after["Pid"] != pid
    docker("stop", "-t", "0", name)  # its own exit still removes it
    wait_for(lambda: daemon.docker_result("inspect", name).returncode != 0, 10,
             f"{name} removed after its stop")


def test_restart_of_a_paused_container_thaws_and_restarts_it(docker, daemon, names):
    name = names("restart-paused")
    docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
    docker("pause", name)
    docker("restart", "-t", "30", name)
    after = state(daemon, name)
    assert (after["Status"], after["Paused"], after["ExitCode"]) == ("running", False, 0)


def test_restart_of_what_is_not_there_is_404_with_dockers_words(daemon):
    assert "No such container: no-such-box" in refused(daemon, "restart", "no-such-box")


# -- pause and unpause ---------------------------------------------------------------


def test_pause_freezes_the_container_and_unpause_thaws_it(docker, daemon, names, calls):
    name = names("pause")
    since = time.time()
    cid = docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    pid = state(daemon, name)["Pid"]
    assert docker("pause", name) == name
    paused = state(daemon, name)
    assert (paused["Status"], paused["Running"], paused["Paused"]) == ("paused", True, True)
    assert frozen(pid)
    listed = docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert listed.startswith("Up ") and listed.endswith("(Paused)")
    assert docker("ps", "-q", "--no-trunc", "--filter", "status=paused",
                  "--filter", f"name={name}") == cid
    assert f"Container {cid} is already paused" in refused(daemon, "pause", name)

    assert docker("unpause", name) == name
    thawed = state(daemon, name)
    assert (thawed["Status"], thawed["Paused"], thawed["Pid"]) == ("running", False, pid)
    assert not frozen(pid)
    assert f"Container {cid} is not paused" in refused(daemon, "unpause", name)
    actions = [e["Action"] for e in events_of(calls, cid, since, "unpause")]
    assert actions[-2:] == ["pause", "unpause"]


def test_pause_refuses_what_does_not_run(docker, daemon, names):
    name = names("pause-stopped")
    cid = docker("create", "--name", name, "busybox", "true")
    assert f"Container {cid} is not running" in refused(daemon, "pause", name)
    assert f"Container {cid} is not paused" in refused(daemon, "unpause", name)


def test_a_paused_container_is_counted_and_cannot_be_started(docker, daemon, names, api):
    name = names("pause-info")
    docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    docker("pause", name)
    assert api.info()["ContainersPaused"] >= 1
    with pytest.raises(APIError) as err:
        api.start(name)
    assert err.value.status_code == 409
    assert "cannot start a paused container, try unpause instead" in str(err.value)


def test_stop_kill_and_rm_f_end_a_paused_container(docker, daemon, names):
    stopped, killed, removed = names("paused-stop"), names("paused-kill"), names("paused-rm")
    for name in (stopped, killed, removed):
        docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
        docker("pause", name)
    docker("stop", "-t", "30", stopped)
    assert (state(daemon, stopped)["Status"], state(daemon, stopped)["ExitCode"]) == \
        ("exited", 0)  # the SIGTERM reached the trap once thawed: no SIGKILL needed
    docker("kill", killed)
    assert (state(daemon, killed)["Status"], state(daemon, killed)["ExitCode"]) == \
        ("exited", 137)
    docker("rm", "-f", removed)
    assert daemon.docker_result("inspect", removed).returncode != 0


def test_rm_of_a_paused_container_needs_force_in_dockerds_words(docker, daemon, names):
    name = names("paused-rm-refused")
    cid = docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    docker("pause", name)
    assert (f"You cannot remove a paused container {cid}. Unpause and then stop the "
            "container before attempting removal or force remove") in refused(daemon, "rm", name)


# -- rename --------------------------------------------------------------------------


def test_rename_moves_the_name_and_frees_the_old_one(docker, daemon, names, calls):
    old, new = names("rename-old"), names("rename-new")
    since = time.time()
    cid = docker("run", "-d", "--name", old, "busybox", "sleep", "300")
    docker("rename", old, new)
    assert daemon.inspect(new)["Name"] == f"/{new}"
    assert daemon.inspect(new)["Id"] == cid
    assert "No such container" in refused(daemon, "inspect", "--type", "container", old)
    assert docker("ps", "--filter", f"name={new}", "--format", "{{.Names}}") == new
    # The old name is free again; the new one is taken.
    docker("create", "--name", old, "busybox")
    err = refused(daemon, "rename", old, new)
    assert f'The container name "/{new}" is already in use by container "{cid}"' in err
    rename = next(e for e in events_of(calls, cid, since, "rename") if e["Action"] == "rename")
    assert rename["Actor"]["Attributes"]["oldName"] == f"/{old}"
    assert rename["Actor"]["Attributes"]["name"] == new


def test_rename_refuses_bad_and_same_names(docker, daemon, names, api):
    name = names("rename-bad")
    docker("create", "--name", name, "busybox")
    with pytest.raises(APIError) as err:
        api.rename(name, "no good")
    assert err.value.status_code == 400
    assert "Invalid container name (no good)" in str(err.value)
    with pytest.raises(APIError) as err:
        api.rename(name, name)
    assert err.value.status_code == 400
    with pytest.raises(APIError) as err:
        api.rename(name, "")
    assert err.value.status_code == 400
    with pytest.raises(APIError) as err:
        api.rename("no-such-box", names("rename-none"))
    assert err.value.status_code == 404


# -- update --------------------------------------------------------------------------


def test_update_changes_the_restart_policy_without_starting(docker, daemon, names, api):
    name = names("update-policy")
    docker("create", "--name", name, "busybox", "true")
    assert docker("update", "--restart", "always", name) == name
    policy = daemon.inspect(name)["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "always", "MaximumRetryCount": 0}
    assert state(daemon, name)["Status"] == "created"  # an update starts nothing
    assert api.update_container(name, restart_policy={"Name": "on-failure",
                                                      "MaximumRetryCount": 2}) == \
        {"Warnings": []}
    assert daemon.inspect(name)["HostConfig"]["RestartPolicy"]["MaximumRetryCount"] == 2
    with pytest.raises(APIError) as err:
        api.update_container(name, restart_policy={"Name": "sometimes"})
    assert err.value.status_code == 400 and "invalid restart policy" in str(err.value)


def test_a_policy_given_by_update_applies_to_the_next_exit(docker, daemon, names):
    name = names("update-applies")
    docker("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 0.5; exit 3")
    docker("update", "--restart", "on-failure:2", name)
    wait_for(lambda: (s := daemon.inspect(name))["RestartCount"] == 2
             and s["State"]["Status"] == "exited", 30, f"{name} restarted twice, then rested")
    assert state(daemon, name)["ExitCode"] == 3


def test_update_of_an_auto_removed_container_keeps_it_without_policy(docker, daemon, names):
    name = names("update-rm")
    docker("run", "-d", "--rm", "--name", name, "busybox", "sleep", "300")
    assert "Restart policy cannot be updated because AutoRemove is enabled for the " \
        "container" in refused(daemon, "update", "--restart", "always", name)


def test_update_applies_limits_to_the_running_task_and_to_later_starts(docker, daemon,
                                                                          names, api):
    name = names("update-limits")
    docker("run", "-d", "--name", name, "busybox", *TRAPS_TERM)
    docker("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50",
           "--cpu-shares", "512", name)
    host = daemon.inspect(name)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["PidsLimit"], host["CpuShares"]) == \
        (64 * MiB, 128 * MiB, 50, 512)

    def applied(pid: int) -> tuple[str, str, str]:
        return (cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max").read_text(),
                cgroup_file(pid, "pids", "pids.max", "pids.max").read_text(),
                cgroup_file(pid, "cpu", "cpu.shares", "cpu.weight").read_text())

    memory, pids, shares = applied(state(daemon, name)["Pid"])
    assert (int(memory), pids.strip()) == (64 * MiB, "50")
    if Path("/sys/fs/cgroup/cpu").is_dir():  # cgroup v1 shows the shares as given
        assert shares.strip() == "512"
    # Kept for the next start: the spec the next task is made from has them.
    docker("restart", "-t", "30", name)
    memory, pids, _ = applied(state(daemon, name)["Pid"])
    assert (int(memory), pids.strip()) == (64 * MiB, "50")
    # -1 lifts the limit, recorded as 0 as dockerd records it.
    docker("update", "--pids-limit", "-1", name)
    assert daemon.inspect(name)["HostConfig"]["PidsLimit"] == 0
    assert applied(state(daemon, name)["Pid"])[1].strip() == "max"


def test_update_refuses_limits_it_would_not_apply_naming_them(docker, daemon, names, api):
    name = names("update-refused")
    docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    # Kernel memory limits are discarded with dockerd's warnings (runc does not apply them).
    kernel = daemon.docker_result("update", "--kernel-memory", "10m", name)
    assert kernel.returncode == 0 and "kernel memory limit is deprecated" in kernel.stdout
    assert daemon.inspect(name)["HostConfig"]["KernelMemory"] == 0
    with pytest.raises(APIError) as err:
        api.update_container(name, mem_limit="3m")
    assert err.value.status_code == 400 and "6MB" in str(err.value)
    response = api._post_json(api._url("/containers/{0}/update", name),
                              data={"Ulimits": [{"Name": "nofile", "Soft": 5, "Hard": 5}]})
    assert response.status_code == 400 and "Ulimits" in response.text
    assert daemon.inspect(name)["HostConfig"].get("Ulimits") in (None, [])


# -- prune ---------------------------------------------------------------------------


def test_prune_removes_what_does_not_run_and_keeps_the_rest(docker, daemon, names, api,
                                                           calls):
    label = f"prune-{uuid.uuid4().hex[:8]}"
    created, exited, running = names("prune-created"), names("prune-exited"), \
        names("prune-running")
    kept = names("prune-kept")
    ids = {n: docker("create", "--label", f"{label}=1", "--name", n, "busybox", "true")
           for n in (created, exited)}
    docker("start", exited)
    docker("run", "-d", "--label", f"{label}=1", "--name", running, "busybox", "sleep", "300")
    docker("create", "--label", f"{label}=2", "--name", kept, "busybox")
    since = time.time()
    # `until` before they were made: none is old enough.
    early = api.prune_containers(filters={"label": [label], "until": "2001-01-01T00:00:00Z"})
    assert early == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    report = api.prune_containers(filters={"label": [f"{label}=1"]})
    assert sorted(report["ContainersDeleted"]) == sorted(ids.values())
    assert report["SpaceReclaimed"] == 0  # their SizeRw: they wrote nothing, as dockerd counts
    left = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
    assert sorted(left.splitlines()) == sorted([running, kept])
    # label! keeps what matches it; the CLI asks, unless forced.
    out = docker("container", "prune", "-f", "--filter", f"label={label}",
                 "--filter", f"label!={label}=2")
    assert "Total reclaimed space" in out
    assert daemon.docker_result("inspect", kept).returncode == 0
    with calls.stream("system", "events", {"since": since, "until": time.time(),
                                           "filters": {"event": ["prune"]}},
                      timeout=20) as stream:
        pruned = [e for e in stream if e["Type"] == "container"]
    assert pruned and "reclaimed" in pruned[0]["Actor"]["Attributes"]


def test_prune_refuses_filters_it_does_not_know(api):
    with pytest.raises(APIError) as err:
        api.prune_containers(filters={"status": ["exited"]})
    assert err.value.status_code == 400 and "invalid filter 'status'" in str(err.value)
    with pytest.raises(APIError) as err:
        api.prune_containers(filters={"until": "not a time"})
    assert err.value.status_code == 400


# -- the restart policy ----------------------------------------------------------------


def test_on_failure_3_restarts_three_times_then_rests_exited(docker, daemon, names):
    name = names("on-failure")
    docker("run", "-d", "--restart", "on-failure:3", "--name", name, "busybox",
           "sh", "-c", "exit 1")
    wait_for(lambda: (s := daemon.inspect(name))["State"]["Status"] == "exited"
             and s["RestartCount"] == 3, 30, f"{name} exited after three restarts")
    info = daemon.inspect(name)
    assert (info["State"]["ExitCode"], info["State"]["Restarting"]) == (1, False)
    assert info["State"]["FinishedAt"] > info["State"]["StartedAt"]


def test_a_restarting_container_is_not_removed_without_force(docker, daemon, names):
    name = names("restarting")
    cid = docker("run", "-d", "--restart", "always", "--name", name, "busybox",
                 "sh", "-c", "exit 1")
    # After five quick exits the next restart waits 1.6 s, then longer: time to ask.
    wait_for(lambda: daemon.inspect(name)["RestartCount"] >= 5, 30, "five restarts")

    def refusal() -> str | None:
        result = daemon.docker_result("rm", name)
        assert result.returncode != 0, "a restarting container was removed without force"
        return result.stderr if "restarting container" in result.stderr else None

    words = wait_for(refusal, 30, "rm refused while the restart waits")
    assert (f"You cannot remove a restarting container {cid}. Stop the container before "
            "attempting removal or force remove") in words
    seen = wait_for(lambda: (s := state(daemon, name))["Status"] == "restarting" and s, 30,
                    "the restart pending")
    assert (seen["Restarting"], seen["Running"], seen["Pid"]) == (True, True, 0)
    listed = docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert listed.startswith("Restarting (1)") or listed.startswith("Up ")
    docker("rm", "-f", name)
    assert daemon.docker_result("inspect", name).returncode != 0


def test_always_and_the_restart_count_survive_actor_and_daemon_restarts(pouchd):
    name = f"always-{uuid.uuid4().hex[:8]}"
    pouchd.docker("run", "-d", "--restart", "always", "--name", name, "busybox",
                  "sleep", "300")

    def crash_and_see_it_back(count: int) -> None:
        """The process dies as if it crashed (not stopped by a user): always restarts it."""
        pid = pouchd.inspect(name)["State"]["Pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (s := pouchd.inspect(name))["RestartCount"] == count
                 and s["State"]["Status"] == "running" and s["State"]["Pid"] != pid, 30,
                 f"restart number {count}")

    crash_and_see_it_back(1)
    # The container actor dies and comes back: the count and the policy are kept.
    actor = pouchd.pid_of("container")
    os.kill(actor, signal.SIGKILL)
    wait_for(lambda: actor_pid(pouchd) not in (None, actor)
             and pouchd.docker_result("ps").returncode == 0, 30, "a new container actor")
    assert pouchd.inspect(name)["RestartCount"] == 1
    crash_and_see_it_back(2)
    # pouchd itself stops and starts again: the container ran on, and still restarts.
    assert pouchd.proc is not None
    pid = pouchd.inspect(name)["State"]["Pid"]
    pouchd.proc.send_signal(signal.SIGTERM)
    assert pouchd.proc.wait(30) == 0
    pouchd.start()
    info = pouchd.inspect(name)
    assert (info["State"]["Status"], info["State"]["Pid"], info["RestartCount"]) == \
        ("running", pid, 2)
    crash_and_see_it_back(3)
    # A start by hand begins the count again, as dockerd's does.
    pouchd.docker("restart", "-t", "0", name)
    assert pouchd.inspect(name)["RestartCount"] == 0
    pouchd.docker("rm", "-f", name)


def test_the_list_shows_states_in_dockers_words(docker, daemon, names):
    name = names("states")
    docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    docker("pause", name)
    rows = json.loads(docker("ps", "--filter", f"name={name}", "--format", "{{json .}}"))
    assert rows["State"] == "paused" and rows["Status"].endswith("(Paused)")
    docker("unpause", name)
    docker("stop", "-t", "0", name)
    rows = json.loads(docker("ps", "-a", "--filter", f"name={name}", "--format", "{{json .}}"))
    assert rows["State"] == "exited" and rows["Status"].startswith("Exited (137)")


def test_ps_filters_before_and_since_name_containers(daemon: PouchDaemon, names):
    first, middle, last = names("first"), names("middle"), names("last")
    for name in (first, middle, last):
        daemon.docker("create", "--name", name, "busybox", "true")

    def listed(*filters: str) -> list[str]:
        args = [arg for f in filters for arg in ("--filter", f)]
        shown = daemon.docker("ps", "-a", "--format", "{{.Names}}", *args).splitlines()
        return [n for n in shown if n in (first, middle, last)]

    assert listed(f"before={last}") == [middle, first]
    assert listed(f"since={first}") == [last, middle]
    assert listed(f"since={first}", f"before={last}") == [middle]
    missing = daemon.docker_result("ps", "-a", "--filter", "before=no-such-container")
    assert missing.returncode != 0 and "No such container: no-such-container" in missing.stderr
