"""A container's record: the document `docker inspect` shows, as meta.json keeps it,
and the pure rules that build and summarize it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pouch.actors.container import etcfiles, health, links
from pouch.actors.container import lifecycle as lc
from pouch.actors.container.jsonlog import log_config
from pouch.actors.container.spec.defaults import (
    create_warnings,
    discard_unsupported,
    recorded_host_config,
)
from pouch.actors.container.spec.host import local_host
from pouch.actors.container.spec.merge import merge_env
from pouch.actors.container.spec.namespaces import check_hostname, check_network_join
from pouch.actors.timefmt import (
    ZERO_TIME,
    human_duration,
    parse_rfc3339,
    rfc3339_nano,
    rfc3339_nanos,
)
from pouch.proto.docker import SNAPSHOTTER
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.limits import MAX_SECONDS
from pouch.proto.shapes import ContainerSummary, ResolvedImage

# Besides these, a user network's name or ID (the network actor knows whether it exists).
SUPPORTED_NETWORK_MODES = ("none", "host", "bridge")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
# The record keeps this private part beside what inspect shows.
PRIVATE = "Pouch"

# Field of the create body -> the JSON types it may hold (None: null allowed).
_CONFIG_TYPES: dict[str, tuple[type | None, ...]] = {
    "Hostname": (str,), "Domainname": (str,), "User": (str,), "AttachStdin": (bool,),
    "AttachStdout": (bool,), "AttachStderr": (bool,), "Tty": (bool,), "OpenStdin": (bool,),
    "StdinOnce": (bool,), "Env": (list, None), "Cmd": (list, str, None), "Image": (str,),
    "Volumes": (dict, None), "WorkingDir": (str,), "Entrypoint": (list, str, None),
    "OnBuild": (list, None), "Labels": (dict, None), "StopSignal": (str, None),
    "StopTimeout": (int, None), "ExposedPorts": (dict, None), "NetworkDisabled": (bool,),
    "MacAddress": (str,), "Shell": (list, None), "Healthcheck": (dict, None),
    "HostConfig": (dict, None), "NetworkingConfig": (dict, None), "ArgsEscaped": (bool,),
}

# Fields that would change what a container sees or may do, which pouch does not give it
# yet: refused rather than ignored, unless empty (the docker CLI sends every field, most
# of them null, [], {}, false, "" or 0) or only values that every container gets anyway.
_HOST_NOT_YET: dict[str, frozenset[str]] = {
    key: frozenset() for key in (
        "DeviceRequests", "StorageOpt", "Cgroup", "CpuRealtimePeriod",
        "CpuRealtimeRuntime", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth")
} | {
    "UsernsMode": frozenset({"host"}),
    "Runtime": frozenset({"runc", "io.containerd.runc.v2"}),
    "Isolation": frozenset({"default"}),
    "VolumeDriver": frozenset({"local"}),  # Binds, Mounts, VolumesFrom: spec/mounts.py
}
# The resources, devices, namespaces (IpcMode, PidMode, UTSMode), security options,
# masked paths, GroupAdd and Init are the spec's to check (actors/container/spec), when it
# is built at create: what it cannot apply it refuses, naming the field and why.
_CONFIG_NOT_YET = ("MacAddress",)

_LEFT = ("brave", "calm", "clever", "cosmic", "eager", "fervent", "gentle", "happy", "jolly",
         "keen", "kind", "lucid", "mellow", "nimble", "proud", "quiet", "rapid", "serene",
         "sharp", "steady", "swift", "tender", "upbeat", "vivid", "witty", "zealous")
_RIGHT = ("badger", "beaver", "condor", "dolphin", "falcon", "ferret", "gecko", "heron",
          "ibis", "jackal", "koala", "lemur", "lynx", "marmot", "narwhal", "ocelot", "otter",
          "panda", "puffin", "quokka", "raven", "salmon", "tapir", "walrus", "yak", "zebra")


def new_id() -> str:
    return secrets.token_hex(32)


def random_name() -> str:
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"


def check_config(body: dict[str, Any]) -> list[str]:
    """Validate a create body's types; the warnings it earns. Limits this machine cannot
    apply are dropped from its HostConfig, with a warning each (discard_unsupported).
    Errors: invalid."""
    for key, kinds in _CONFIG_TYPES.items():
        if key not in body:
            continue
        value = body[key]
        if value is None and None in kinds:
            continue
        wanted = tuple(k for k in kinds if k is not None)
        if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
            names = " or ".join(k.__name__ if k else "null" for k in kinds)
            raise invalid(f"invalid field Config.{key}: must be {names}")
    if not body.get("Image"):
        raise invalid("invalid field Config.Image: an image is required")
    for key in ("Env", "Cmd", "Entrypoint"):
        value = body.get(key)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise invalid(f"invalid field Config.{key}: must be a list of strings")
    labels = body.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise invalid("invalid field Config.Labels: values must be strings")
    if body.get("StopSignal"):
        lc.parse_signal(body["StopSignal"])
    stop_timeout = body.get("StopTimeout")
    if stop_timeout is not None and stop_timeout > MAX_SECONDS:
        raise invalid(f"invalid field Config.StopTimeout: {stop_timeout} is above {MAX_SECONDS}")
    host = body.get("HostConfig") or {}
    check_network_join(body)  # container:<name|id>, and what the joiner cannot have
    links.check(body)
    warnings = check_not_yet(body)
    if isinstance(host, dict):
        warnings += discard_unsupported(host, local_host().cgroups())
    mode = host.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise invalid("invalid field HostConfig.NetworkMode: must be a string")
    if mode != "default" and mode not in SUPPORTED_NETWORK_MODES and ":" in mode \
            and not mode.startswith("container:"):
        raise invalid(f"invalid field HostConfig.NetworkMode: network mode {mode!r} is not "
                      "supported yet (supported: none, host, bridge, a user network, "
                      "container:<name|id>)")
    if mode in ("none", "host") and (host.get("PortBindings") or
                                                host.get("PublishAllPorts")):
        warnings.append(f"published ports are discarded in network mode {mode}: they need "
                        "--network bridge or a user network")
    policy = host.get("RestartPolicy") or {}
    if not isinstance(policy, dict) or policy.get("Name", "") not in RESTART_POLICIES:
        raise invalid(f"invalid field HostConfig.RestartPolicy: unknown policy "
                      f"{policy.get('Name') if isinstance(policy, dict) else policy!r}")
    retries = policy.get("MaximumRetryCount", 0) or 0
    if not isinstance(retries, int) or retries < 0:
        raise invalid("invalid field HostConfig.RestartPolicy.MaximumRetryCount: "
                      "must be a non-negative integer")
    if retries and policy.get("Name") != "on-failure":
        raise invalid("invalid field HostConfig.RestartPolicy: maximum retry count cannot be "
                      f"used with restart policy '{policy.get('Name')}'")
    if host.get("AutoRemove") and policy.get("Name") not in ("", "no", None):
        raise invalid("conflicting options: AutoRemove and a restart policy")
    return warnings


def check_not_yet(body: dict[str, Any]) -> list[str]:
    """Refuse what a container would not get (see _HOST_NOT_YET); the warnings for what
    it gets only in part. The body's types are checked already. Errors: invalid, naming
    the field."""
    host = body.get("HostConfig") or {}
    for key in _CONFIG_NOT_YET:
        if body.get(key):
            raise _not_yet(f"Config.{key}")
    health.check_config(body.get("Healthcheck"))
    for key, allowed in _HOST_NOT_YET.items():
        value = host.get(key)
        values = value if isinstance(value, list) else [value]
        if value and not all(isinstance(v, str) and v in allowed for v in values):
            raise _not_yet(f"HostConfig.{key}")
    log_config(host.get("LogConfig"))  # json-file (rotated or not) or none
    etcfiles.Dns.of(host)
    etcfiles.extra_hosts(host)
    check_hostname(body)
    size = host.get("ConsoleSize")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65535 for n in size)):
        raise invalid("invalid field HostConfig.ConsoleSize: must be [height, width], "
                      "each 0 to 65535")
    return create_warnings(host)


def _not_yet(field: str) -> Exception:
    return invalid(f"invalid field {field}: not supported yet (the container would not get "
                   "it); leave it out")


def network_mode(body: dict[str, Any]) -> str:
    mode = (body.get("HostConfig") or {}).get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def new_record(cid: str, name: str, body: dict[str, Any], image: ResolvedImage,
               args: list[str], paths: dict[str, str]) -> dict[str, Any]:
    """The inspect document of a container just created."""
    host = recorded_host_config(body.get("HostConfig") or {})
    mode = network_mode(body)
    host["NetworkMode"] = mode
    host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
    if not host["RestartPolicy"].get("Name"):
        host["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    image_config = image.get("config") or {}
    # What dockerd merges of the image's config into the container's (its commit.go's
    # merge), so that inspect, exec, health probes, stop and commit see them.
    config["Env"] = merge_env(config.get("Env") or [], image_config.get("Env") or []) or None
    for key in ("User", "WorkingDir"):
        config[key] = config.get(key) or image_config.get(key) or ""
    if not config.get("StopSignal") and _is_signal(image_config.get("StopSignal")):
        config["StopSignal"] = image_config["StopSignal"]
    if not config.get("Cmd") and not config.get("Entrypoint"):
        config["Cmd"] = image_config.get("Cmd")
    if config.get("Entrypoint") is None:
        config["Entrypoint"] = image_config.get("Entrypoint")
    elif config["Entrypoint"] == [""]:
        config["Entrypoint"] = None  # `--entrypoint ""`: none, recorded as dockerd does
    check = health.merge(image_config.get("Healthcheck"), config.get("Healthcheck"))
    if check is not None:
        config["Healthcheck"] = check
    labels = {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})}
    config["Labels"] = labels
    if image_config.get("ExposedPorts"):  # the image's EXPOSE, for -P (as dockerd merges)
        config["ExposedPorts"] = {**image_config["ExposedPorts"],
                                  **(config.get("ExposedPorts") or {})}
    # The image's VOLUMEs join the request's, as dockerd merges them at create.
    volumes = {**(image_config.get("Volumes") or {}), **(config.get("Volumes") or {})}
    config["Volumes"] = volumes or None
    return {
        "Id": cid, "Created": rfc3339_nano(), "Path": args[0] if args else "",
        "Args": args[1:], "State": {
            "Status": "created", "Running": False, "Paused": False, "Restarting": False,
            "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
            "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME},
        "Image": image["id"], "ResolvConfPath": paths["resolv.conf"],
        "HostnamePath": paths["hostname"], "HostsPath": paths["hosts"],
        "LogPath": paths["json.log"], "Name": "/" + name, "RestartCount": 0,
        "Driver": SNAPSHOTTER, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host,
        "GraphDriver": {"Name": SNAPSHOTTER, "Data": None}, "Mounts": [], "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            # One that joins another's network has none of its own (dockerd's {}).
            "Networks": {} if mode.startswith("container:") else {mode: {
                "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": mode,
                "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": "", "DriverOpts": None}}},
    }


def _is_signal(value: Any) -> bool:
    """A stop signal an image names is taken if it is one (an image is not refused)."""
    try:
        lc.parse_signal(value)
    except PouchError:
        return False
    return bool(value)


def set_running(record: dict[str, Any], pid: int, started_at: str) -> None:
    # OOMKilled tells of the last run, as in dockerd: a new one starts without it.
    record["State"].update(Status="running", Running=True, Restarting=False, Dead=False,
                           OOMKilled=False, Pid=pid, ExitCode=0, Error="",
                           StartedAt=started_at, FinishedAt=ZERO_TIME)


def set_exited(record: dict[str, Any], code: int, finished_at: str, error: str = "") -> None:
    record["State"].update(Status="exited", Running=False, Restarting=False, Pid=0,
                           ExitCode=code, Error=error, FinishedAt=finished_at or rfc3339_nano())
    (record.get(PRIVATE) or {}).pop("ExitPending", None)


def set_dead(record: dict[str, Any], error: str) -> None:
    record["State"].update(Status="dead", Running=False, Restarting=False, Dead=True, Pid=0,
                           Error=error, FinishedAt=rfc3339_nano())


# How many calls done once per token (pouch.proto.contract: `once`) a record remembers.
TOKENS_KEPT = 8


def remember_token(record: dict[str, Any], token: str) -> None:
    """A create or start done for a call: a retry of that call finds its token here."""
    if token:
        kept = record.setdefault(PRIVATE, {}).setdefault("Tokens", [])
        kept.append(token)
        del kept[:-TOKENS_KEPT]


def tokens(record: dict[str, Any]) -> list[str]:
    return list((record.get(PRIVATE) or {}).get("Tokens") or [])


def begin_start(record: dict[str, Any], token: str) -> None:
    """A start is about to create the task: its token waits to be known done or cut."""
    record.setdefault(PRIVATE, {})["StartingToken"] = token


def settle_start(record: dict[str, Any], went_through: bool) -> None:
    """The start begun last ran (its token is remembered) or was cut (forgotten)."""
    private = record.get(PRIVATE) or {}
    token = private.pop("StartingToken", "")
    private.pop("StartedFrom", None)
    if went_through:
        remember_token(record, token)


# What a running record changes of the one before, by record key and by private key.
_STARTED_KEYS = ("State", "RestartCount")
_STARTED_PRIVATE = ("Backoff", "ManuallyStopped", "ExitRequested")


def begin_running(record: dict[str, Any], pid: int, started_at: str) -> None:
    """The task is made and its start on its way: the record says it runs, and keeps
    what it said before for `unstarted` (until settle_start)."""
    private = record.setdefault(PRIVATE, {})
    before = {key: record[key] for key in _STARTED_KEYS if key in record}
    before["State"] = dict(record["State"])  # set_running changes it in place
    before.update((key, private[key]) for key in _STARTED_PRIVATE if key in private)
    private["StartedFrom"] = before
    set_running(record, pid, started_at)


def unstarted(record: dict[str, Any]) -> None:
    """Put back what begin_running changed and the lifecycle made of it: its task never
    started. Nothing when no start is recorded as running."""
    private = record.get(PRIVATE) or {}
    before = private.pop("StartedFrom", None)
    if before is None:
        return
    for key in (*_STARTED_KEYS, *_STARTED_PRIVATE):
        if key in before:
            (record if key in _STARTED_KEYS else private)[key] = before[key]


def begin_removal(record: dict[str, Any], token: str, volumes: bool = False) -> None:
    """A remove call is about to begin: its token goes into the container's tomb;
    `volumes` (rm -v): its anonymous volumes go with it."""
    record.setdefault(PRIVATE, {}).update(RemovingToken=token, RemoveVolumes=volumes)


def removes_volumes(record: dict[str, Any]) -> bool:
    """The container's anonymous volumes go with it: rm -v asked, or --rm (as dockerd's
    auto-removal, which removes them too)."""
    return bool((record.get(PRIVATE) or {}).get("RemoveVolumes")
                or record["HostConfig"].get("AutoRemove"))


def mounts(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The container's own mounts as spec/mounts.py planned them (Planned records)."""
    return list((record.get(PRIVATE) or {}).get("Mounts") or [])


def set_mounts(record: dict[str, Any], planned: list[dict[str, Any]],
               shown: list[dict[str, Any]]) -> None:
    """Keep the planned mounts (private) and what inspect shows of them."""
    record.setdefault(PRIVATE, {})["Mounts"] = planned
    record["Mounts"] = shown


def set_links(record: dict[str, Any], wanted: list[links.Link],
              reached: list[tuple[links.Link, Mapping[str, Any]]]) -> None:
    """A create's links, as dockerd records them: on the default bridge (or none) in
    HostConfig.Links, the containers they reach kept by ID; on a user network as its
    endpoint's Links, as asked, and none in HostConfig (dockerd's inspect shows there
    only the links it registered, never a user network's)."""
    if reached:
        kept = links.recorded(record["Name"], reached)
        set_bridge_links(record, kept, links.shown(
            kept, {other["Id"]: other["Name"] for _, other in reached}))
        return
    record["HostConfig"]["Links"] = None
    for network in record["NetworkSettings"]["Networks"]:
        set_network_links(record, network, wanted)


def set_network_links(record: dict[str, Any], network: str, wanted: list[links.Link]) -> None:
    """The links of a user network the container was connected to, as its endpoint's
    Links (as dockerd records them)."""
    record["NetworkSettings"]["Networks"][network]["Links"] = [
        f"{link.name}:{link.alias}" for link in wanted]


def bridge_links(record: dict[str, Any]) -> list[dict[str, str]] | None:
    """The links on the default bridge recorded at create (links.recorded); None for a
    container made without any."""
    kept = (record.get(PRIVATE) or {}).get("Links")
    return None if kept is None else list(kept)


def set_bridge_links(record: dict[str, Any], kept: list[dict[str, str]],
                     shown: list[str] | None) -> None:
    """Keep the bridge links (private) and what inspect shows of them."""
    record.setdefault(PRIVATE, {})["Links"] = kept
    record["HostConfig"]["Links"] = shown


def removal_token(record: dict[str, Any]) -> str:
    return str((record.get(PRIVATE) or {}).get("RemovingToken") or "")


def tomb(record: dict[str, Any], kept_log: Path | None) -> dict[str, Any]:
    """What a removed container leaves behind (pouch.actors.container.meta), its log kept
    at `kept_log` if not None."""
    state = record["State"]
    removal = removal_token(record)
    return {"Name": record["Name"].lstrip("/"), "ExitCode": state["ExitCode"],
            "Tokens": tokens(record) + ([removal] if removal else []), "At": time.time(),
            "Tty": bool(record["Config"].get("Tty")), "Log": str(kept_log or "")}


def wait_answer(exit_code: int, error: str) -> dict[str, Any]:
    """The body of a wait's answer, as dockerd writes it."""
    return {"StatusCode": exit_code, "Error": {"Message": error} if error else None}


def note_exit(record: dict[str, Any], code: int, exited_at: str) -> None:
    """Keep an exit that is about to be recorded: deleting the task loses its status, so
    an actor that dies in between finds it here at restore."""
    record.setdefault(PRIVATE, {})["ExitPending"] = [code, exited_at]


def noted_exit(record: dict[str, Any]) -> tuple[int, str] | None:
    """The exit note_exit kept, if the record has one still to record."""
    pending = (record.get(PRIVATE) or {}).get("ExitPending")
    return (int(pending[0]), str(pending[1])) if pending else None


def lifecycle(record: dict[str, Any]) -> lc.State:
    """The lifecycle state the record holds."""
    state, private = record["State"], record.get(PRIVATE) or {}
    try:
        started = parse_rfc3339(state["StartedAt"])
    except ValueError:
        started = 0.0
    return lc.State(
        id=record["Id"], status=lc.Status(state["Status"]), started_at=started,
        restart_count=record.get("RestartCount", 0), backoff=private.get("Backoff", 0),
        manually_stopped=private.get("ManuallyStopped", False),
        exit_requested=private.get("ExitRequested", False),
        start_pending=private.get("StartPending", False),
        removal_pending=private.get("RemovalPending", False))


def set_lifecycle(record: dict[str, Any], life: lc.State) -> None:
    """Write a lifecycle state into the record (times, pid and exit code are set apart)."""
    status = life.status
    # As dockerd: a container its policy is about to restart counts as running (so
    # `docker ps` lists it and `rm` needs force), though no task runs meanwhile.
    record["State"].update(Status=status.value,
                           Running=life.live or status is lc.Status.RESTARTING,
                           Paused=status is lc.Status.PAUSED,
                           Restarting=status is lc.Status.RESTARTING,
                           Dead=status is lc.Status.DEAD)
    record["RestartCount"] = life.restart_count
    record.setdefault(PRIVATE, {}).update(Backoff=life.backoff,
                                          ManuallyStopped=life.manually_stopped,
                                          ExitRequested=life.exit_requested,
                                          StartPending=life.start_pending,
                                          RemovalPending=life.removal_pending)


def status_text(state: dict[str, Any], now: float | None = None) -> str:
    """The STATUS column of `docker ps`: 'Up 5 seconds', 'Exited (3) 2 minutes ago'."""
    now = time.time() if now is None else now
    status = state.get("Status")
    if status == "running":
        return "Up " + human_duration(now - parse_rfc3339(state["StartedAt"])) + \
            health.status_note(state.get("Health"))
    if status == "paused":
        return f"Up {human_duration(now - parse_rfc3339(state['StartedAt']))} (Paused)"
    if status == "restarting":
        return (f"Restarting ({state['ExitCode']}) "
                f"{human_duration(now - parse_rfc3339(state['FinishedAt']))} ago")
    if status == "exited":
        if state.get("FinishedAt", ZERO_TIME) == ZERO_TIME:
            return f"Exited ({state['ExitCode']})"
        return (f"Exited ({state['ExitCode']}) "
                f"{human_duration(now - parse_rfc3339(state['FinishedAt']))} ago")
    if status == "dead":
        return "Dead"
    if status == "removing":
        return "Removal In Progress"
    return "Created"


def _summary_ports(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The list's Ports, from the inspect document's (dockerd's): one entry per binding, an
    exposed port without one as its number and protocol alone."""
    ports: list[dict[str, Any]] = []
    for port, bindings in ((record.get("NetworkSettings") or {}).get("Ports") or {}).items():
        number, _, proto = port.partition("/")
        if not number.isdigit():
            continue
        private = {"PrivatePort": int(number), "Type": proto or "tcp"}
        published = [b for b in bindings or [] if str(b.get("HostPort") or "").isdigit()]
        ports += [{"IP": b.get("HostIp") or "", **private, "PublicPort": int(b["HostPort"])}
                  for b in published] or [private]
    return ports


def summary(record: dict[str, Any], created_ns: bool = False) -> ContainerSummary:
    """One row of GET /containers/json (`created_ns`: Created in nanoseconds)."""
    config = record["Config"]
    # dockerd's quoting: an argument with a space in single quotes, nothing else.
    command = " ".join([record["Path"], *(f"'{a}'" if " " in a else a
                                          for a in record["Args"])]).strip()
    mode = record["HostConfig"].get("NetworkMode", "none")
    return {
        "Id": record["Id"], "Names": [record["Name"]], "Image": config.get("Image", ""),
        "ImageID": record["Image"], "Command": command,
        "Created": rfc3339_nanos(record["Created"]) if created_ns
        else int(parse_rfc3339(record["Created"])),
        "Ports": _summary_ports(record),
        "Labels": config.get("Labels") or {}, "State": record["State"]["Status"],
        "Status": status_text(record["State"]), "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": record["NetworkSettings"]["Networks"]},
        "Mounts": record.get("Mounts") or [],
    }
