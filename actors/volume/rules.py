"""What dockerd's local volume driver accepts: names, options and filters. Pure: no
disk, no clock; every refusal is `invalid` (400) in dockerd's words."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pouch.actors.mountpoints import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SHARED,
)
from pouch.proto.docker import Filters, check_filters, labels_match, pattern_matches
from pouch.proto.envelope import invalid, not_found

DRIVER = "local"
# dockerd's RestrictedNamePattern: a name is a folder under <home>/volumes, so nothing in
# it may lead out of there ("/", "..", a leading dot).
_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
NAME_MAX = 255  # a file name's longest on Linux

LIST_FILTERS = ("name", "label", "dangling", "driver")
PRUNE_FILTERS = ("label", "label!")
OPTION_KEYS = ("type", "device", "o")
# dockerd's mandatory options: one given needs these too.
_REQUIRES = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

# Mount flags of `o`, as moby's mount package reads them: (set, clear). The flags only
# `o` names are here, the others are mountpoints'.
MS_SYNCHRONOUS, MS_MANDLOCK, MS_DIRSYNC, MS_NOATIME, MS_NODIRATIME = 16, 64, 128, 1024, 2048
MS_UNBINDABLE, MS_SLAVE, MS_RELATIME, MS_STRICTATIME = 1 << 17, 1 << 19, 1 << 21, 1 << 24
_FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0), "nomand": (0, MS_MANDLOCK),
    "noatime": (MS_NOATIME, 0), "atime": (0, MS_NOATIME),
    "nodiratime": (MS_NODIRATIME, 0), "diratime": (0, MS_NODIRATIME),
    "relatime": (MS_RELATIME, 0), "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0), "nostrictatime": (0, MS_STRICTATIME),
    "bind": (MS_BIND, 0), "rbind": (MS_BIND | MS_REC, 0),
}
# Propagation takes a mount call of its own, after the mount itself.
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# tmpfs's own options, and what their values look like.
_TMPFS_OPTIONS = {
    "size": re.compile(r"\d+[kKmMgGtTpPeE%]?"),
    "nr_blocks": re.compile(r"\d+[kKmMgGtTpPeE%]?"),
    "nr_inodes": re.compile(r"\d+[kKmMgGtTpPeE%]?"),
    "mode": re.compile(r"[0-7]{1,4}"),
    "uid": re.compile(r"\d+"),
    "gid": re.compile(r"\d+"),
    "huge": re.compile(r"never|always|within_size|advise|deny|force"),
    "mpol": re.compile(r"[a-z]+(:[0-9,-]+)?(/[a-z]+)?"),
}


def _quoted(text: str) -> str:
    """Text as Go's %q writes it (near enough: JSON's escapes)."""
    return json.dumps(text, ensure_ascii=False)


def check_name(name: str) -> str:
    """A volume name the local driver accepts. Errors: invalid."""
    if len(name) == 1:
        raise invalid("volume name is too short, names should be at least two "
                      "alphanumeric characters")
    if not _NAME.fullmatch(name):
        raise invalid(f"{_quoted(name)} includes invalid characters for a local volume name, "
                      f"only {_quoted(_NAME_CHARS)} are allowed. If you intended to pass a "
                      "host directory, use absolute path")
    if len(name) > NAME_MAX:
        raise invalid(f"volume name is too long ({len(name)} characters): at most "
                      f"{NAME_MAX} are allowed")
    return name


def check_driver(driver: str) -> str:
    """The driver's name ("" is local); only the local driver exists here. Errors:
    not_found, as dockerd for a plugin it cannot find."""
    if driver in ("", DRIVER):
        return DRIVER
    raise not_found(f'error looking up volume plugin {driver}: plugin "{driver}" not found')


@dataclass(frozen=True)
class MountPlan:
    """How a volume with options is mounted at its _data: mount(2)'s arguments, then
    a read-only remount for a read-only bind and a propagation change, if asked."""

    device: str
    fstype: str | None   # None for a bind
    flags: int
    data: str
    remount_readonly: bool
    propagation: int

    @property
    def bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def check_options(options: Mapping[str, str] | None) -> dict[str, str]:
    """The local driver's options (`type`, `device`, `o`), checked as far as they can be
    before a mount; {} for none. Errors: invalid."""
    options = dict(options or {})
    if not options:
        return {}
    for key in options:
        if key not in OPTION_KEYS:
            raise invalid(f"invalid option key: {_quoted(key)}")
    for key in OPTION_KEYS:
        if key in options:
            for needed in _REQUIRES[key]:
                if needed not in options:
                    raise invalid(f"missing required option: {_quoted(needed)}")
    mount_plan(options)  # refuses what cannot be mounted
    return options


def mount_plan(options: Mapping[str, str]) -> MountPlan:
    """How to mount a volume with these options. Errors: invalid."""
    fstype = options.get("type", "")
    device = options.get("device", "")
    if not device:
        raise invalid("missing device in volume options")
    if not fstype or "\0" in fstype or "," in fstype:
        raise invalid(f"invalid mount type: {_quoted(fstype)}")
    flags = 0
    data: list[str] = []
    propagation = 0
    for item in filter(None, (options.get("o") or "").split(",")):
        if item in _FLAGS:
            set_, clear = _FLAGS[item]
            flags = (flags | set_) & ~clear
        elif item in _PROPAGATION:
            propagation = _PROPAGATION[item]
        elif item in ("remount", "move"):
            raise invalid(f"invalid mount option: {_quoted(item)}")
        else:
            data.append(item)
    if fstype in ("bind", "rbind"):
        flags |= MS_BIND | (MS_REC if fstype == "rbind" else 0)
    bind = bool(flags & MS_BIND)
    if bind:
        if not device.startswith("/"):
            raise invalid(f"invalid mount device: bind source {_quoted(device)} is not an "
                          "absolute path")
        if data:
            raise invalid(f"invalid mount options for a bind: {_quoted(','.join(data))}")
    if fstype == "tmpfs":
        for item in data:
            key, eq, value = item.partition("=")
            rule = _TMPFS_OPTIONS.get(key)
            if rule is None or not eq or not rule.fullmatch(value):
                raise invalid(f"invalid tmpfs option: {_quoted(item)}")
    return MountPlan(device=device, fstype=None if bind else fstype, flags=flags,
                     data=",".join(data), remount_readonly=bind and bool(flags & MS_RDONLY),
                     propagation=propagation)


# -- filters ---------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the filters look at in one volume."""

    name: str
    driver: str
    labels: Mapping[str, str]
    in_use: bool


def list_filters(filters: Filters | None) -> Filters:
    """The list's filters, checked. Errors: invalid."""
    filters = check_filters(filters, LIST_FILTERS)
    for value in filters.get("dangling", []):
        if value not in ("true", "false", "1", "0"):
            raise invalid(f"invalid filter 'dangling={value}'")
    return filters


def listed(facts: Facts, filters: Filters) -> bool:
    """Whether a volume passes the list's filters (checked by list_filters): values of
    one key OR-ed (a label's all AND-ed, as dockerd), keys AND-ed."""
    names = filters.get("name", [])
    if names and not any(pattern_matches(pattern, facts.name) for pattern in names):
        return False
    drivers = filters.get("driver", [])
    if drivers and facts.driver not in drivers:
        return False
    if not labels_match(filters.get("label", []), facts.labels):
        return False
    return all((value in ("true", "1")) != facts.in_use for value in filters.get("dangling", []))


def prune_filters(filters: Filters | None) -> Filters:
    """The prune's filters (API 1.41: label and label!), checked. Errors: invalid."""
    return check_filters(filters, PRUNE_FILTERS)


def pruned(facts: Facts, filters: Filters) -> bool:
    """Whether prune takes a volume: unused, and its labels pass `label` and `label!`
    (excluded when it has every label `label!` names, as dockerd's matchLabels)."""
    if facts.in_use or not labels_match(filters.get("label", []), facts.labels):
        return False
    exclude = filters.get("label!", [])
    return not (exclude and labels_match(exclude, facts.labels))


# -- references ------------------------------------------------------------------

# How long a reference may name a container its actor does not know: one made by a
# create still under way is not listed yet.
REFERENCE_GRACE = 120.0


def stale(since: Mapping[str, float], known: set[str], now: float,
          grace: float = REFERENCE_GRACE) -> set[str]:
    """The containers among `since` (container -> when its reference began) that the
    container actor no longer knows (`known`: every container it has), held longer
    than `grace`: left by a create or remove that a crash cut short."""
    return {cid for cid, began in since.items() if cid not in known and now - began > grace}
