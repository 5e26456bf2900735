"""docker exec's rules with plain values: the record a create body makes, what inspect
shows of it, when an exec may run, the process spec it gets from its container's, and
the GC's passes, as dockerd 20.10 does them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pouch.actors.container import lifecycle as lc
from pouch.actors.container.exec import (
    ExecRecord,
    Phase,
    check_runnable,
    collect_garbage,
    exec_env,
    explain_start_error,
    new_exec,
    process_spec,
)
from pouch.actors.container.spec.user import User
from pouch.proto.envelope import PouchError

CID = "c" * 64
CONTAINER_ENV = ["PATH=/usr/bin:/bin", "HOSTNAME=abc", "FOO=bar"]
CONTAINER_PROCESS: dict[str, Any] = {
    "terminal": False, "user": {"uid": 0, "gid": 0, "additionalGids": [0, 10]},
    "args": ["sleep", "300"], "env": CONTAINER_ENV, "cwd": "/srv",
    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_CHOWN",
                     "CAP_KILL"], "permitted": ["CAP_CHOWN", "CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": False, "consoleSize": {"height": 24, "width": 80},
}
EVERY_CAP = ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]


def refused(call: Callable[[], object]) -> PouchError:
    with pytest.raises(PouchError) as err:
        call()
    return err.value


def record(**body: Any) -> ExecRecord:
    return new_exec("e" * 64, CID, {"Cmd": ["true"], **body}, container_user="")


# -- the create body ---------------------------------------------------------------


def test_a_create_body_becomes_a_record_as_dockerd_keeps_it():
    made = new_exec("e1", CID, {"Cmd": ["sh", "-c", "id -u"], "User": "1000",
                                "WorkingDir": "/tmp", "Env": ["A=b"], "Tty": True,
                                "AttachStdin": True, "AttachStdout": True,
                                "DetachKeys": "ctrl-x,y"}, container_user="")
    assert (made.entrypoint, made.args, made.user, made.working_dir, made.env) == \
        ("sh", ["-c", "id -u"], "1000", "/tmp", ["A=b"])
    assert made.tty and made.open_stdin and made.open_stdout and not made.open_stderr
    assert made.detach_keys == b"\x18y"
    assert made.phase is Phase.CREATED and made.command == "sh -c id -u"


def test_without_a_user_the_exec_shows_the_containers():
    assert new_exec("e1", CID, {"Cmd": "true"}, container_user="nobody").user == "nobody"
    assert new_exec("e1", CID, {"Cmd": "true", "User": "0"}, container_user="nobody").user == "0"


def test_a_command_with_no_arguments_is_named_with_a_trailing_space():
    # dockerd names its events "exec_create: " + entrypoint + " " + arguments.
    assert record().command == "true "


@pytest.mark.parametrize("body, words", [
    ({}, "No exec command specified"),
    ({"Cmd": []}, "No exec command specified"),
    ({"Cmd": ["ls", 3]}, "invalid field Cmd"),
    ({"Cmd": ["ls"], "Env": "A=b"}, "invalid field Env"),
    ({"Cmd": ["ls"], "Tty": "yes"}, "invalid field Tty"),
    ({"Cmd": ["ls"], "User": 0}, "invalid field User"),
    ({"Cmd": ["ls\0"]}, "without NUL"),
    ({"Cmd": ["ls"], "DetachKeys": "ctrl-"}, "Invalid detach keys"),
])
def test_a_malformed_create_body_is_refused(body: dict[str, Any], words: str):
    error = refused(lambda: new_exec("e1", CID, body, container_user=""))
    assert error.code == "invalid" and words in error.message


def test_inspect_shows_dockerds_fields():
    made = record(User="1000", Privileged=True, DetachKeys="ctrl-p,ctrl-q")
    shown = made.inspect()
    assert shown == {
        "ID": "e" * 64, "Running": False, "ExitCode": None,
        "ProcessConfig": {"tty": False, "entrypoint": "true", "arguments": [],
                          "privileged": True, "user": "1000"},
        "OpenStdin": False, "OpenStderr": False, "OpenStdout": False, "CanRemove": False,
        "ContainerID": CID, "DetachKeys": "EBE=", "Pid": 0}
    made.phase, made.pid = Phase.RUNNING, 42
    assert made.inspect()["Running"] and made.inspect()["Pid"] == 42
    assert record().inspect()["DetachKeys"] == ""


# -- when an exec may run ------------------------------------------------------------


@pytest.mark.parametrize("status, words", [
    (lc.Status.CREATED, "is not running"),
    (lc.Status.EXITED, "is not running"),
    (lc.Status.REMOVING, "is not running"),
    (lc.Status.PAUSED, "is paused, unpause the container before exec"),
    (lc.Status.RESTARTING, "is restarting, wait until the container is running"),
])
def test_an_exec_needs_a_running_container(status: lc.Status, words: str):
    error = refused(lambda: check_runnable(lc.State(id=CID, status=status), stopping=False))
    assert error.code == "conflict" and error.message == f"Container {CID} {words}"


def test_no_exec_runs_in_a_container_being_stopped():
    running = lc.State(id=CID, status=lc.Status.RUNNING)
    check_runnable(running, stopping=False)
    assert refused(lambda: check_runnable(running, stopping=True)).code == "conflict"


# -- the process -----------------------------------------------------------------------


def test_the_exec_inherits_the_containers_environment_under_its_own():
    assert exec_env(CONTAINER_ENV, {}, tty=False, request_env=["A=b", "FOO=baz", "PATH"]) == \
        ["HOSTNAME=abc", "FOO=baz", "A=b"]


def test_a_terminal_brings_term_only_to_the_exec_that_has_one():
    with_term = [*CONTAINER_ENV[:2], "TERM=xterm", CONTAINER_ENV[2]]
    container_tty = {"Tty": True}
    assert exec_env(with_term, container_tty, tty=False, request_env=[]) == CONTAINER_ENV
    assert exec_env(CONTAINER_ENV, {}, tty=True, request_env=[]) == with_term
    # A TERM the container was given is its own, terminal or not.
    own = {"Tty": True, "Env": ["TERM=xterm"]}
    assert "TERM=xterm" in exec_env(with_term, own, tty=False, request_env=[])
    assert exec_env(["TERM=vt100"], {}, tty=True, request_env=[]) == ["TERM=vt100"]


def test_the_process_spec_is_the_containers_with_the_execs_command():
    made = record(Cmd=["sh", "-c", "pwd"], Env=["A=b"], Tty=True)
    spec = process_spec(CONTAINER_PROCESS, made, {}, None, EVERY_CAP)
    assert spec["args"] == ["sh", "-c", "pwd"]
    assert spec["cwd"] == "/srv" and spec["terminal"] is True
    assert spec["env"][-1] == "A=b" and "TERM=xterm" in spec["env"]
    assert spec["user"] == CONTAINER_PROCESS["user"]
    assert spec["rlimits"] == CONTAINER_PROCESS["rlimits"]
    assert spec["capabilities"]["effective"] == ["CAP_CHOWN", "CAP_KILL"]
    assert "consoleSize" not in spec
    assert CONTAINER_PROCESS["args"] == ["sleep", "300"]  # the container's is left alone


def test_a_user_and_a_working_folder_of_the_execs_own():
    made = record(User="1000", WorkingDir="/tmp")
    user = User(uid=1000, gid=100, additional_gids=[100, 20], home="/home/u")
    spec = process_spec(CONTAINER_PROCESS, made, {}, user, EVERY_CAP)
    assert spec["user"] == {"uid": 1000, "gid": 100, "additionalGids": [100, 20]}
    assert spec["cwd"] == "/tmp"
    # Not root: only the bounding set is kept, as for the container's own process.
    assert spec["capabilities"] == {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": [],
                                    "permitted": []}


def test_a_privileged_exec_gets_every_capability():
    spec = process_spec(CONTAINER_PROCESS, record(Privileged=True), {}, None, EVERY_CAP)
    assert spec["capabilities"] == {"bounding": EVERY_CAP, "effective": EVERY_CAP,
                                    "permitted": EVERY_CAP}


def test_a_command_that_cannot_run_is_the_requests_fault():
    missing = PouchError("internal", 'exec: "nosuch": executable file not found in $PATH')
    assert explain_start_error(missing).code == "invalid"
    other = PouchError("unavailable", "containerd is not reachable")
    assert explain_start_error(other) is other


# -- the GC ---------------------------------------------------------------------------


def test_the_gc_drops_a_finished_exec_at_its_second_pass():
    live, done = record(), record()
    live.id, done.id = "live", "done"
    done.phase, done.exit_code = Phase.EXITED, 0
    assert collect_garbage([live, done]) == []
    assert done.can_remove and done.inspect()["CanRemove"] and not live.can_remove
    assert collect_garbage([live, done]) == ["done"]


def test_the_gc_keeps_execs_never_started_and_running_ones():
    created, running = record(), record()
    running.phase = Phase.RUNNING
    for _ in range(3):
        assert collect_garbage([created, running]) == []
    assert not created.can_remove and not running.can_remove
