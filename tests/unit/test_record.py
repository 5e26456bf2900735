"""A container's record: checking a create body, building what inspect shows,
and the one-line summaries `docker ps` prints."""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Any

import pytest

from pouch.actors.container import lifecycle as lc
from pouch.actors.container import record as rec
from pouch.actors.timefmt import ZERO_TIME, parse_rfc3339, rfc3339_nano, rfc3339_nanos
from pouch.proto.envelope import PouchError
from pouch.proto.shapes import ResolvedImage

IMAGE = ResolvedImage(id="sha256:" + "ab" * 32, name="docker.io/library/busybox:latest",
                      config={"Cmd": ["sh"], "Entrypoint": None, "Labels": {"from": "image"}},
                      chain_id="sha256:" + "cd" * 32, snapshotter="overlayfs")
PATHS = {name: f"/var/lib/pouch/containers/c1/{name}"
         for name in ("hostname", "hosts", "resolv.conf", "json.log")}
NOW = 1_700_000_000.0


def refused(body: dict[str, Any]) -> str:
    with pytest.raises(PouchError) as err:
        rec.check_config(body)
    assert err.value.code == "invalid"
    return err.value.message


def body(**fields: Any) -> dict[str, Any]:
    return {"Image": "busybox", **fields}


def host(**fields: Any) -> dict[str, Any]:
    return body(HostConfig=fields)


def new(cid: str = "c" * 64, name: str = "web", **fields: Any) -> dict[str, Any]:
    create = body(**fields)
    return rec.new_record(cid, name, create, IMAGE, ["echo", "hi"], PATHS)


def at(offset: float) -> str:
    return rfc3339_nano(int((NOW + offset) * 1e9))


# -- names and IDs ---------------------------------------------------------------


def test_new_ids_are_64_hex_and_unique():
    ids = {rec.new_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 64 and int(i, 16) >= 0 for i in ids)


def test_random_names_are_adjective_underscore_animal():
    left, _, right = rec.random_name().partition("_")
    assert left.isalpha() and right.isalpha()


# -- check_config: types -----------------------------------------------------------


def test_a_minimal_body_is_fine_without_a_warning():
    assert rec.check_config(body()) == []


@pytest.mark.parametrize(("field", "value", "kinds"), [
    ("Tty", "yes", "bool"),
    ("Tty", 1, "bool"),
    ("Hostname", 5, "str"),
    ("Env", "A=1", "list or null"),
    ("Cmd", 5, "list or str or null"),
    ("Entrypoint", {"sh": 1}, "list or str or null"),
    ("Labels", ["a=b"], "dict or null"),
    ("StopTimeout", "10", "int or null"),
    ("StopTimeout", True, "int or null"),
    ("HostConfig", "host", "dict or null"),
    ("Image", 7, "str"),
])
def test_a_wrong_type_names_the_field(field, value, kinds):
    assert refused(body(**{field: value})) == f"invalid field Config.{field}: must be {kinds}"


def test_null_is_taken_where_docker_takes_it():
    rec.check_config(body(Env=None, Cmd=None, Entrypoint=None, Labels=None, StopTimeout=None,
                          StopSignal=None, HostConfig=None, NetworkingConfig=None))


def test_the_image_is_required():
    assert refused({}) == "invalid field Config.Image: an image is required"
    assert refused({"Image": ""}) == "invalid field Config.Image: an image is required"


@pytest.mark.parametrize("field", ["Env", "Cmd", "Entrypoint"])
def test_lists_hold_strings_only(field):
    assert refused(body(**{field: ["a", 1]})) == \
        f"invalid field Config.{field}: must be a list of strings"


def test_label_values_are_strings():
    assert refused(body(Labels={"a": 1})) == "invalid field Config.Labels: values must be strings"
    rec.check_config(body(Labels={"a": "1"}))


@pytest.mark.parametrize("signal", ["SIGTERM", "TERM", "SIGUSR1", "9"])
def test_a_stop_signal_is_checked_when_created(signal):
    rec.check_config(body(StopSignal=signal))


def test_an_unknown_stop_signal_is_refused_when_created():
    assert refused(body(StopSignal="SIGNOPE")) == "Invalid signal: SIGNOPE"


def test_fields_it_does_not_know_are_left_alone():
    rec.check_config(body(Unheard={"of": True}))


# -- check_config: network ---------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "", "default"])
def test_the_default_network_mode_is_the_bridge(mode):
    create = host(NetworkMode=mode) if mode is not None else body()
    assert rec.check_config(create) == []
    assert rec.network_mode(create) == "bridge"


@pytest.mark.parametrize("mode", ["none", "host"])
def test_none_and_host_are_taken_without_a_warning(mode):
    assert rec.check_config(host(NetworkMode=mode)) == []
    assert rec.network_mode(host(NetworkMode=mode)) == mode


@pytest.mark.parametrize("mode", ["bridge", "my-net"])
def test_bridge_and_user_networks_are_taken(mode):
    assert rec.check_config(host(NetworkMode=mode)) == []
    assert rec.network_mode(host(NetworkMode=mode)) == mode


def test_published_ports_without_a_bridge_network_earn_a_warning():
    warnings = rec.check_config(host(NetworkMode="none",
                                     PortBindings={"80/tcp": [{"HostPort": "8080"}]}))
    assert warnings == ["published ports are discarded in network mode none: they need "
                        "--network bridge or a user network"]


@pytest.mark.parametrize("mode", ["service:web"])  # container:<name> is joined (joins.py)
def test_other_network_modes_are_refused_naming_the_mode(mode):
    message = refused(host(NetworkMode=mode))
    assert message.startswith("invalid field HostConfig.NetworkMode:")
    assert repr(mode) in message and "supported: none, host" in message


def test_a_network_mode_must_be_a_string():
    assert refused(host(NetworkMode=["host"])) == \
        "invalid field HostConfig.NetworkMode: must be a string"


# -- check_config: restart policy ------------------------------------------------------


@pytest.mark.parametrize("name", ["", "no", "always", "unless-stopped", "on-failure"])
def test_dockers_restart_policies_are_taken(name):
    rec.check_config(host(NetworkMode="none", RestartPolicy={"Name": name}))


def test_on_failure_takes_a_retry_count():
    rec.check_config(host(NetworkMode="none",
                          RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 3}))


def test_an_unknown_policy_is_named():
    assert refused(host(RestartPolicy={"Name": "sometimes"})) == \
        "invalid field HostConfig.RestartPolicy: unknown policy 'sometimes'"
    assert "unknown policy 'always'" in refused(host(RestartPolicy="always"))


@pytest.mark.parametrize("count", [-1, "3", 1.5])
def test_a_retry_count_is_a_non_negative_integer(count):
    assert refused(host(RestartPolicy={"Name": "on-failure", "MaximumRetryCount": count})) == \
        ("invalid field HostConfig.RestartPolicy.MaximumRetryCount: must be a non-negative "
         "integer")


def test_a_retry_count_needs_on_failure():
    assert refused(host(RestartPolicy={"Name": "always", "MaximumRetryCount": 2})) == \
        ("invalid field HostConfig.RestartPolicy: maximum retry count cannot be used with "
         "restart policy 'always'")


@pytest.mark.parametrize("name", ["always", "unless-stopped", "on-failure"])
def test_auto_remove_conflicts_with_a_restart_policy(name):
    assert refused(host(AutoRemove=True, RestartPolicy={"Name": name})) == \
        "conflicting options: AutoRemove and a restart policy"


def test_auto_remove_goes_with_no_policy():
    rec.check_config(host(NetworkMode="none", AutoRemove=True, RestartPolicy={"Name": "no"}))
    rec.check_config(host(NetworkMode="none", AutoRemove=True))


# -- new_record --------------------------------------------------------------------------


def test_a_new_record_is_created_and_not_started():
    record = new()
    state = record["State"]
    assert state["Status"] == "created" and not state["Running"]
    assert (state["Pid"], state["ExitCode"]) == (0, 0)
    assert state["StartedAt"] == state["FinishedAt"] == ZERO_TIME
    assert record["Name"] == "/web" and record["Id"] == "c" * 64
    assert record["Image"] == IMAGE["id"]
    assert (record["Path"], record["Args"]) == ("echo", ["hi"])
    assert record["LogPath"] == PATHS["json.log"]
    assert record["HostsPath"] == PATHS["hosts"]
    assert abs(parse_rfc3339(record["Created"]) - parse_rfc3339(rfc3339_nano())) < 5


def test_a_new_record_fills_dockers_host_config_defaults():
    host_config = new()["HostConfig"]
    assert host_config["NetworkMode"] == "bridge"
    assert host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {}}
    empty = new(HostConfig={"RestartPolicy": {"Name": ""}})["HostConfig"]
    assert empty["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


def test_the_image_gives_cmd_and_labels_the_body_overrides():
    record = new(Labels={"mine": "yes", "from": "body"})
    assert record["Config"]["Cmd"] == ["sh"]
    assert record["Config"]["Labels"] == {"from": "body", "mine": "yes"}
    assert new(Cmd=["true"])["Config"]["Cmd"] == ["true"]
    assert "HostConfig" not in record["Config"]


def test_the_network_is_listed_under_its_mode():
    assert list(new(HostConfig={"NetworkMode": "none"})["NetworkSettings"]["Networks"]) \
        == ["none"]
    hosted = new(HostConfig={"NetworkMode": "host"})
    assert list(hosted["NetworkSettings"]["Networks"]) == ["host"]


# -- status_text ---------------------------------------------------------------------------


def test_status_of_a_running_container():
    state = {"Status": "running", "StartedAt": at(-5)}
    assert rec.status_text(state, now=NOW) == "Up 5 seconds"
    assert rec.status_text({"Status": "running", "StartedAt": at(-0.2)}, now=NOW) == \
        "Up Less than a second"
    assert rec.status_text({"Status": "running", "StartedAt": at(-3 * 3600)}, now=NOW) == \
        "Up 3 hours"


def test_status_of_an_exited_container():
    state = {"Status": "exited", "ExitCode": 3, "FinishedAt": at(-120)}
    assert rec.status_text(state, now=NOW) == "Exited (3) 2 minutes ago"
    assert rec.status_text({"Status": "exited", "ExitCode": 0, "FinishedAt": at(-61)},
                           now=NOW) == "Exited (0) About a minute ago"


def test_status_of_an_exited_container_without_a_finish_time():
    assert rec.status_text({"Status": "exited", "ExitCode": 137, "FinishedAt": ZERO_TIME},
                           now=NOW) == "Exited (137)"


def test_status_of_a_restarting_container():
    state = {"Status": "restarting", "ExitCode": 1, "FinishedAt": at(-3)}
    assert rec.status_text(state, now=NOW) == "Restarting (1) 3 seconds ago"


def test_status_of_created_and_dead_containers():
    assert rec.status_text({"Status": "created"}, now=NOW) == "Created"
    assert rec.status_text({"Status": "dead"}, now=NOW) == "Dead"


# -- the state changes ---------------------------------------------------------------


def test_running_then_exited_then_dead():
    record = new()
    rec.set_running(record, 4242, at(0))
    state = record["State"]
    assert (state["Status"], state["Running"], state["Pid"]) == ("running", True, 4242)
    assert state["StartedAt"] == at(0) and state["FinishedAt"] == ZERO_TIME
    rec.set_exited(record, 2, at(1), "oops")
    assert (state["Status"], state["Running"], state["Pid"]) == ("exited", False, 0)
    assert (state["ExitCode"], state["Error"], state["FinishedAt"]) == (2, "oops", at(1))
    rec.set_dead(record, "its containerd container is gone")
    assert (state["Status"], state["Dead"]) == ("dead", True)
    assert state["Error"] == "its containerd container is gone"


def test_an_exit_without_a_time_is_stamped_now():
    record = new()
    rec.set_exited(record, 0, "")
    assert record["State"]["FinishedAt"] != ZERO_TIME


def test_the_lifecycle_is_read_from_the_record_and_written_back():
    record = new()
    rec.set_running(record, 4242, at(0))
    life = rec.lifecycle(record)
    assert (life.id, life.status, life.started_at) == ("c" * 64, lc.Status.RUNNING, NOW)
    assert (life.restart_count, life.backoff, life.manually_stopped) == (0, 0, False)
    rec.set_lifecycle(record, replace(life, status=lc.Status.RESTARTING, restart_count=2,
                                      backoff=2, manually_stopped=True))
    state = record["State"]
    # As dockerd shows it: a container about to be restarted counts as running.
    assert (state["Status"], state["Running"], state["Restarting"]) == \
        ("restarting", True, True)
    assert record["RestartCount"] == 2
    assert rec.lifecycle(record) == replace(life, status=lc.Status.RESTARTING,
                                            restart_count=2, backoff=2,
                                            manually_stopped=True)


def test_a_container_being_removed_with_its_task_alive_still_runs():
    record = new()
    rec.set_running(record, 4242, at(0))
    rec.set_lifecycle(record, replace(rec.lifecycle(record), status=lc.Status.REMOVING))
    assert (record["State"]["Status"], record["State"]["Running"]) == ("removing", True)


def test_a_new_record_is_at_the_start_of_its_lifecycle():
    assert rec.lifecycle(new()) == lc.State(id="c" * 64, status=lc.Status.CREATED,
                                            started_at=parse_rfc3339(ZERO_TIME))


# -- summary --------------------------------------------------------------------------------


def test_the_summary_is_a_row_of_get_containers_json():
    record = new(Labels={"tier": "front"})
    rec.set_running(record, 77, rfc3339_nano())
    row = rec.summary(record)
    assert set(row) == {"Id", "Names", "Image", "ImageID", "Command", "Created", "Ports",
                        "Labels", "State", "Status", "HostConfig", "NetworkSettings", "Mounts"}
    assert row["Id"] == "c" * 64
    assert row["Names"] == ["/web"]
    assert (row["Image"], row["ImageID"]) == ("busybox", IMAGE["id"])
    assert row["Command"] == "echo hi"
    assert isinstance(row["Created"], int)
    assert row["Created"] == int(parse_rfc3339(record["Created"]))
    assert (row["State"], row["Status"]) == ("running", "Up Less than a second")
    assert row["Labels"] == {"from": "image", "tier": "front"}
    assert row["HostConfig"] == {"NetworkMode": "bridge"}
    assert list(row["NetworkSettings"]["Networks"]) == ["bridge"]
    assert (row["Ports"], row["Mounts"]) == ([], [])


def test_the_summary_of_a_command_without_arguments():
    record = rec.new_record("d" * 64, "solo", body(), IMAGE, ["sh"], PATHS)
    assert rec.summary(record)["Command"] == "sh"
    assert rec.summary(record)["Status"] == "Created"


def test_the_summary_quotes_arguments_with_spaces_as_dockerd():
    record = rec.new_record("d" * 64, "q", body(), IMAGE,
                            ["echo", "a b", "c'd", "", "x"], PATHS)
    assert rec.summary(record)["Command"] == "echo 'a b' c'd  x"
    assert rec.summary(record, created_ns=True)["Created"] == \
        rfc3339_nanos(record["Created"])


# -- check_config: nothing silently ignored ------------------------------------------

# What `docker run busybox` sends (docker CLI 28 at API 1.41), empty fields and all.
CLI_HOST_CONFIG: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no",
    "MaximumRetryCount": 0}, "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None,
    "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None, "CgroupnsMode": "", "Dns": [],
    "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "",
    "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "",
    "UsernsMode": "", "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0,
    "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
    "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
    "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
    "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
}


def test_the_empty_fields_the_docker_cli_sends_are_taken():
    warnings = rec.check_config(body(HostConfig=CLI_HOST_CONFIG, Volumes={}, Domainname=""))
    assert warnings == []


@pytest.mark.parametrize(("field", "value"), [
    ("VolumeDriver", "flocker"),
    ("DeviceRequests", [{"Driver": "nvidia", "Count": -1}]),
    ("CpuRealtimeRuntime", 1000),
    ("StorageOpt", {"size": "10G"}),
    ("Runtime", "kata"),
])
def test_a_field_the_container_would_not_get_is_refused_by_name(field, value):
    message = refused(body(HostConfig={field: value}))
    assert f"HostConfig.{field}" in message and "not supported yet" in message


@pytest.mark.parametrize(("field", "value"), [
    ("MacAddress", "02:42:ac:11:00:02"),
])
def test_a_config_field_the_container_would_not_get_is_refused_by_name(field, value):
    assert f"Config.{field}" in refused(body(**{field: value}))


def test_what_every_container_gets_anyway_may_be_asked_for():
    rec.check_config(body(Healthcheck={"Test": ["NONE"]}, HostConfig={
        "SecurityOpt": ["seccomp=unconfined", "label=disable"], "IpcMode": "private",
        "UsernsMode": "host", "CgroupnsMode": "host", "Runtime": "runc",
        "LogConfig": {"Type": "json-file"}}))


def test_a_log_driver_other_than_json_file_or_none_is_refused_by_name():
    assert "'syslog'" in refused(body(HostConfig={"LogConfig": {"Type": "syslog"}}))
    assert "LogConfig.Config" in refused(body(HostConfig={
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "-1"}}}))
    rec.check_config(body(HostConfig={
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}}))
    rec.check_config(body(HostConfig={"LogConfig": {"Type": "none", "Config": {}}}))


def test_privileged_is_taken_without_a_warning():
    assert rec.check_config(body(HostConfig={"Privileged": True, "NetworkMode": "none"})) == []


def test_stop_timeout_and_console_size_are_bounded():
    assert "Config.StopTimeout" in refused(body(StopTimeout=2**40))
    assert "ConsoleSize" in refused(body(HostConfig={"ConsoleSize": [70000, 1]}))
    assert "ConsoleSize" in refused(body(HostConfig={"ConsoleSize": [1]}))


def test_a_start_recorded_as_running_before_it_answered_can_be_put_back():
    record = new()
    rec.begin_start(record, "tok")
    rec.set_lifecycle(record, lc.on_starting(rec.lifecycle(record)))
    before = rec.lifecycle(record), dict(record["State"]), record["RestartCount"]
    rec.begin_running(record, 4242, at(1))
    rec.set_lifecycle(record, lc.on_start_sent(rec.lifecycle(record), NOW + 1))
    assert record["State"]["Running"] and record["State"]["Pid"] == 4242
    # Its task never started (a restore found it made only): as before, the start cut.
    rec.unstarted(record)
    assert (rec.lifecycle(record), record["State"], record["RestartCount"]) == before
    assert rec.lifecycle(record).start_pending
    rec.settle_start(record, went_through=False)
    assert "tok" not in rec.tokens(record)
    rec.unstarted(record)  # nothing recorded as running: nothing to put back
    assert (rec.lifecycle(record), record["State"]) == before[:2]


def test_a_start_that_went_through_forgets_what_it_ran_from():
    record = new()
    rec.begin_start(record, "tok")
    rec.begin_running(record, 7, at(1))
    rec.settle_start(record, went_through=True)
    assert "StartedFrom" not in record[rec.PRIVATE] and "tok" in rec.tokens(record)
    rec.unstarted(record)
    assert record["State"]["Pid"] == 7


def test_the_images_env_user_workdir_and_stop_signal_join_the_config_as_dockerd():
    image = ResolvedImage(**{**IMAGE, "config": {
        "Cmd": ["sh"], "Env": ["PATH=/bin", "B=2"], "User": "1000", "WorkingDir": "/wd",
        "StopSignal": "SIGRTMIN+3"}})
    config = rec.new_record("d" * 64, "m", body(Env=["B=3", "FOO=1"]), image, ["sh"],
                            PATHS)["Config"]
    # The request's entries first, then the image's it does not name.
    assert config["Env"] == ["B=3", "FOO=1", "PATH=/bin"]
    assert (config["User"], config["WorkingDir"], config["StopSignal"]) == (
        "1000", "/wd", "SIGRTMIN+3")
    assert lc.StopPolicy.of(config).signal == signal.SIGRTMIN + 3
    own = rec.new_record("d" * 64, "m", body(User="nobody", WorkingDir="/", StopSignal="HUP"),
                         image, ["sh"], PATHS)["Config"]
    assert (own["Env"], own["User"], own["WorkingDir"], own["StopSignal"]) == (
        ["PATH=/bin", "B=2"], "nobody", "/", "HUP")
    bare = rec.new_record("d" * 64, "m", body(), IMAGE, ["sh"], PATHS)["Config"]
    assert (bare["Env"], bare["User"], bare["WorkingDir"], "StopSignal" in bare) == (
        None, "", "", False)


def test_unset_limits_and_a_cleared_entrypoint_are_recorded_as_dockerd_records_them():
    made = rec.new_record("d" * 64, "m", body(Entrypoint=[""], Cmd=["true"], HostConfig={
        "PidsLimit": 0, "MemorySwappiness": -1}), IMAGE, ["true"], PATHS)
    assert made["Config"]["Entrypoint"] is None
    assert (made["HostConfig"]["PidsLimit"], made["HostConfig"]["MemorySwappiness"]) == (
        None, None)
    kept = rec.new_record("d" * 64, "m", body(HostConfig={
        "PidsLimit": 50, "MemorySwappiness": 10}), IMAGE, ["sh"], PATHS)["HostConfig"]
    assert (kept["PidsLimit"], kept["MemorySwappiness"]) == (50, 10)
