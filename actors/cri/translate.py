"""CRI's vocabulary to Docker's and back: pure functions, no I/O.

A pod sandbox is a pause container and a CRI container a container of the
container actor; what CRI knows of them and Docker has no field for (kind,
metadata, the pod's labels and annotations, where the log goes) is kept in
container labels under one prefix, so that nothing is held here that a
restart could lose.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from cri_api.v1 import api_pb2 as cri

from pouch.actors.container import pause
from pouch.actors.containerd.shims import GROUP_LABEL
from pouch.actors.timefmt import rfc3339_nanos
from pouch.proto.envelope import invalid

PREFIX = "io.pouch.cri."
KIND = pause.KIND_LABEL               # "sandbox" (made as a pause) or "container"
SANDBOX = PREFIX + "sandbox-id"       # a container's pod
METADATA = PREFIX + "metadata"        # the CRI metadata, JSON
LABEL = PREFIX + "label."             # + the CRI label's key
ANNOTATION = PREFIX + "annotation."   # + the CRI annotation's key
LOG_DIRECTORY = PREFIX + "log-directory"
LOG_PATH = PREFIX + "log-path"        # a container's, absolute
NETWORK = PREFIX + "network"          # a pod's: "host" or "pod"
IMAGE = PREFIX + "image"              # a container's image as CRI asked for it
RESOLV_CONF = PREFIX + "resolv-conf"  # a pod's own resolv.conf, from its DNS config
SANDBOX_KIND = pause.SANDBOX_KIND
CONTAINER_KIND = "container"
CONTAINER_STATE: dict[str, cri.ContainerState.ValueType] = {
    "created": cri.CONTAINER_CREATED, "running": cri.CONTAINER_RUNNING,
    "paused": cri.CONTAINER_RUNNING, "restarting": cri.CONTAINER_RUNNING,
    "removing": cri.CONTAINER_EXITED, "exited": cri.CONTAINER_EXITED,
    "dead": cri.CONTAINER_EXITED}
_ZERO_TIME = "0001-01-01T00:00:00Z"
START_ERROR_EXIT_CODE = 128  # a container whose process never started, as containerd's
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")


def sandbox_name(meta: cri.PodSandboxMetadata) -> str:
    """The pause container's name, as dockershim's: k8s_POD_<name>_<ns>_<uid>_<attempt>."""
    return _name("k8s", "POD", meta.name, meta.namespace, meta.uid, str(meta.attempt))


def container_name(meta: cri.ContainerMetadata, pod: cri.PodSandboxMetadata) -> str:
    return _name("k8s", meta.name, pod.name, pod.namespace, pod.uid, str(meta.attempt))


def _name(*parts: str) -> str:
    return _NAME_BAD.sub("-", "_".join(parts))


def kept_labels(kind: str, labels: Mapping[str, str],
                annotations: Mapping[str, str]) -> dict[str, str]:
    """The container labels that keep a CRI object's labels and annotations."""
    out = {KIND: kind}
    out.update({LABEL + k: v for k, v in labels.items()})
    out.update({ANNOTATION + k: v for k, v in annotations.items()})
    return out


def cri_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k.removeprefix(LABEL): v for k, v in (labels or {}).items() if k.startswith(LABEL)}


def cri_annotations(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k.removeprefix(ANNOTATION): v for k, v in (labels or {}).items()
            if k.startswith(ANNOTATION)}


def nanos(text: str | None) -> int:
    """Unix nanoseconds of an RFC 3339 time, to the nanosecond; 0 for Go's zero time."""
    if not text or text.startswith("0001-01-01"):
        return 0
    try:
        return rfc3339_nanos(text)
    except ValueError:
        return 0


# -- pods ----------------------------------------------------------------------


def host_network(config: cri.PodSandboxConfig) -> bool:
    options = config.linux.security_context.namespace_options
    return options.network == cri.NODE


def sandbox_body(config: cri.PodSandboxConfig, image: str) -> dict[str, Any]:
    """The pause container's create body."""
    meta = config.metadata
    options = config.linux.security_context.namespace_options
    labels = kept_labels(SANDBOX_KIND, config.labels, config.annotations)
    labels[METADATA] = json.dumps({"name": meta.name, "uid": meta.uid,
                                   "namespace": meta.namespace, "attempt": meta.attempt})
    labels[NETWORK] = "host" if options.network == cri.NODE else "pod"
    if config.log_directory:
        labels[LOG_DIRECTORY] = config.log_directory
    host: dict[str, Any] = {
        "NetworkMode": "host" if options.network == cri.NODE else "none",
        "IpcMode": "host" if options.ipc == cri.NODE else "shareable",
        "PidMode": "host" if options.pid == cri.NODE else "",
        "RestartPolicy": {"Name": "no"},
    }
    if config.linux.cgroup_parent:
        host["CgroupParent"] = config.linux.cgroup_parent
    if config.linux.sysctls:
        host["Sysctls"] = dict(config.linux.sysctls)
    ctx = config.linux.security_context
    if ctx.privileged:
        host["Privileged"] = True
    if ctx.readonly_rootfs:
        host["ReadonlyRootfs"] = True
    if not ctx.privileged and (seccomp := _seccomp(ctx)):
        host["SecurityOpt"] = seccomp
    body: dict[str, Any] = {"Image": image, "Labels": labels, "HostConfig": host}
    if config.hostname and options.network != cri.NODE:
        body["Hostname"] = config.hostname
    if options.network == cri.NODE:
        host["UTSMode"] = "host"
    if ctx.HasField("run_as_user"):
        body["User"] = str(ctx.run_as_user.value)
    return body


def sandbox_metadata(labels: Mapping[str, str]) -> cri.PodSandboxMetadata:
    meta = _json(labels.get(METADATA))
    return cri.PodSandboxMetadata(name=str(meta.get("name", "")), uid=str(meta.get("uid", "")),
                                  namespace=str(meta.get("namespace", "")),
                                  attempt=int(meta.get("attempt", 0)))


def sandbox_state(status: str) -> cri.PodSandboxState.ValueType:
    return cri.SANDBOX_READY if status == "running" else cri.SANDBOX_NOTREADY


def sandbox_of(summary: Mapping[str, Any]) -> cri.PodSandbox:
    """A pause container as ListPodSandbox shows it (from a container list item, its
    Created in nanoseconds)."""
    labels = summary.get("Labels") or {}
    return cri.PodSandbox(
        id=summary["Id"], metadata=sandbox_metadata(labels),
        state=sandbox_state(str(summary.get("State", ""))),
        created_at=int(summary.get("Created", 0)),
        labels=cri_labels(labels), annotations=cri_annotations(labels))


def sandbox_status(doc: Mapping[str, Any], ip: str = "") -> cri.PodSandboxStatus:
    """A pause container's inspect document as PodSandboxStatus."""
    labels = (doc.get("Config") or {}).get("Labels") or {}
    host = doc.get("HostConfig") or {}
    state = doc.get("State") or {}
    network = cri.NODE if labels.get(NETWORK) == "host" else cri.POD
    return cri.PodSandboxStatus(
        id=doc["Id"], metadata=sandbox_metadata(labels),
        state=sandbox_state(str(state.get("Status", ""))),
        created_at=nanos(doc.get("Created")),
        network=cri.PodSandboxNetworkStatus(ip=ip),
        linux=cri.LinuxPodSandboxStatus(namespaces=cri.Namespace(options=cri.NamespaceOption(
            network=network,
            pid=cri.NODE if host.get("PidMode") == "host" else cri.POD,
            ipc=cri.NODE if host.get("IpcMode") == "host" else cri.POD))),
        labels=cri_labels(labels), annotations=cri_annotations(labels))


def resolv_conf(dns: cri.DNSConfig) -> str:
    """A pod's resolv.conf from its DNS config ("" if it has none: the host's applies)."""
    lines = [f"nameserver {server}" for server in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(f"{line}\n" for line in lines)


def with_resolv_conf(body: dict[str, Any], path: str) -> None:
    """Bind a pod's resolv.conf in (it replaces the container actor's own)."""
    host = body["HostConfig"]
    host["Binds"] = [*host.get("Binds", []), f"{path}:/etc/resolv.conf"]


# -- containers ----------------------------------------------------------------


def container_body(config: cri.ContainerConfig, sandbox: Mapping[str, Any], image: str,
                   pod: cri.PodSandboxConfig, oom_floor: int = -1000) -> dict[str, Any]:
    """A container's create body, in its pod's namespaces (`sandbox`: the pause
    container's inspect document). Its OOM score adjustment is clamped to `oom_floor`,
    the lowest this machine lets pouch set (containerd's restrict_oom_score_adj)."""
    pod_labels = (sandbox.get("Config") or {}).get("Labels") or {}
    pod_host = sandbox.get("HostConfig") or {}
    labels = kept_labels(CONTAINER_KIND, config.labels, config.annotations)
    labels[SANDBOX] = sandbox["Id"]
    # Served by its pause container's shim, as containerd's CRI does: no shim to start.
    labels[GROUP_LABEL] = sandbox["Id"]
    labels[IMAGE] = config.image.image
    labels[METADATA] = json.dumps({"name": config.metadata.name,
                                   "attempt": config.metadata.attempt})
    log_dir = pod.log_directory or pod_labels.get(LOG_DIRECTORY, "")
    if config.log_path and log_dir:
        labels[LOG_PATH] = f"{log_dir.rstrip('/')}/{config.log_path}"
    options = config.linux.security_context.namespace_options
    joined = f"container:{sandbox['Id']}"
    host: dict[str, Any] = {
        "NetworkMode": "host" if pod_labels.get(NETWORK) == "host" else joined,
        "IpcMode": "host" if pod_host.get("IpcMode") == "host" else joined,
        "RestartPolicy": {"Name": "no"},
    }
    if options.pid == cri.NODE:
        host["PidMode"] = "host"
    elif options.pid == cri.POD:
        host["PidMode"] = joined
    elif options.pid == cri.TARGET and options.target_id:
        host["PidMode"] = f"container:{options.target_id}"
    if pod_labels.get(NETWORK) == "host":
        host["UTSMode"] = "host"
    if pod.linux.cgroup_parent:
        host["CgroupParent"] = pod.linux.cgroup_parent
    binds = []
    for mount in config.mounts:
        mode = ["ro" if mount.readonly else "rw"]
        if mount.propagation == cri.PROPAGATION_HOST_TO_CONTAINER:
            mode.append("rslave")
        elif mount.propagation == cri.PROPAGATION_BIDIRECTIONAL:
            mode.append("rshared")
        binds.append(f"{mount.host_path}:{mount.container_path}:{','.join(mode)}")
    if pod_labels.get(RESOLV_CONF):
        binds.append(f"{pod_labels[RESOLV_CONF]}:/etc/resolv.conf")
    if binds:
        host["Binds"] = binds
    devices = [{"PathOnHost": d.host_path, "PathInContainer": d.container_path,
                "CgroupPermissions": d.permissions or "rwm"} for d in config.devices]
    if devices:
        host["Devices"] = devices
    _security(config.linux.security_context, host)
    _resources(config.linux.resources, host)
    if config.linux.resources.oom_score_adj:
        host["OomScoreAdj"] = max(config.linux.resources.oom_score_adj, oom_floor)
    body: dict[str, Any] = {"Image": image, "Labels": labels, "HostConfig": host,
                            "Tty": config.tty, "OpenStdin": config.stdin,
                            "StdinOnce": config.stdin_once,
                            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False}
    if config.command:
        body["Entrypoint"] = list(config.command)
        body["Cmd"] = list(config.args)
    elif config.args:
        body["Cmd"] = list(config.args)
    if config.envs:
        body["Env"] = [f"{kv.key}={kv.value}" for kv in config.envs]
    if config.working_dir:
        body["WorkingDir"] = config.working_dir
    ctx = config.linux.security_context
    user = ""
    if ctx.run_as_username:
        user = ctx.run_as_username
    elif ctx.HasField("run_as_user"):
        user = str(ctx.run_as_user.value)
    if user and ctx.HasField("run_as_group"):
        user += f":{ctx.run_as_group.value}"
    if user:
        body["User"] = user
    return body


def _security(ctx: cri.LinuxContainerSecurityContext, host: dict[str, Any]) -> None:
    if ctx.privileged:
        host["Privileged"] = True
    if ctx.readonly_rootfs:
        host["ReadonlyRootfs"] = True
    if ctx.capabilities.add_capabilities:
        host["CapAdd"] = list(ctx.capabilities.add_capabilities)
    if ctx.capabilities.drop_capabilities:
        host["CapDrop"] = list(ctx.capabilities.drop_capabilities)
    if ctx.supplemental_groups:
        host["GroupAdd"] = [str(g) for g in ctx.supplemental_groups]
    opts = []
    if ctx.no_new_privs:
        opts.append("no-new-privileges")
    if not ctx.privileged:
        opts += _seccomp(ctx)
    # The container actor has no AppArmor profile of its own: a named one is refused.
    if ctx.apparmor.profile_type == cri.SecurityProfile.Localhost:
        raise invalid(f"apparmor profile {ctx.apparmor.localhost_ref!r}: Localhost profiles "
                      "are not supported yet")
    if opts:
        host["SecurityOpt"] = opts
    if ctx.masked_paths:
        host["MaskedPaths"] = list(ctx.masked_paths)
    if ctx.readonly_paths:
        host["ReadonlyPaths"] = list(ctx.readonly_paths)


def _seccomp(ctx: cri.LinuxContainerSecurityContext | cri.LinuxSandboxSecurityContext,
             ) -> list[str]:
    """The seccomp option as containerd's CRI reads the request: the `seccomp` profile,
    else the deprecated `seccomp_profile_path`; neither is unconfined. RuntimeDefault is
    the container actor's default profile; a Localhost profile's file (Docker format) is
    read here and handed on as the docker CLI hands on `seccomp=<file>`."""
    if ctx.HasField("seccomp"):
        kind, path = ctx.seccomp.profile_type, ctx.seccomp.localhost_ref
    else:
        legacy = ctx.seccomp_profile_path
        if legacy in ("runtime/default", "docker/default"):
            kind, path = cri.SecurityProfile.RuntimeDefault, ""
        elif legacy.startswith("localhost/"):
            kind, path = cri.SecurityProfile.Localhost, legacy.removeprefix("localhost")
        elif legacy in ("", "unconfined"):
            kind, path = cri.SecurityProfile.Unconfined, ""
        else:
            raise invalid(f"seccomp profile {legacy!r}: unknown seccomp profile path")
    if kind == cri.SecurityProfile.RuntimeDefault:
        return []
    if kind == cri.SecurityProfile.Unconfined:
        return ["seccomp=unconfined"]
    try:
        with open(path, encoding="utf-8") as f:
            return [f"seccomp={f.read()}"]
    except (OSError, UnicodeDecodeError) as e:
        raise invalid(f"seccomp profile {path!r}: cannot be read: {e}") from None


def _resources(res: cri.LinuxContainerResources, host: dict[str, Any]) -> None:
    host.update(update_body(res))


# CRI's resource fields and Docker's names for them (OOM score adjustment aside: it is
# the process's, set at create only).
_RESOURCES = (("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
              ("cpu_shares", "CpuShares"), ("memory_limit_in_bytes", "Memory"),
              ("memory_swap_limit_in_bytes", "MemorySwap"), ("cpuset_cpus", "CpusetCpus"),
              ("cpuset_mems", "CpusetMems"))


def update_body(res: cri.LinuxContainerResources) -> dict[str, Any]:
    """A container's resources in Docker's update fields (unset ones left out). A memory
    limit without a swap limit allows no swap, as containerd's CRI sets it (Docker's
    default would allow as much swap again)."""
    out = {name: getattr(res, field) for field, name in _RESOURCES if getattr(res, field)}
    if "Memory" in out:
        out.setdefault("MemorySwap", out["Memory"])
    return out


def container_resources(host: Mapping[str, Any]) -> cri.ContainerResources:
    """A container's resources as ContainerStatus tells them (its HostConfig's)."""
    linux = cri.LinuxContainerResources(oom_score_adj=int(host.get("OomScoreAdj") or 0))
    for field, name in _RESOURCES:
        if host.get(name):
            setattr(linux, field, host[name])
    return cri.ContainerResources(linux=linux)


def container_metadata(labels: Mapping[str, str]) -> cri.ContainerMetadata:
    meta = _json(labels.get(METADATA))
    return cri.ContainerMetadata(name=str(meta.get("name", "")),
                                 attempt=int(meta.get("attempt", 0)))


def container_of(summary: Mapping[str, Any]) -> cri.Container:
    """A container as ListContainers shows it (from a container list item, its Created in
    nanoseconds)."""
    labels = summary.get("Labels") or {}
    image = labels.get(IMAGE) or str(summary.get("Image", ""))
    return cri.Container(
        id=summary["Id"], pod_sandbox_id=labels.get(SANDBOX, ""),
        metadata=container_metadata(labels),
        image=cri.ImageSpec(image=image), image_ref=str(summary.get("ImageID", "")),
        state=CONTAINER_STATE.get(str(summary.get("State", "")), cri.CONTAINER_UNKNOWN),
        created_at=int(summary.get("Created", 0)),
        labels=cri_labels(labels), annotations=cri_annotations(labels))


def container_status(doc: Mapping[str, Any]) -> cri.ContainerStatus:
    """A container's inspect document as ContainerStatus."""
    config = doc.get("Config") or {}
    labels = config.get("Labels") or {}
    state = doc.get("State") or {}
    status = str(state.get("Status", ""))
    cstate = CONTAINER_STATE.get(status, cri.CONTAINER_UNKNOWN)
    exit_code = int(state.get("ExitCode") or 0)
    reason = ""
    if cstate in (cri.CONTAINER_CREATED, cri.CONTAINER_EXITED) and state.get("Error") \
            and not nanos(state.get("StartedAt")):
        # Its process never ran (created again, to Docker): containerd's CRI counts it
        # exited, with its own reason and code.
        cstate, reason, exit_code = cri.CONTAINER_EXITED, "StartError", START_ERROR_EXIT_CODE
    elif cstate == cri.CONTAINER_EXITED:
        reason = "OOMKilled" if state.get("OOMKilled") else \
            "Completed" if exit_code == 0 else "Error"
    mounts = [cri.Mount(container_path=m.get("Destination", ""), host_path=m.get("Source", ""),
                        readonly=not m.get("RW", True),
                        propagation=_propagation(str(m.get("Propagation", ""))))
              for m in doc.get("Mounts") or [] if m.get("Type") == "bind"]
    return cri.ContainerStatus(
        id=doc["Id"], metadata=container_metadata(labels), state=cstate,
        created_at=nanos(doc.get("Created")),
        started_at=nanos(state.get("StartedAt")) if status != "created" else 0,
        finished_at=nanos(state.get("FinishedAt")) if cstate == cri.CONTAINER_EXITED else 0,
        exit_code=exit_code, reason=reason, message=str(state.get("Error") or ""),
        image=cri.ImageSpec(image=labels.get(IMAGE) or str(config.get("Image", ""))),
        image_ref=str(doc.get("Image", "")), labels=cri_labels(labels),
        annotations=cri_annotations(labels), mounts=mounts, log_path=labels.get(LOG_PATH, ""),
        resources=container_resources(doc.get("HostConfig") or {}))


def _propagation(text: str) -> cri.MountPropagation.ValueType:
    if text in ("rslave", "slave"):
        return cri.PROPAGATION_HOST_TO_CONTAINER
    if text in ("rshared", "shared"):
        return cri.PROPAGATION_BIDIRECTIONAL
    return cri.PROPAGATION_PRIVATE


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- filters -------------------------------------------------------------------


def list_filters(kind: str, id: str = "", sandbox: str = "",
                 labels: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Docker list filters that narrow to one kind of CRI object (ids by prefix, as
    Docker's `id` filter, which CRI's filters allow)."""
    filters: dict[str, list[str]] = {"label": [f"{KIND}={kind}"]}
    if id:
        filters["id"] = [id]
    if sandbox:
        filters["label"].append(f"{SANDBOX}={sandbox}")
    for key, value in (labels or {}).items():
        filters["label"].append(f"{LABEL}{key}={value}")
    return filters

