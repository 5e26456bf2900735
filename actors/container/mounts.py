"""A container's volumes through their life: acquired at create (the image's files
copied into a new one), mounted before each start, unmounted after each exit,
released at removal. The volume actor owns the volumes and their references; this
module only asks it (`env.calls.volume`), from the container's worker thread.

What is planned, and how, is pure logic in `pouch.actors.container.spec.mounts`; a
container's planned mounts are kept in its record (`record.mounts`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pouch.actors.container import copyup, fsview
from pouch.actors.container.joins import missing_is_invalid
from pouch.actors.container.spec.mounts import (
    Planned,
    from_records,
    inspect_mounts,
    parse_volumes_from,
    records,
)
from pouch.actors.container.spec.mounts import plan as plan_mounts
from pouch.proto.envelope import PouchError, invalid
from pouch.proto.stubs import Calls

__all__ = ["Planned", "VolumeEnv", "from_records", "inspect_mounts", "mount_all", "place",
           "plan", "records", "release", "undo", "unmount_all"]

log = logging.getLogger("pouch.container")


@dataclass
class VolumeEnv:
    """One container's way to the volume actor. `acquired`: a create asked for a volume
    (so a failed create has references to give back); `made`: the named volumes it
    made (a failed create leaves none behind, as dockerd checks all before it makes any)."""

    calls: Calls
    cid: str
    views: Path  # where the image's files are mounted to be copied (fsview.View)
    acquired: bool = False
    made: list[str] = dataclasses.field(default_factory=list)


def plan(env: VolumeEnv, body: dict[str, Any], image_config: dict[str, Any]) -> list[Planned]:
    """The mounts a create body asks for, `--volumes-from` containers looked up (through
    the container actor). Errors: invalid (a missing container too), the container
    actor's."""
    host_config = body.get("HostConfig") or {}
    volumes_from = host_config.get("VolumesFrom") or []
    if not isinstance(volumes_from, list):
        raise invalid("invalid HostConfig.VolumesFrom: must be a list of strings")
    sources = []
    for spec in volumes_from:
        ref, mode = parse_volumes_from(spec)
        with missing_is_invalid():
            other = env.calls.container.inspect(id=ref)
        sources.append((mode, [_planned_of(point) for point in other.get("Mounts") or []]))
    return plan_mounts(body, host_config, image_config.get("Volumes"), sources)


def _planned_of(point: dict[str, Any]) -> Planned:
    """Another container's mount, from what its inspect shows."""
    kind, rw = point.get("Type", ""), bool(point.get("RW", True))
    return Planned(type=kind, destination=point["Destination"], source=point.get("Source", ""),
                   name=point.get("Name", ""), driver=point.get("Driver", ""), rw=rw,
                   mode=point.get("Mode", ""), propagation=point.get("Propagation", ""),
                   tmpfs_options="" if rw or kind != "tmpfs" else "ro")


def place(env: VolumeEnv, planned: list[Planned],
          rootfs: list[dict[str, Any]]) -> list[Planned]:
    """Acquire every volume (made if missing); each new one gets the image's files at its
    place unless nocopy. The mounts with their host paths. On an error, the caller
    releases (env.acquired says whether to)."""
    placed, fresh = [], []
    for mount in planned:
        if mount.type == "volume":
            env.acquired = True
            # The destination makes a retry of an anonymous volume's acquire find the same.
            use = env.calls.volume.acquire(container=env.cid, name=mount.name,
                                           labels=mount.labels, driver_opts=mount.driver_opts,
                                           destination=mount.destination)
            if use["Created"] and mount.name:
                env.made.append(mount.name)
            mount = dataclasses.replace(mount, name=use["Name"], source=use["Mountpoint"])
            if use["Created"] and not mount.nocopy:
                fresh.append(mount)
        placed.append(mount)
    if fresh:
        _copy_image_files(env, fresh, rootfs)
    return placed


def _copy_image_files(env: VolumeEnv, fresh: list[Planned],
                      rootfs: list[dict[str, Any]]) -> None:
    with fsview.View(rootfs, env.views, readonly=True) as view, \
            fsview.opened_root(view.path) as root:
        for mount in fresh:
            # A volume with options is mounted only while used: it is, while its files come.
            # Quietly: dockerd tells the mounts of a container's runs, not this one.
            path = env.calls.volume.mount(name=mount.name, container=env.cid, quiet=True)
            try:
                copyup.copy_up(root, mount.destination, path)
            except OSError as exc:
                raise PouchError("internal", f"copying the image's files at "
                                             f"{mount.destination} into volume {mount.name}: "
                                             f"{exc}") from None
            finally:
                env.calls.volume.unmount(name=mount.name, container=env.cid, quiet=True)


def mount_all(env: VolumeEnv, mounts: Iterable[Planned]) -> dict[str, str]:
    """Before the task is made: every volume mounted, a -v bind's missing host folder
    made (0755, as dockerd). The destinations whose volume now lies elsewhere than the
    spec says, with the path it has."""
    moved = {}
    for mount in mounts:
        if mount.type == "volume":
            path = env.calls.volume.mount(name=mount.name, container=env.cid,
                                          destination=mount.destination, read_write=mount.rw,
                                          propagation=mount.propagation)
            if path != mount.source:
                moved[mount.destination] = path
        elif mount.type == "bind" and mount.make_source and not os.path.lexists(mount.source):
            try:
                os.makedirs(mount.source, 0o755, exist_ok=True)
            except OSError as exc:
                raise PouchError("invalid", f"error while creating mount source path "
                                            f"'{mount.source}': {exc.strerror}") from None
    return moved


def unmount_all(env: VolumeEnv, mounts: Iterable[Planned]) -> None:
    """After the task exited: each volume's use ends (logged, never raised: the exit is
    recorded whatever the volume actor says)."""
    for mount in mounts:
        if mount.type == "volume":
            try:
                env.calls.volume.unmount(name=mount.name, container=env.cid)
            except PouchError as exc:
                log.warning("unmounting volume %s of %s: %s", mount.name, env.cid, exc.message)


def undo(env: VolumeEnv) -> None:
    """A create failed: its references go, and the volumes it made (unless some other
    container took one up meanwhile)."""
    release(env, remove_anonymous=True)
    for name in env.made:
        try:
            env.calls.volume.remove(name=name)
        except PouchError as exc:
            log.info("keeping volume %s after a failed create: %s", name, exc.message)


def release(env: VolumeEnv, remove_anonymous: bool) -> None:
    """The container is gone: its references go (and, if asked, the anonymous volumes
    it made that nobody else uses). Logged, never raised: a removal is not undone."""
    try:
        removed = env.calls.volume.release(container=env.cid, remove_anonymous=remove_anonymous)
    except PouchError as exc:
        log.error("releasing the volumes of %s: %s", env.cid, exc.message)
        return
    if removed:
        log.info("removed the anonymous volumes of %s: %s", env.cid, ", ".join(removed))
