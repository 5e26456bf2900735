"""Mounting a volume with options at its _data.

The mounts are made in pouchd's own mount namespace (the host's), where runc finds
them when it binds a volume into a container. What is mounted, and unmounting, are
`pouch.actors.mountpoints`'.
"""

from __future__ import annotations

from pathlib import Path

from pouch.actors import mountpoints
from pouch.actors.mountpoints import MS_BIND, MS_RDONLY, MS_REMOUNT
from pouch.actors.volume.rules import MountPlan


def mount(plan: MountPlan, target: Path) -> None:
    """Mount as planned at `target`; nothing stays mounted if a step fails. OSError."""
    mountpoints.mount(plan.device, target, plan.fstype, plan.flags, plan.data)
    try:
        if plan.remount_readonly:  # a bind ignores MS_RDONLY until it is remounted
            mountpoints.mount("", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | plan.flags)
        if plan.propagation:
            mountpoints.mount("", target, None, plan.propagation)
    except OSError:
        mountpoints.unmount(target)
        raise
