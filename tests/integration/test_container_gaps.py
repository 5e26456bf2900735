"""What a docker user still missed of issue 10: `ps -s` and `inspect --size`, joining
another container's IPC and PID namespaces, health probes that rest while a container
is paused or stopping, and the rest of `docker ps`'s filters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import docker as docker_py
import pytest

from pouch.broker.client import Client
from pouch.tests.integration.test_health import container_events, health, status_is
from pouch.tests.support.containerd import mounts_under
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.wait import wait_for

MIB = 1 << 20


def holds(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """`predicate` stays true for `seconds` (an observation window: what must not happen
    does not, for that long)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.1)


def refusal(daemon: PouchDaemon, *args: str) -> str:
    result = daemon.docker_result(*args)
    assert result.returncode != 0, f"docker {' '.join(args)} was not refused"
    return result.stderr


# -- sizes ---------------------------------------------------------------------------


def test_ps_size_and_inspect_size(daemon: PouchDaemon, docker, api: docker_py.APIClient,
                                  name: str):
    docker("run", "-d", "--name", name, "busybox", "sh", "-c",
           "head -c 2097152 /dev/zero > /ballast && touch /written && sleep 300")
    wait_for(lambda: daemon.docker_result("exec", name, "ls", "/written").stdout.strip()
             == "/written", 20, "the ballast")

    row, = api.containers(all=True, size=True, filters={"name": name})
    assert 2 * MIB <= row["SizeRw"] < 3 * MIB
    # The image's layers come on top: busybox itself is above a megabyte.
    assert row["SizeRootFs"] > row["SizeRw"] + MIB
    plain, = api.containers(all=True, filters={"name": name})
    assert "SizeRw" not in plain and "SizeRootFs" not in plain

    size = docker("ps", "-s", "--filter", f"name={name}", "--format", "{{.Size}}")
    assert size.startswith("2.1") and "virtual" in size  # "2.1MB (virtual 3.31MB)"

    sized = json.loads(docker("inspect", "--size", name))[0]
    assert sized["SizeRw"] == row["SizeRw"] and sized["SizeRootFs"] == row["SizeRootFs"]
    assert "SizeRw" not in json.loads(docker("inspect", name))[0]


def test_sizes_of_a_container_that_wrote_nothing(docker, api: docker_py.APIClient, name: str):
    docker("create", "--name", name, "busybox", "true")
    row, = api.containers(all=True, size=True, filters={"name": name})
    assert "SizeRw" not in row and row["SizeRootFs"] > MIB  # a zero is left out, as dockerd
    sized = json.loads(docker("inspect", "--size", name))[0]
    assert sized["SizeRw"] == 0 and sized["SizeRootFs"] == row["SizeRootFs"]


# -- joining another container's namespaces ---------------------------------------------


def ns(docker, name: str, kind: str) -> str:
    return docker("exec", name, "readlink", f"/proc/1/ns/{kind}")


def shm_mounts(daemon: PouchDaemon) -> list[str]:
    return [str(p) for p in mounts_under(daemon.home) if p.name == "shm"]


def test_ipc_container_shares_the_donors_ipc_and_dev_shm(daemon: PouchDaemon, docker, names):
    donor, joiner = names("ipc-donor"), names("ipc-joiner")
    docker("run", "-d", "--name", donor, "--ipc", "shareable", "busybox", "sh", "-c",
           "echo kept > /dev/shm/marker && sleep 300")
    wait_for(lambda: docker("exec", donor, "cat", "/dev/shm/marker") == "kept", 20, "marker")
    docker("run", "-d", "--name", joiner, "--ipc", f"container:{donor}", "busybox",
           "sleep", "300")
    assert ns(docker, joiner, "ipc") == ns(docker, donor, "ipc")
    assert docker("exec", joiner, "cat", "/dev/shm/marker") == "kept"
    docker("exec", joiner, "sh", "-c", "echo back > /dev/shm/reply")
    assert docker("exec", donor, "cat", "/dev/shm/reply") == "back"
    assert docker("inspect", "-f", "{{.HostConfig.IpcMode}}", joiner) == f"container:{donor}"

    # Each start joins the donor's task as it is then: a new one after its restart.
    docker("restart", "-t", "0", donor)
    docker("restart", "-t", "0", joiner)
    assert ns(docker, joiner, "ipc") == ns(docker, donor, "ipc")

    # The shareable /dev/shm is a tmpfs of the host for as long as the donor runs.
    donor_id = docker("inspect", "-f", "{{.Id}}", donor)
    assert [m for m in shm_mounts(daemon) if donor_id in m]
    docker("stop", "-t", "0", donor)
    assert not [m for m in shm_mounts(daemon) if donor_id in m]
    docker("start", donor)
    docker("rm", "-f", donor, joiner)
    assert not [m for m in shm_mounts(daemon) if donor_id in m]


def test_ipc_container_needs_a_running_shareable_donor(daemon: PouchDaemon, docker, names):
    private, stopped = names("ipc-private"), names("ipc-stopped")
    docker("run", "-d", "--name", private, "busybox", "sleep", "300")
    assert "non-shareable IPC (hint: use IpcMode:shareable for the donor container)" in \
        refusal(daemon, "run", "--rm", "--ipc", f"container:{private}", "busybox", "true")
    docker("create", "--name", stopped, "--ipc", "shareable", "busybox", "true")
    stopped_id = docker("inspect", "-f", "{{.Id}}", stopped)
    message = refusal(daemon, "run", "--rm", "--ipc", f"container:{stopped}", "busybox", "true")
    assert f"can't join IPC of container {stopped}: container {stopped_id} is not running" \
        in message
    missing = refusal(daemon, "run", "--rm", "--ipc", "container:no-such-donor", "busybox",
                      "true")
    assert "can't join IPC of container no-such-donor: No such container: no-such-donor" \
        in missing
    assert "Unable to find image" not in missing  # refused at create with a 400, as dockerd


def test_pid_container_sees_the_donors_processes(daemon: PouchDaemon, docker, names):
    donor = names("pid-donor")
    docker("run", "-d", "--name", donor, "busybox", "sleep", "4242")
    seen = docker("run", "--rm", "--pid", f"container:{donor}", "busybox", "ps", "-o",
                  "pid,args")
    assert any(line.split()[:3] == ["1", "sleep", "4242"] for line in seen.splitlines())

    docker("stop", "-t", "0", donor)
    donor_id = docker("inspect", "-f", "{{.Id}}", donor)
    message = refusal(daemon, "run", "--rm", "--pid", f"container:{donor}", "busybox", "true")
    assert f"container {donor_id} is not running" in message
    assert "cannot join PID of a non running container: nobody-here: No such container" in \
        refusal(daemon, "run", "--rm", "--pid", "container:nobody-here", "busybox", "true")


def test_joining_is_refused_with_http_statuses(api: docker_py.APIClient, names):
    donor = names("status-donor")
    api.create_container("busybox", "true", name=donor, host_config=api.create_host_config(
        ipc_mode="shareable"))
    joiner = api.create_container("busybox", "true", name=names("status-joiner"),
                                  host_config=api.create_host_config(
                                      ipc_mode=f"container:{donor}"))
    with pytest.raises(docker_py.errors.APIError) as refused:
        api.start(joiner)
    assert refused.value.response.status_code == 409  # the donor does not run
    for mode in ("ipc_mode", "pid_mode"):  # no such donor: refused at create, as dockerd
        with pytest.raises(docker_py.errors.APIError) as refused:
            api.create_container("busybox", "true", host_config=api.create_host_config(
                **{mode: "container:no-such-donor"}))
        assert refused.value.response.status_code == 400
        assert "No such container: no-such-donor" in refused.value.explanation


# -- health probes rest while paused or stopping ------------------------------------


def test_no_probe_runs_while_paused(docker, name: str):
    docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1s",
           "--health-retries", "1", "busybox", "sleep", "300")
    wait_for(status_is(docker, name, "healthy"), 20, "healthy")
    docker("pause", name)
    count = len(health(docker, name)["Log"])
    last = health(docker, name)["Log"][-1]["Start"]
    holds(lambda: (h := health(docker, name))["Status"] == "healthy"
          and h["Log"][-1]["Start"] == last, 3.5, "a probe ran while the container was paused")
    assert len(health(docker, name)["Log"]) == count
    docker("unpause", name)
    wait_for(lambda: health(docker, name)["Log"][-1]["Start"] > last, 20, "probes again")
    assert all(entry["ExitCode"] == 0 for entry in health(docker, name)["Log"])


def test_no_probe_runs_while_stopping_and_none_after_die(docker, calls: Client, name: str):
    since = time.time()
    # The container takes 3 s to stop on SIGTERM: probes due meanwhile must not run (they
    # would fail, "is stopping", and turn it unhealthy with retries 1).
    docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1s",
           "--health-retries", "1", "busybox", "sh", "-c",
           "trap 'sleep 3; exit 0' TERM; while :; do sleep 0.2; done")
    wait_for(status_is(docker, name, "healthy"), 20, "healthy")
    docker("stop", "-t", "10", name)
    state = health(docker, name)
    assert state["Status"] == "healthy"
    assert all(entry["ExitCode"] == 0 for entry in state["Log"]), state["Log"]
    actions = container_events(calls, name, since)
    assert "die" in actions
    assert not [a for a in actions[actions.index("die"):] if a.startswith("health_status")]
    assert "health_status: unhealthy" not in actions


def test_a_probe_in_flight_at_the_exit_ends_cleanly(daemon: PouchDaemon, docker,
                                                    calls: Client, name: str):
    since = time.time()
    docker("run", "-d", "--name", name, "--health-cmd", "echo probing > /tmp/p; sleep 30",
           "--health-interval", "1s", "--health-timeout", "60s", "busybox", "sleep", "300")
    wait_for(lambda: daemon.docker_result("exec", name, "cat", "/tmp/p").stdout.strip()
             == "probing", 20, "a probe running")
    docker("kill", name)
    assert docker("inspect", "-f", "{{.State.Status}}", name) == "exited"
    # The probe died with the container: nothing recorded of it, no event after the die.
    holds(lambda: not health(docker, name).get("Log"), 2.0, "a probe cut by the exit counted")
    actions = container_events(calls, name, since)
    assert not [a for a in actions[actions.index("die"):] if a.startswith("health_status")]


def test_no_healthcheck_shows_none_and_no_health(api: docker_py.APIClient, names):
    # docker-py's form of --no-healthcheck: Test ["NONE"] in the create body.
    made = api.create_container("busybox", "sleep 300", name=names("nohealth"),
                                healthcheck={"Test": ["NONE"]})
    api.start(made)
    found = api.inspect_container(made)
    assert found["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert "Health" not in found["State"]


# -- docker ps filters ----------------------------------------------------------------


def listed(docker, *filters: str) -> set[str]:
    args = [arg for f in filters for arg in ("--filter", f)]
    return set(docker("ps", "-a", *args, "--format", "{{.Names}}").split())


def test_ps_filters_health_isolation_task_network_volume_ports(daemon: PouchDaemon, docker,
                                                               names):
    checked, plain = names("f-checked"), names("f-plain")
    docker("run", "-d", "--name", checked, "--health-cmd", "true", "--health-interval", "1s",
           "busybox", "sleep", "300")
    docker("create", "--name", plain, "--network", "none", "busybox", "true")
    wait_for(status_is(docker, checked, "healthy"), 20, "healthy")
    ours = {checked, plain}

    assert listed(docker, "health=healthy") & ours == {checked}
    assert listed(docker, "health=none") & ours == {plain}
    assert not listed(docker, "health=unhealthy") & ours
    assert "Unrecognised filter value for health: sick" in \
        refusal(daemon, "ps", "--filter", "health=sick")

    assert listed(docker, "isolation=default") & ours == ours
    assert not listed(docker, "isolation=hyperv") & ours
    assert listed(docker, "is-task=false") & ours == ours
    assert not listed(docker, "is-task=true") & ours
    assert "invalid filter 'is-task=[maybe]'" in refusal(daemon, "ps", "--filter",
                                                         "is-task=maybe")

    assert plain in listed(docker, "network=none")
    assert not listed(docker, "network=no-such-net") & ours
    assert not listed(docker, "volume=no-such-volume") & ours
    assert not listed(docker, "publish=80") & ours  # nothing published
    assert not listed(docker, "expose=8000-8080/tcp") & ours
    assert "filter for 'publish' should not contain ':': 80:80" in \
        refusal(daemon, "ps", "--filter", "publish=80:80")
    # A name pattern matches without the name's slash too, as dockerd's.
    assert listed(docker, f"name=^{plain}$") == {plain}
    assert "invalid filter 'bogus'" in refusal(daemon, "ps", "--filter", "bogus=1")


def test_ps_filters_of_the_issue(daemon: PouchDaemon, docker, names):
    first, second = names("f-first"), names("f-second")
    assert daemon.docker_result("run", "--name", first, "--label", "tier=gaps", "busybox",
                                "sh", "-c", "exit 3").returncode == 3
    docker("create", "--name", second, "--label", "tier=gaps", "busybox", "true")
    first_id = docker("inspect", "-f", "{{.Id}}", first)
    assert listed(docker, "label=tier=gaps") == {first, second}
    assert listed(docker, "label=tier=gaps", "exited=3") == {first}
    assert listed(docker, "label=tier=gaps", "status=created") == {second}
    assert listed(docker, "label=tier=gaps", "ancestor=busybox") == {first, second}
    # Any name of the image, as docker run takes it, finds them (as with dockerd).
    image = docker("image", "inspect", "-f", "{{.Id}}", "busybox")
    for same in ("busybox:latest", "docker.io/library/busybox", image, image[7:19]):
        assert listed(docker, "label=tier=gaps", f"ancestor={same}") == {first, second}
    assert listed(docker, "label=tier=gaps", "ancestor=no-such-image") == set()
    assert listed(docker, f"id={first_id[:12]}") == {first}
    assert listed(docker, "label=tier=gaps", f"since={first}") == {second}
    assert listed(docker, "label=tier=gaps", f"before={second}") == {first}


def test_ps_filter_volume_by_name_or_destination(daemon: PouchDaemon, docker, names):
    holder = names("f-volume")
    volume = f"{holder}-data"
    try:
        docker("create", "--name", holder, "-v", f"{volume}:/data", "busybox", "true")
        assert listed(docker, f"volume={volume}") == {holder}
        assert holder in listed(docker, "volume=/data")
        assert holder not in listed(docker, "volume=/elsewhere")
    finally:
        daemon.docker_result("rm", "-f", holder)
        daemon.docker_result("volume", "rm", volume)
