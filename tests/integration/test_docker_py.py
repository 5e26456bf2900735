"""docker-py as the acceptance client: what a Python user of the Docker SDK does."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.errors import APIError, ContainerError, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.utils.socket import frames_iter

from pouch.tests.support.wait import wait_for

# Lines printed over about a second, to watch them arrive one by one.
TICKER = ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.25; done"]


@pytest.fixture
def new_name(client: docker.DockerClient) -> Iterator[Callable[[], str]]:
    """Unique container names; whatever still bears one is removed after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(f"py-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    for name in made:
        with contextlib.suppress(NotFound):
            client.api.remove_container(name, force=True)


def gone(client: docker.DockerClient, name: str) -> bool:
    try:
        client.containers.get(name)
    except NotFound:
        return True
    return False


def names(containers: list[Container]) -> set[str]:
    return {c.name for c in containers}


# -- the daemon --------------------------------------------------------------


def test_ping_version_and_info(client):
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.41"
    assert version["Os"] == "linux"
    assert {"Engine", "containerd", "runc"} <= {c["Name"] for c in version["Components"]}
    info = client.info()
    assert info["Images"] >= 1
    assert info["Containers"] >= info["ContainersRunning"] >= 0
    assert info["OSType"] == "linux"
    assert info["LoggingDriver"] == "json-file"


# -- images ------------------------------------------------------------------


def test_busybox_is_listed_and_inspected(client, busybox_tarball: Path):
    manifest = json.loads(_member(busybox_tarball, "manifest.json"))
    image_id = "sha256:" + manifest[0]["Config"].removesuffix(".json").split("/")[-1]
    listed = {image.id: image.tags for image in client.images.list()}
    assert listed[image_id] == ["busybox:latest"]
    image = client.images.get("busybox:latest")
    assert image.id == image_id
    assert image.tags == ["busybox:latest"]
    assert image.short_id == image_id[:19]
    assert image.attrs["Config"]["Cmd"] == ["sh"]
    assert image.attrs["Os"] == "linux"
    assert client.images.get("busybox").id == image_id
    assert client.images.get(image_id).tags == ["busybox:latest"]


def test_a_missing_image_is_not_found(client):
    with pytest.raises(ImageNotFound):
        client.images.get("no-such-image:1.0")


# -- run ---------------------------------------------------------------------


def test_run_returns_the_output_and_removes_the_container(client, new_name):
    name = new_name()
    assert client.containers.run("busybox", "echo hi", remove=True, name=name) == b"hi\n"
    assert gone(client, name)


def test_run_keeps_stdout_apart_from_stderr(client, new_name):
    name = new_name()
    out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], name=name,
                                remove=True)
    assert out == b"out\n"
    err_only = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"],
                                     name=new_name(), remove=True, stderr=True, stdout=False)
    assert err_only == b"err\n"


def test_a_failing_command_raises_container_error_with_status_and_stderr(client, new_name):
    name = new_name()
    with pytest.raises(ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "echo out; echo oops >&2; exit 3"],
                              name=name, remove=True)
    assert err.value.exit_status == 3
    assert err.value.stderr == b"oops\n"
    assert err.value.image == "busybox"
    assert gone(client, name)


def test_a_detached_container_runs_and_is_waited_for(client, new_name):
    name = new_name()
    container = client.containers.run(
        "busybox", ["sh", "-c", "echo started; sleep 0.5; echo done >&2; exit 4"],
        detach=True, name=name)
    assert isinstance(container, Container)
    assert container.name == name and len(container.id) == 64
    assert container.status == "created"  # as docker-py saw it before starting it
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["Pid"] > 0
    assert container.wait(timeout=30) == {"StatusCode": 4, "Error": None}
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["ExitCode"] == 4
    assert container.logs() == b"started\ndone\n"
    assert container.logs(stderr=False) == b"started\n"
    assert container.logs(stdout=False) == b"done\n"
    assert container.logs(tail=1) == b"done\n"
    stamped = container.logs(timestamps=True).decode().splitlines()
    assert stamped[0].endswith("Z started") and stamped[0][:4].isdigit()
    container.remove()
    assert gone(client, name)


def test_wait_on_a_container_that_already_exited_answers_at_once(client, new_name):
    container = client.containers.run("busybox", ["sh", "-c", "exit 2"], detach=True,
                                      name=new_name())
    assert container.wait(timeout=30)["StatusCode"] == 2
    started = time.monotonic()
    assert container.wait(timeout=30) == {"StatusCode": 2, "Error": None}
    assert time.monotonic() - started < 5


# -- list and filters ----------------------------------------------------------


@dataclass
class ThreeStates:
    suite: str  # the value of their "suite" label, this test's alone
    running: Container
    exited: Container
    created: Container

    def __getitem__(self, status: str) -> Container:
        return {"running": self.running, "exited": self.exited, "created": self.created}[status]


@pytest.fixture
def three_states(client, new_name) -> ThreeStates:
    """One running, one exited and one created container, all labelled for this test."""
    suite = uuid.uuid4().hex[:8]
    running = client.containers.run("busybox", "sleep 300", detach=True, name=new_name(),
                                    labels={"suite": suite, "role": "server"})
    exited = client.containers.run("busybox", "true", detach=True, name=new_name(),
                                   labels={"suite": suite, "role": "job"})
    exited.wait(timeout=30)
    created = client.containers.create("busybox", "true", name=new_name(),
                                       labels={"suite": suite, "role": "job", "spare": ""})
    return ThreeStates(suite, running, exited, created)


def test_list_shows_running_containers_unless_all(client, three_states):
    suite = f"suite={three_states.suite}"
    assert names(client.containers.list(filters={"label": suite})) == \
        {three_states.running.name}
    assert names(client.containers.list(all=True, filters={"label": suite})) == \
        {three_states[k].name for k in ("running", "exited", "created")}


def test_list_by_name(client, three_states):
    running = three_states.running
    assert names(client.containers.list(all=True, filters={"name": running.name})) == \
        {running.name}
    assert client.containers.list(all=True, filters={"name": "py-no-such-name"}) == []


def test_list_by_id(client, three_states):
    exited = three_states.exited
    assert names(client.containers.list(all=True, filters={"id": exited.id[:12]})) == \
        {exited.name}


def test_list_by_label_key_and_value(client, three_states):
    suite = f"suite={three_states.suite}"
    jobs = client.containers.list(all=True, filters={"label": [suite, "role=job"]})
    assert names(jobs) == {three_states.exited.name, three_states.created.name}
    spare = client.containers.list(all=True, filters={"label": [suite, "spare"]})
    assert names(spare) == {three_states.created.name}


def test_list_by_status(client, three_states):
    suite = f"suite={three_states.suite}"
    for status in ("running", "exited", "created"):
        found = client.containers.list(all=True, filters={"label": suite, "status": status})
        assert names(found) == {three_states[status].name}, status
    # A status filter shows stopped containers even without all, as in Docker.
    assert names(client.containers.list(filters={"label": suite, "status": "exited"})) == \
        {three_states.exited.name}


def test_an_unknown_status_is_bad_input(client):
    with pytest.raises(APIError) as err:
        client.containers.list(all=True, filters={"status": "sleepy"})
    assert err.value.status_code == 400


def test_a_limit_counts_stopped_containers_too(client, three_states):
    newest = client.containers.list(limit=1)
    assert [c.name for c in newest] == [three_states.created.name]


def test_the_name_filter_is_a_regular_expression(client, three_states):
    running = three_states.running
    found = client.containers.list(all=True, filters={"name": f"^/{running.name}$"})
    assert names(found) == {running.name}


# -- create, start, stop, remove ---------------------------------------------------


def test_create_start_stop_and_remove(client, new_name):
    name = new_name()
    container = client.containers.create("busybox", "sleep 300", name=name)
    assert container.status == "created"
    assert container.attrs["Config"]["Cmd"] == ["sleep", "300"]
    container.start()
    container.reload()
    assert container.status == "running"
    started = time.monotonic()
    container.stop(timeout=1)
    # sleep, as PID 1, ignores SIGTERM: the stop ends with SIGKILL after 1 s.
    assert time.monotonic() - started < 10
    container.reload()
    assert container.status == "exited"
    assert container.attrs["State"]["ExitCode"] == 137
    container.remove()
    assert gone(client, name)


def test_a_running_container_needs_force_to_be_removed(client, new_name):
    name = new_name()
    container = client.containers.run("busybox", "sleep 300", detach=True, name=name)
    with pytest.raises(APIError) as err:
        container.remove()
    assert err.value.status_code == 409
    assert "cannot remove a running container" in err.value.explanation
    container.remove(force=True)
    assert gone(client, name)


def test_kill_with_a_signal(client, new_name):
    container = client.containers.run(
        "busybox",
        ["sh", "-c", "trap 'exit 7' USR1; echo trapped; while true; do sleep 0.1; done"],
        detach=True, name=new_name())
    wait_for(lambda: b"trapped" in container.logs(), 10, "the shell setting its trap")
    container.kill(signal="SIGUSR1")
    assert container.wait(timeout=30)["StatusCode"] == 7


def test_kill_answers_once_the_exit_is_recorded(client, new_name):
    container = client.containers.run("busybox", "sleep 300", detach=True, name=new_name())
    client.api.kill(container.id)
    state = client.api.inspect_container(container.id)["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137)


def test_a_remove_that_fails_on_disk_answers_at_once_and_can_be_retried(
        client, daemon, new_name):
    container = client.containers.run("busybox", "true", detach=True, name=new_name())
    assert container.wait(timeout=30)["StatusCode"] == 0
    # Something else left a folder among the container's FIFOs: removing them fails.
    stray = daemon.run_dir / "fifo" / container.id / "stray"
    stray.mkdir(parents=True)
    asked = time.monotonic()
    with pytest.raises(APIError) as err:
        container.remove()
    assert err.value.status_code == 500
    assert "IsADirectoryError" in str(err.value.explanation)
    assert time.monotonic() - asked < 5  # answered, not left to the call's deadline
    stray.rmdir()
    container.remove()
    assert gone(client, container.name)


def test_on_failure_3_restarts_a_failing_container_three_times(client, new_name):
    container = client.containers.run(
        "busybox", ["sh", "-c", "exit 3"], detach=True, name=new_name(),
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})

    def rested() -> dict | None:
        container.reload()
        state = container.attrs["State"]
        return container.attrs if state["Status"] == "exited" and \
            container.attrs["RestartCount"] == 3 else None

    attrs = wait_for(rested, 20, "three restarts, then rest")
    assert attrs["State"]["ExitCode"] == 3


def test_a_restarting_container_is_removed_only_with_force(client, new_name):
    container = client.containers.run("busybox", ["sh", "-c", "exit 1"], detach=True,
                                      name=new_name(), restart_policy={"Name": "always"})

    def restarting() -> bool:
        container.reload()
        return container.status == "restarting" and container.attrs["RestartCount"] >= 4

    wait_for(restarting, 20, "a container waiting to restart")
    with pytest.raises(APIError) as err:
        container.remove()
    assert err.value.status_code == 409
    assert "Stop the container before attempting removal" in str(err.value.explanation)
    container.remove(force=True)
    assert gone(client, container.name)


# -- streams -------------------------------------------------------------------------


def test_following_logs_yields_lines_as_they_are_printed(client, new_name):
    container = client.containers.run("busybox", TICKER, detach=True, name=new_name())
    arrivals: list[tuple[float, bytes]] = []
    for chunk in container.logs(stream=True, follow=True):
        arrivals.append((time.monotonic(), chunk))
    assert b"".join(chunk for _, chunk in arrivals) == \
        b"".join(b"line%d\n" % i for i in range(1, 6))
    first = next(t for t, chunk in arrivals if b"line1" in chunk)
    last = next(t for t, chunk in arrivals if b"line5" in chunk)
    # Printed 0.25 s apart: streamed as they came, not all at once at the end.
    assert last - first > 0.5
    assert container.wait(timeout=30)["StatusCode"] == 0


def test_attach_before_start_receives_both_streams(client, new_name):
    container = client.containers.create(
        "busybox", ["sh", "-c", "sleep 0.3; echo out; echo err >&2"], name=new_name())
    stream = container.attach(stdout=True, stderr=True, stream=True, demux=True)
    container.start()
    out = b"".join(o for o, _ in stream if o)
    assert out == b"out\n"
    assert container.wait(timeout=30)["StatusCode"] == 0
    assert container.logs(stdout=False) == b"err\n"


def test_attach_socket_carries_stdin_and_multiplexed_output(client, new_name):
    container = client.containers.create(
        "busybox", ["sh", "-c", "read line; echo got:$line; echo bye >&2"],
        stdin_open=True, name=new_name())
    sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    try:
        container.start()
        raw = getattr(sock, "_sock", sock)  # docker-py's own tests write to it this way
        raw.sendall(b"hello\n")
        frames: dict[int, bytes] = {1: b"", 2: b""}
        for stream, data in frames_iter(sock, tty=False):
            frames[stream] += data
    finally:
        sock.close()
    assert frames == {1: b"got:hello\n", 2: b"bye\n"}
    assert container.wait(timeout=30)["StatusCode"] == 0


def test_attach_with_logs_before_start_also_streams(client, new_name):
    container = client.containers.create("busybox", ["sh", "-c", "sleep 0.3; echo live"],
                                         name=new_name())
    stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)
    container.start()
    assert b"".join(stream) == b"live\n"


def test_attach_with_logs_to_an_exited_container_replays_its_output(client, new_name):
    container = client.containers.run("busybox", ["sh", "-c", "echo one; echo two"],
                                      detach=True, name=new_name())
    container.wait(timeout=30)
    assert container.attach(stdout=True, stderr=True, logs=True, stream=False) == \
        b"one\ntwo\n"


# -- errors --------------------------------------------------------------------------


def test_a_missing_container_is_not_found_everywhere(client):
    missing = f"py-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound) as err:
        client.containers.get(missing)
    assert err.value.status_code == 404
    assert f"No such container: {missing}" in err.value.explanation
    for call in (client.api.start, client.api.stop, client.api.remove_container,
                 client.api.wait, client.api.kill):
        with pytest.raises(NotFound):
            call(missing)


def test_creating_from_a_missing_image_is_not_found(client, new_name):
    name = new_name()
    with pytest.raises(ImageNotFound) as err:
        client.containers.create("no-such-image:1.0", name=name)
    assert err.value.status_code == 404
    assert "No such image" in err.value.explanation
    assert gone(client, name)


def test_a_taken_name_is_a_409_conflict(client, new_name):
    name = new_name()
    first = client.containers.create("busybox", name=name)
    with pytest.raises(APIError) as err:
        client.containers.create("busybox", name=name)
    assert err.value.status_code == 409
    assert f'The container name "/{name}" is already in use' in err.value.explanation
    assert first.id in err.value.explanation


def test_a_network_mode_naming_no_network_is_refused_as_bad_input(client):
    with pytest.raises(APIError) as err:
        client.api.create_container("busybox", host_config={"NetworkMode": "no-such-net"})
    assert err.value.status_code == 400
    assert "network no-such-net not found" in err.value.explanation


def test_an_invalid_name_is_bad_input(client):
    with pytest.raises(APIError) as err:
        client.containers.create("busybox", name="not a name!")
    assert err.value.status_code == 400
    assert "Invalid container name" in err.value.explanation


@pytest.mark.parametrize(("body", "words"), [
    ("{not json", "malformed JSON body"),
    ("[1, 2]", "must be an object"),
    ('{"Image": "busybox", "Cmd": 5}', "Config.Cmd"),
    ('{"Image": "busybox", "Tty": "yes"}', "Config.Tty"),
])
def test_a_malformed_create_body_is_400_with_a_message(client, body, words):
    url = f"{client.api.base_url}/v1.41/containers/create"
    response = client.api.post(url, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert words in response.json()["message"]


def test_bad_query_parameters_are_400(client):
    base = f"{client.api.base_url}/v1.41/containers/json"
    assert client.api.get(base, params={"all": "maybe"}).status_code == 400
    assert client.api.get(base, params={"filters": "{bad"}).status_code == 400
    with pytest.raises(APIError) as err:
        client.containers.list(all=True, filters={"colour": "red"})
    assert err.value.status_code == 400


def _member(tarball: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(tarball) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()
