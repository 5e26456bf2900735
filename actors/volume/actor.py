"""The volume actor: Docker's /volumes API (create, list, inspect, remove, prune) over
dockerd's local driver, and what containers ask of it: a reference to a volume
(acquire, release) and its files in place while they run (mount, unmount).

Everything here is quick (a mkdir, a rename, a small fsync'd file, a mount(2)), so it
runs on the actor's thread, which owns the volumes' state; what may take long (a
plugin's hook, sizing and deleting a volume's files) runs on a thread of its own.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

from pouch.actors import mountpoints, plugins
from pouch.actors.host import ActorBase, ActorContext, Reply
from pouch.actors.volume import mounts
from pouch.actors.volume.rules import (
    DRIVER,
    Facts,
    check_driver,
    check_name,
    check_options,
    list_filters,
    listed,
    mount_plan,
    prune_filters,
    pruned,
    stale,
)
from pouch.actors.volume.store import DATA, Record, Store, remove_tree, tree_size
from pouch.proto.contract import method
from pouch.proto.docker import Filters
from pouch.proto.envelope import PouchError, conflict, not_found
from pouch.proto.shapes import Volume, VolumeList, VolumesPruned, VolumeUse

log = logging.getLogger("pouch.volume")
CONTAINERS_TIMEOUT = 5.0  # s: how long remove and prune wait for the container actor


def created_at(seconds: float) -> str:
    """Go's time.RFC3339 in the daemon's time zone, as dockerd's CreatedAt."""
    text = datetime.fromtimestamp(int(seconds)).astimezone().isoformat(timespec="seconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


class VolumeActor(ActorBase):
    service = "volume"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._store = Store(ctx.config.home_dir / "volumes")
        self._volumes: dict[str, Record] = {}

    def on_start(self) -> None:
        self._volumes, trash = self._store.load()
        points = set(mountpoints.mount_points())
        for record in self._volumes.values():
            # Mounted for nobody: its last user's unmount was cut short.
            path = self._store.data(record.name)
            if record.options and not record.active and path in points:
                log.info("volume %s: unmounting, nobody uses it", record.name)
                self._unmount(record)
        for folder in trash:
            self._delete_later(folder)
        log.info("%d volume(s)", len(self._volumes))

    # -- the /volumes API ----------------------------------------------------------

    @method(idempotent=True, returns=Volume, errors=("invalid", "not_found"))
    def create(self, reply: Reply, name: str = "", driver: str = DRIVER,
               driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> None:
        """Make a volume (a random 64-hex name if `name` is ""), or answer the one of
        that name that exists already, as dockerd. Only the local driver exists; its
        options are `type`, `device` and `o`, as mount(8)'s (tmpfs with size=..., a
        host folder with type=none o=bind)."""
        if not plugins.loaded().has("pre_volume_create"):
            reply.send(self._describe(self._make(name, driver, driver_opts, labels)[0]))
            return
        body = {"Name": name, "Driver": driver, "DriverOpts": driver_opts, "Labels": labels}
        reply.run_in_thread(self._create_hooked, body)

    def _create_hooked(self, body: dict[str, object]) -> Volume:
        body = plugins.loaded().pre_volume_create(plugins.VolumeCreate(body))
        name, driver = body.get("Name") or "", body.get("Driver") or DRIVER
        opts, labels = body.get("DriverOpts"), body.get("Labels")
        if not (isinstance(name, str) and isinstance(driver, str)
                and isinstance(opts, dict | None) and isinstance(labels, dict | None)):
            raise PouchError("internal", "pre_volume_create left a body of the wrong shape")
        return self.actor_ref.proxy().describe_made(name, driver, opts, labels).get()

    def describe_made(self, name: str, driver: str, driver_opts: dict[str, str] | None,
                      labels: dict[str, str] | None) -> Volume:
        """create's work once a plugin had the body (on the actor's thread)."""
        return self._describe(self._make(name, driver, driver_opts, labels)[0])

    @method(idempotent=True, errors=("invalid",))
    def list(self, filters: Filters | None = None) -> VolumeList:
        """Every volume, as GET /volumes shows them; filters `name` (a pattern), `label`
        (key or key=value), `dangling` (true/false: used by no container) and `driver`."""
        filters = list_filters(filters)
        return {"Volumes": [self._describe(record) for name, record
                            in sorted(self._volumes.items())
                            if listed(self._facts(record), filters)],
                "Warnings": None}

    @method(idempotent=True, returns=builtins.list[Volume], timeout=120.0)
    def usage(self, reply: Reply) -> None:
        """Every volume with its UsageData: the bytes of its files and how many containers
        use it, as docker system df shows them."""
        volumes = [(self._describe(record), self._store.data(name), len(record.holders()))
                   for name, record in sorted(self._volumes.items())]
        reply.run_in_thread(lambda: [{**volume, "UsageData": {"Size": tree_size(data),
                                                              "RefCount": users}}
                                     for volume, data, users in volumes])

    @method(idempotent=True, errors=("not_found",))
    def inspect(self, name: str) -> Volume:
        """One volume, as GET /volumes/{name} shows it."""
        return self._describe(self._get(name))

    @method(idempotent=False, returns=None, errors=("not_found", "conflict"))
    def remove(self, reply: Reply, name: str, force: bool = False) -> None:
        """Remove a volume and its files: conflict while a container uses it (naming the
        containers), not_found unless `force`."""
        record = self._volumes.get(name)
        if record is None or not record.in_use:
            self.remove_checked(name, force, None)
            reply.send(None)
            return
        # Its containers may be gone without a word (a crash): their actor says.
        reply.run_in_thread(lambda: self.actor_ref.proxy().remove_checked(
            name, force, self._containers()).get())

    def remove_checked(self, name: str, force: bool, known: set[str] | None) -> None:
        """remove's work (on the actor's thread), once references to containers not in
        `known` (if known) are dropped."""
        record = self._volumes.get(name)
        if record is None:
            if force:
                return
            raise not_found(f"get {name}: no such volume")
        if known is not None:
            self._drop_stale(record, known)
        if record.in_use:
            raise conflict(f"remove {name}: volume is in use - [{', '.join(record.holders())}]")
        self._delete_later(self._destroy(record))

    @method(idempotent=False, returns=VolumesPruned, errors=("invalid",))
    def prune(self, reply: Reply, filters: Filters | None = None) -> None:
        """Remove every volume no container uses (API 1.41: named ones too), narrowed by
        `label` and `label!`; the names removed and the bytes their files took."""
        filters = prune_filters(filters)
        reply.run_in_thread(self._prune, filters)

    def _prune(self, filters: Filters) -> VolumesPruned:
        known = self._containers()
        trashed = self.actor_ref.proxy().prune_chosen(filters, known).get()
        reclaimed = 0
        for _, folder in trashed:
            reclaimed += tree_size(folder / DATA)  # its files, not what we keep of it
            remove_tree(folder)
        self.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": [name for name, _ in trashed] or None,
                "SpaceReclaimed": reclaimed}

    def prune_chosen(self, filters: Filters,
                     known: set[str] | None) -> builtins.list[tuple[str, Path]]:
        """prune's choice and removals (on the actor's thread): the names removed, each
        with the folder its files are in now."""
        trashed: builtins.list[tuple[str, Path]] = []
        for _, record in sorted(self._volumes.items()):
            if known is not None and record.in_use:
                self._drop_stale(record, known)
            if not pruned(self._facts(record), filters):
                continue
            try:
                trashed.append((record.name, self._destroy(record)))
            except PouchError as exc:
                log.warning("prune kept %s: %s", record.name, exc.message)
        return trashed

    # -- what containers ask ---------------------------------------------------------

    @method(idempotent=True, errors=("invalid", "not_found"))
    def acquire(self, container: str, name: str = "", labels: dict[str, str] | None = None,
                driver_opts: dict[str, str] | None = None,
                destination: str = "") -> VolumeUse:
        """Record `container` as a user of the volume `name`, made first if missing
        (`name` "": an anonymous volume, made for that container; the same again for a
        retry that gives the same `destination`). `Created`: this call made it, so the
        container copies its image's files into it."""
        record: Record | None = None
        if not name and destination:
            record = next((r for r in self._volumes.values()
                           if r.anonymous == container and r.destination == destination), None)
        created = False
        if record is None:
            record, created = self._make(name, DRIVER, driver_opts, labels,
                                         anonymous="" if name else container,
                                         destination=destination)
        if container not in record.users:
            record.users[container] = time.time()
            self._store.save(record)
        return {"Name": record.name, "Mountpoint": str(self._store.data(record.name)),
                "Created": created}

    @method(idempotent=True)
    def release(self, container: str, remove_anonymous: bool = False) -> builtins.list[str]:
        """Drop every reference `container` holds (and its mounts); with
        `remove_anonymous`, remove the anonymous volumes made for it that nobody uses
        now (`docker rm -v`). The names removed."""
        for record in builtins.list(self._volumes.values()):
            if container in record.active:
                record.users.pop(container, None)
                self._drop_active(record, container)
            elif container in record.users:
                del record.users[container]
                self._store.save(record)
        removed: builtins.list[str] = []
        if remove_anonymous:
            for record in builtins.list(self._volumes.values()):
                if record.anonymous == container and not record.in_use:
                    try:
                        self._delete_later(self._destroy(record))
                        removed.append(record.name)
                    except PouchError as exc:
                        log.warning("kept %s of %s: %s", record.name, container, exc.message)
        return sorted(removed)

    @method(idempotent=True, errors=("not_found",))
    def mount(self, name: str, container: str, destination: str = "",
              read_write: bool = True, propagation: str = "", quiet: bool = False) -> str:
        """The host folder to bind into `container` for the volume: its _data, with the
        volume's options mounted there while some container has it mounted.
        `destination`, `read_write` and `propagation` only describe the use in the
        mount event, as dockerd's; `quiet`: no event, for a use that is no run of the
        container (the image's files copied in at create, which dockerd does not tell)."""
        record = self._get(name)
        path = self._store.data(name)
        if container not in record.active:
            record.active[container] = time.time()
            self._store.save(record)
            fresh = True
        else:
            fresh = False
        if record.options and path not in mountpoints.mount_points():
            try:
                self._mount(record)
            except PouchError:
                if fresh:
                    record.active.pop(container, None)
                    self._store.save(record)
                raise
        if fresh and not quiet:
            self.publish("volume", "mount", name, {
                "driver": record.driver, "container": container, "destination": destination,
                "read/write": str(read_write).lower(), "propagation": propagation})
        return str(path)

    @method(idempotent=True)
    def unmount(self, name: str, container: str, quiet: bool = False) -> None:
        """`container` no longer has the volume mounted; the volume's own mount goes
        with its last such container. Nothing to do for a volume that is gone.
        `quiet`: no event, for the end of a `quiet` mount."""
        record = self._volumes.get(name)
        if record is not None:
            self._drop_active(record, container, quiet)

    # -- the parts -------------------------------------------------------------------

    def _get(self, name: str) -> Record:
        record = self._volumes.get(name)
        if record is None:
            raise not_found(f"get {name}: no such volume")
        return record

    def _facts(self, record: Record) -> Facts:
        return Facts(record.name, record.driver, record.labels or {}, record.in_use)

    def _describe(self, record: Record) -> Volume:
        return {"Name": record.name, "Driver": record.driver,
                "Mountpoint": str(self._store.data(record.name)),
                "CreatedAt": created_at(record.created), "Labels": record.labels,
                "Scope": "local", "Options": record.options}

    def _make(self, name: str, driver: str, driver_opts: dict[str, str] | None,
              labels: dict[str, str] | None, anonymous: str = "",
              destination: str = "") -> tuple[Record, bool]:
        """The volume `name` (made now if missing: True then). Errors: invalid, not_found."""
        driver = check_driver(driver)
        if name:
            check_name(name)
            existing = self._volumes.get(name)
            if existing is not None:
                return existing, False
        else:
            name = secrets.token_hex(32)
        options = check_options(driver_opts)
        record = Record(name=name, driver=driver,
                        options=options if driver_opts is not None else None,
                        labels=dict(labels) if labels is not None else None,
                        anonymous=anonymous, destination=destination)
        try:
            self._store.create(record, lambda: self.ctx.faults.hit("volume.create.staged"))
        except OSError as exc:
            raise PouchError("internal", f"create {name}: {exc.strerror or exc}") from None
        self._volumes[name] = record
        self.publish("volume", "create", name, {"driver": driver})
        return record, True

    def _drop_active(self, record: Record, container: str, quiet: bool = False) -> None:
        if container in record.active:
            del record.active[container]
            self._store.save(record)
            if not quiet:
                self.publish("volume", "unmount", record.name,
                             {"driver": record.driver, "container": container})
        if record.options and not record.active:
            self._unmount(record)

    def _containers(self) -> set[str] | None:
        """Every container's ID, as the container actor has them (None if it cannot
        say now: then no reference is taken for stale). On a thread of its own."""
        try:
            # Not the typed stub: its deadline is the caller's whole one, and a container
            # actor that is down must not turn a remove's 409 into a timeout.
            listed = self.ctx.pool.call("container", "list", {"all": True},
                                        timeout=CONTAINERS_TIMEOUT)
            return {c["Id"] for c in listed}
        except PouchError as exc:
            log.info("containers unknown (%s): references kept as they are", exc.message)
            return None

    def _drop_stale(self, record: Record, known: set[str]) -> None:
        """Drop the references of containers that are gone (see rules.stale)."""
        now = time.time()
        gone = stale(record.users, known, now) | stale(record.active, known, now)
        if not gone:
            return
        log.warning("volume %s: dropping references of containers that are gone: %s",
                    record.name, ", ".join(sorted(gone)))
        for cid in gone:
            record.users.pop(cid, None)
        for cid in gone:
            self._drop_active(record, cid)
        self._store.save(record)

    def _mount(self, record: Record) -> None:
        path = self._store.data(record.name)
        plan = mount_plan(record.options or {})
        try:
            mounts.mount(plan, path)
        except OSError as exc:
            raise PouchError("internal", (
                f"error while mounting volume '{path}': failed to mount local volume: mount "
                f"{plan.device}:{path}, flags: {plan.flags:#x}"
                + (f", data: {plan.data}" if plan.data else "")
                + f": {os.strerror(exc.errno or 0)}")) from None
        log.info("volume %s: mounted %s", record.name, plan.device)

    def _unmount(self, record: Record) -> None:
        path = self._store.data(record.name)
        # Stacked mounts (a mount cut short, then done again) all go.
        while path in mountpoints.mount_points():
            try:
                mountpoints.unmount(path)
            except OSError as exc:
                raise PouchError("internal", f"unmount {record.name}: "
                                             f"{os.strerror(exc.errno or 0)}") from None

    def _destroy(self, record: Record) -> Path:
        """Take an unused volume away (its own mount first); the folder its files are in
        now, to delete. Errors: internal, when it cannot be unmounted."""
        self._unmount(record)
        try:
            trashed = self._store.trash(record.name)
        except OSError as exc:
            raise PouchError("internal", f"remove {record.name}: {exc.strerror}") from None
        self.ctx.faults.hit("volume.remove.trashed")
        del self._volumes[record.name]
        self.publish("volume", "destroy", record.name, {"driver": record.driver})
        return trashed

    def _delete_later(self, folder: Path) -> None:
        threading.Thread(target=remove_tree, args=(folder,), name=f"rm {folder.name}",
                         daemon=True).start()
