"""What containerd and its shims hold for pouch that no container owns, found and ended.

The meta store is the owner of record: a container's folder is made before a create
asks containerd for anything, and removed after a removal is done with it. So a
containerd container, task, snapshot or shim of an ID with no folder is a leftover
(of a create or removal cut by the actor's death) and is ended here, through
containerd's API first; a shim with no task, which the API cannot reach, by its process
(a shim that a group of containers shares serves the tasks of them all: shims.GROUP_LABEL).
What belongs to a container that exists is its worker's to judge (`ContainerWorker.sweep`):
only it knows whether a start of its own is under way.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Collection, Iterable

from pouch.actors.container.meta import MetaStore
from pouch.actors.containerd import shims
from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.containers import ContainerRecord
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.container")


class Sweeper:
    def __init__(self, ctrd: Containerd, meta: MetaStore, owner_label: str) -> None:
        self._ctrd = ctrd
        self._meta = meta
        self._label = owner_label

    def sweep(self, known: set[str] | None = None) -> set[str]:
        """End what no container owns; the owned IDs that have a task or a shim, for
        their workers to check. `known`: the owners (default: the meta store's folders,
        read after containerd's lists, so that a create under way is among them).
        Errors: what containerd answers."""
        address, namespace = self._ctrd.address, self._ctrd.namespace
        found = shims.find(address, namespace)
        tasks = self._ctrd.tasks.list()
        everything = self._ctrd.containers.list()
        listed = [c for c in everything if self._label in c.labels]
        containers = [c.id for c in listed]
        # Another client's container in our namespace (ctr's, say): not ours to end,
        # nor its task or shim.
        foreign = {c.id for c in everything} - set(containers)
        snapshots = [s.name for s in self._ctrd.snapshots.list() if self._label in s.labels]
        known = self._meta.ids() if known is None else known
        grouped = _groups_with_tasks([c for c in listed if c.id in known], tasks)
        for cid in containers:
            if cid not in known:
                log.warning("containerd holds container %s that pouch does not know: "
                            "removing it", cid)
                self._end_task(cid)
                with contextlib.suppress(PouchError):
                    self._ctrd.containers.delete(cid)
        for cid in set(tasks) - known - set(containers) - foreign:
            log.warning("containerd runs task %s that no container owns: ending it", cid)
            self._end_task(cid)
        for name in snapshots:
            if name not in known:
                log.warning("removing snapshot %s that no container owns", name)
                try:
                    self._ctrd.snapshots.remove(name)
                except PouchError as exc:
                    log.warning("could not remove snapshot %s: %s", name, exc.message)
        for shim in found:
            if shim.id not in known and shim.id not in grouped and shim.id not in foreign \
                    and shims.end(shim, address, namespace):
                log.warning("ended shim %d of %s: no container owns it", shim.pid, shim.id)
        return known & (set(tasks) | {shim.id for shim in found})

    def end_taskless_shims(self) -> None:
        """Every shim that serves no task: at a clean stop, when no start is under way."""
        address, namespace = self._ctrd.address, self._ctrd.namespace
        tasks = self._ctrd.tasks.list()
        serving = tasks.keys() | _groups_with_tasks(
            self._ctrd.containers.list([f'labels."{shims.GROUP_LABEL}"']), tasks)
        for shim in shims.find(address, namespace):
            if shim.id not in serving and shims.end(shim, address, namespace):
                log.warning("ended shim %d of %s: it served no task", shim.pid, shim.id)

    def _end_task(self, cid: str) -> None:
        steps: tuple[Callable[[], object], ...] = (
            lambda: self._ctrd.tasks.kill(cid, signal.SIGKILL, all=True),
            lambda: self._ctrd.tasks.delete(cid))
        for step in steps:
            with contextlib.suppress(PouchError):
                step()


def group_serves(ctrd: Containerd, group: str) -> bool:
    """Whether the shim that `group` names (a container's ID) serves a task of another
    container of its group: then it is no leftover, though its first container's task
    is gone. Errors: what containerd answers."""
    members = ctrd.containers.list([f'labels."{shims.GROUP_LABEL}"=={group}'])
    return bool(members) and bool(_groups_with_tasks(members, ctrd.tasks.list()))


def _groups_with_tasks(containers: Iterable[ContainerRecord], tasks: Collection[str]
                       ) -> set[str]:
    """The shim groups (see shims.GROUP_LABEL) that some task of `containers` is in."""
    return {c.labels[shims.GROUP_LABEL] for c in containers
            if c.id in tasks and c.labels.get(shims.GROUP_LABEL)}
