"""The volumes on disk: `<home>/volumes/<name>/_data` holds a volume's files and
`volume.json` beside it what the actor knows of it (driver, options, labels, when it
was made, for which container if anonymous, its users). Each change is on disk before
it is answered, so an actor killed at any point restarts knowing what it told.

A volume appears whole or not at all (made in a `.new-*` folder, then renamed) and
goes away by a rename to `.trash-*` before its files are deleted: what a kill
interrupts is finished at the next start. Names never start with a dot (rules.py),
so neither kind of folder can be a volume's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pouch.actors import mountpoints
from pouch.actors.fsutil import atomic_write_json
from pouch.actors.volume.rules import DRIVER

log = logging.getLogger("pouch.volume")

DATA = "_data"
META = "volume.json"
_NEW = ".new-"
_TRASH = ".trash-"


@dataclass
class Record:
    """One volume, as kept in its volume.json."""

    name: str
    driver: str = DRIVER
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    created: float = 0.0
    anonymous: str = ""    # the container it was made for, if it was made anonymous
    destination: str = ""  # where that container mounts it (an anonymous one's key)
    # Containers referring to it, and those it is mounted for, each with when it began
    # (a reference its container's actor no longer knows is dropped after a while).
    users: dict[str, float] = field(default_factory=dict)
    active: dict[str, float] = field(default_factory=dict)

    @property
    def in_use(self) -> bool:
        return bool(self.users or self.active)

    def holders(self) -> list[str]:
        """The containers that use it, sorted."""
        return sorted(self.users.keys() | self.active.keys())

    def to_json(self) -> dict[str, Any]:
        return {"Driver": self.driver, "Options": self.options, "Labels": self.labels,
                "Created": self.created, "Anonymous": self.anonymous,
                "Destination": self.destination, "Users": dict(sorted(self.users.items())),
                "Active": dict(sorted(self.active.items()))}

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Record:
        return cls(name=name, driver=str(data.get("Driver") or DRIVER),
                   options=data.get("Options"), labels=data.get("Labels"),
                   created=float(data.get("Created") or 0.0),
                   anonymous=str(data.get("Anonymous") or ""),
                   destination=str(data.get("Destination") or ""),
                   users=_since(data.get("Users")), active=_since(data.get("Active")))


def _since(value: Any) -> dict[str, float]:
    """{container: since} as written (a plain list: since the epoch)."""
    if isinstance(value, dict):
        return {str(k): float(v or 0.0) for k, v in value.items()}
    return dict.fromkeys(map(str, value or []), 0.0)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, name: str) -> Path:
        return self.root / name

    def data(self, name: str) -> Path:
        return self.root / name / DATA

    def load(self) -> tuple[dict[str, Record], list[Path]]:
        """Every volume on disk, and the trashed folders whose deletion a kill cut short.
        A half-made volume is dropped; a folder with a _data but no volume.json (made by
        hand, or by another engine) is a volume made when its folder was."""
        self.root.mkdir(mode=0o701, parents=True, exist_ok=True)
        records: dict[str, Record] = {}
        trash: list[Path] = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            path = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name.startswith(_NEW):
                remove_tree(path)
            elif entry.name.startswith(_TRASH):
                trash.append(path)
            elif not entry.name.startswith(".") and (path / DATA).is_dir():
                records[entry.name] = self._read(entry.name, path)
        return records, trash

    def _read(self, name: str, path: Path) -> Record:
        try:
            data = json.loads((path / META).read_text())
            if isinstance(data, dict):
                return Record.from_json(name, data)
            log.warning("volume %s: %s is not an object; taken as a plain volume", name, META)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("volume %s: unreadable %s (%s); taken as a plain volume", name, META,
                        exc)
        return Record(name=name, created=path.stat().st_mtime)

    def create(self, record: Record, staged: Callable[[], None] = lambda: None) -> None:
        """Make the volume's folder, its empty _data and its volume.json, all at once
        (`staged` is called when all is made, under a temporary name). OSError."""
        if not record.created:
            record.created = time.time()
        staging = self.root / f"{_NEW}{secrets.token_hex(8)}"
        staging.mkdir(mode=0o701)
        try:
            (staging / DATA).mkdir(mode=0o755)
            os.chmod(staging / DATA, 0o755)  # whatever the umask
            atomic_write_json(staging / META, record.to_json())
            staged()
            target = self.folder(record.name)
            with contextlib.suppress(FileNotFoundError, OSError):
                target.rmdir()  # an empty leftover only
            os.rename(staging, target)
        except BaseException:
            remove_tree(staging)
            raise
        _fsync_dir(self.root)

    def save(self, record: Record) -> None:
        """Write the volume's volume.json anew (its users changed, say)."""
        atomic_write_json(self.folder(record.name) / META, record.to_json())

    def trash(self, name: str) -> Path:
        """Take the volume away at once (a rename); its files are deleted later, by
        remove_tree on the folder this returns."""
        # Not named after the volume: a name of 255 characters would make it too long.
        trashed = self.root / f"{_TRASH}{secrets.token_hex(8)}"
        os.rename(self.folder(name), trashed)
        log.info("volume %s: removed (its files go with %s)", name, trashed.name)
        _fsync_dir(self.root)
        return trashed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_size(path: Path) -> int:
    """The bytes of the regular files under `path` (a file linked twice counted once),
    on its own file system only, as dockerd's directory.Size."""
    try:
        device = path.lstat().st_dev
    except OSError:
        return 0
    mounted = {os.fspath(p) for p in mountpoints.mounted_under(path)}
    seen: set[int] = set()
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_dev != device or entry.path in mounted:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(entry.path))
            elif stat.S_ISREG(info.st_mode) and info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_size
    return total


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it, never crossing into a mount: whatever is
    mounted below (a host folder bound there, say) is left alone, and so is its mount
    point then (logged)."""
    try:
        device = path.lstat().st_dev
    except FileNotFoundError:
        return
    mounted = {os.fspath(p) for p in mountpoints.mounted_under(path)}
    if os.fspath(path) in mounted:
        log.warning("left %s: something is mounted there", path)
        return

    def walk(folder: Path) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("could not delete %s: %s", folder, exc)
            return
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    if info.st_dev != device or entry.path in mounted:
                        log.warning("left %s: something is mounted there", entry.path)
                        continue
                    walk(Path(entry.path))
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError as exc:
                log.warning("could not delete %s: %s", entry.path, exc)

    walk(path)
    try:
        os.rmdir(path)
    except OSError as exc:
        log.warning("could not delete %s: %s", path, exc)
