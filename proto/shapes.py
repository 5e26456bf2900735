"""The shapes of what services answer: the result types their declarations name.

Actors build these and callers (the gateway, the CRI actor, ZeroMQ clients)
read them; both sides import them from here, so neither crosses into the
other's layer. Where a shape is Docker's, its fields keep Docker's names. A
shape that mirrors a large Docker document (inspect's Config, HostConfig)
types its outer fields and leaves the Docker-defined inner ones as maps.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

# -- events ------------------------------------------------------------------


class EventActor(TypedDict):
    ID: str
    Attributes: dict[str, str]


# Docker's deprecated `status`, `id` and `from` come first, and only in the events of
# the types that still carry them; `from` is a Python keyword, hence the call syntax.
Event = TypedDict("Event", {
    "status": NotRequired[str],
    "id": NotRequired[str],
    "from": NotRequired[str],
    "Type": str,
    "Action": str,
    "scope": str,
    "Actor": EventActor,
    "time": int,
    "timeNano": int,
})


# -- containers --------------------------------------------------------------


class ContainerCreated(TypedDict):
    Id: str
    Warnings: list[str]


class HealthcheckResult(TypedDict):
    Start: str
    End: str
    ExitCode: int
    Output: str


class Health(TypedDict):
    """State.Health, only for a container whose Config.Healthcheck runs a probe."""

    Status: str  # starting | healthy | unhealthy
    FailingStreak: int
    Log: list[HealthcheckResult]  # the last 5, oldest first


class ContainerState(TypedDict):
    Status: str
    Health: NotRequired[Health]
    Running: bool
    Paused: bool
    Restarting: bool
    OOMKilled: bool
    Dead: bool
    Pid: int
    ExitCode: int
    Error: str
    StartedAt: str
    FinishedAt: str


class ContainerInspect(TypedDict):
    Id: str
    Created: str
    Path: str
    Args: list[str]
    State: ContainerState
    Image: str
    ResolvConfPath: str
    HostnamePath: str
    HostsPath: str
    LogPath: str
    Name: str
    RestartCount: int
    Driver: str
    Platform: str
    MountLabel: str
    ProcessLabel: str
    AppArmorProfile: str
    ExecIDs: list[str] | None
    HostConfig: dict[str, Any]
    GraphDriver: dict[str, Any]
    Mounts: list[dict[str, Any]]
    Config: dict[str, Any]
    NetworkSettings: dict[str, Any]


class ContainerSummary(TypedDict):
    Id: str
    Names: list[str]
    Image: str
    ImageID: str
    Command: str
    Created: int
    Ports: list[dict[str, Any]]
    Labels: dict[str, str]
    State: str
    Status: str
    HostConfig: dict[str, str]
    NetworkSettings: dict[str, Any]
    Mounts: list[dict[str, Any]]


# The OCI runtime spec containerd holds for a container (its config.json).
RuntimeSpec = dict[str, Any]


class ContainerCounts(TypedDict):
    total: int
    running: int
    paused: int
    stopped: int


class ContainerUpdated(TypedDict):
    """POST /containers/{id}/update's answer."""

    Warnings: list[str]


class ContainersPruned(TypedDict):
    ContainersDeleted: list[str] | None  # their IDs; null when none was (as dockerd)
    SpaceReclaimed: int


class ContainerTop(TypedDict):
    """GET /containers/{id}/top: ps's titles and the container's rows."""

    Titles: list[str]
    Processes: list[list[str]]


class ContainerChange(TypedDict):
    """One entry of GET /containers/{id}/changes."""

    Path: str
    Kind: int  # 0 modified, 1 added, 2 deleted


class PathStat(TypedDict):
    """A path in a container, as X-Docker-Container-Path-Stat carries it (base64 JSON)."""

    name: str
    size: int
    mode: int  # Go's os.FileMode: permission bits and Go's type bits
    mtime: str
    linkTarget: str  # where a symlink leads, inside the container; "" otherwise


# -- exec ---------------------------------------------------------------------


class ExecCreated(TypedDict):
    Id: str


class ExecProcessConfig(TypedDict):
    tty: bool
    entrypoint: str
    arguments: list[str]
    privileged: bool
    user: str


class ExecInspect(TypedDict):
    """GET /exec/{id}/json: ExitCode is null until the process has exited; DetachKeys
    the bytes given at create, base64 (as dockerd's Go JSON writes bytes)."""

    ID: str
    Running: bool
    ExitCode: int | None
    ProcessConfig: ExecProcessConfig
    OpenStdin: bool
    OpenStderr: bool
    OpenStdout: bool
    CanRemove: bool
    ContainerID: str
    DetachKeys: str
    Pid: int


# -- images ------------------------------------------------------------------


class ProgressDetail(TypedDict, total=False):
    current: int
    total: int


class PullProgress(TypedDict, total=False):
    """One of Docker's JSON progress messages (pull, push): a status line, or a layer's
    (`id`: its digest's first 12 hex digits) with how far it got."""

    status: str
    id: str
    progressDetail: ProgressDetail


class ImageDeleted(TypedDict, total=False):
    """One line of DELETE /images/{name}'s answer: a name dropped, or an image deleted."""

    Untagged: str
    Deleted: str


class ImageHistoryItem(TypedDict):
    Id: str             # the image, then its parents as far as known; "<missing>" below
    Created: int
    CreatedBy: str
    Tags: list[str] | None
    Size: int
    Comment: str


class ImagesPruned(TypedDict):
    ImagesDeleted: list[ImageDeleted] | None
    SpaceReclaimed: int


class AuthStatus(TypedDict):
    """POST /auth's answer."""

    Status: str
    IdentityToken: str


class ImagesLoaded(TypedDict):
    names: list[str]       # the tags loaded, as the user would type them
    untagged: list[str]    # IDs of images loaded without a tag


class ImageSummary(TypedDict):
    Id: str
    ParentId: str
    RepoTags: list[str]
    RepoDigests: list[str]
    Created: int
    Size: int
    VirtualSize: int
    SharedSize: int
    Labels: dict[str, str]
    Containers: int


class ImagesUsage(TypedDict):
    """The image actor's part of GET /system/df."""

    LayersSize: int
    Images: list[ImageSummary]


class ImageInspect(TypedDict):
    Id: str
    RepoTags: list[str]
    RepoDigests: list[str]
    Parent: str
    Comment: str
    Created: str
    Container: str
    ContainerConfig: dict[str, Any]
    DockerVersion: str
    Author: str
    Config: dict[str, Any]
    Architecture: str
    Os: str
    Size: int
    VirtualSize: int
    GraphDriver: dict[str, Any]
    RootFS: dict[str, Any]
    Metadata: dict[str, Any]


class ResolvedImage(TypedDict):
    """What a container needs of its image."""

    id: str
    name: str            # the full reference it was found by, or its ID
    config: dict[str, Any]
    chain_id: str        # the snapshot its rootfs is prepared from
    snapshotter: str


class ContainerLayer(TypedDict):
    """A container's changes stored as a layer blob (under its caller's lease), with
    what an image made of them needs of the container."""

    digest: str          # the blob: an uncompressed tar, so also the layer's diff ID
    size: int
    media_type: str
    parent: str          # the chain ID of the image's top layer it was taken against
    image: str           # the container's image ID
    config: dict[str, Any]  # the container's Config


class CommitResult(TypedDict):
    """docker commit's answer."""

    Id: str


class BuildCachePruned(TypedDict):
    """docker builder prune's answer."""

    CachesDeleted: list[str] | None
    SpaceReclaimed: int


# -- volumes -----------------------------------------------------------------


class Volume(TypedDict):
    """A volume as dockerd shows it (Status and UsageData left out, as dockerd's local
    driver leaves them out of inspect and list)."""

    Name: str
    Driver: str
    Mountpoint: str
    CreatedAt: str                     # RFC 3339, in the daemon's time zone
    Labels: dict[str, str] | None
    Scope: str                         # "local"
    Options: dict[str, str] | None     # the driver's options, as given at create
    Status: NotRequired[dict[str, Any] | None]
    UsageData: NotRequired[dict[str, int] | None]


class DiskUsage(TypedDict):
    """GET /system/df (docker system df): what images, containers and volumes take."""

    LayersSize: int
    Images: list[ImageSummary]
    Containers: list[ContainerSummary]
    Volumes: list[Volume]
    BuildCache: list[dict[str, Any]]
    BuilderSize: int  # BuildKit's cache (API 1.41 still shows it): the classic builder has none


class VolumeList(TypedDict):
    Volumes: list[Volume]
    Warnings: list[str] | None


class VolumesPruned(TypedDict):
    VolumesDeleted: list[str] | None
    SpaceReclaimed: int


class VolumeUse(TypedDict):
    """A container's reference to a volume, as acquire answers it."""

    Name: str
    Mountpoint: str  # <home>/volumes/<name>/_data: what mount() will answer, too
    Created: bool    # this call made the volume (the container copies the image's files)


# -- system ------------------------------------------------------------------


class VersionComponent(TypedDict):
    Name: str
    Version: str
    Details: dict[str, str]


class VersionInfo(TypedDict):
    Platform: dict[str, str]
    Components: list[VersionComponent]
    Version: str
    ApiVersion: str
    MinAPIVersion: str
    GitCommit: str
    GoVersion: str
    Os: str
    Arch: str
    KernelVersion: str
    BuildTime: str


# /info has some sixty fields of Docker's; typed at the top, they are Docker's to define.
SystemInfo = dict[str, Any]


class ChildStatus(TypedDict):
    pid: int | None
    state: str  # starting, running, backoff, cooling-down, down, stopped
    restarts: int
    last_exit: str
    retry_at: str  # RFC 3339, while it cools down; else ""


class SupervisorStatus(TypedDict):
    children: dict[str, ChildStatus]
    degraded: list[str]


# -- networks ----------------------------------------------------------------


class NetworkCreated(TypedDict):
    Id: str
    Warning: str


class NetworksPruned(TypedDict):
    NetworksDeleted: list[str]


# GET /networks/{id} as dockerd 20.10 shows it (Name, Id, Created, Scope, Driver, IPAM,
# Internal, Containers, Options, Labels, ...): Docker's document, Docker's to define.
NetworkInspect = dict[str, Any]


# NetworkSettings.Ports: {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}] or null}
PortMap = dict[str, list[dict[str, str]] | None]


class EndpointSettings(TypedDict):
    """A container's endpoint on one network, as the container actor needs it."""

    NetworkID: str
    NetworkName: str
    EndpointID: str
    IPAddress: str
    IPPrefixLen: int
    Gateway: str
    MacAddress: str
    Aliases: list[str]
    Bridge: str       # the Linux bridge the veth joins ("" for host and none)
    Mtu: int
    SandboxKey: str   # the container's netns path ("" for host and none)


# -- the broker --------------------------------------------------------------


class WorkerStatus(TypedDict):
    pid: int
    inflight: int


class ServiceStatus(TypedDict):
    workers: list[WorkerStatus]
    queued: int
    down: str | None


# One service's contract as the broker hands it out: {method: declaration's wire form}.
Contract = dict[str, dict[str, Any]]
# One actor process's figures (see pouch.actors.metrics).
MetricFamilies = list[dict[str, Any]]
