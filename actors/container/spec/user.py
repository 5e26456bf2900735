"""The user a container runs as: libcontainer/user's rules over its passwd and group."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pouch.proto.envelope import invalid

_MAX_ID = 2147483647
_INT_RE = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class User:
    """A resolved user: ids, supplementary groups from /etc/group, home dir."""

    uid: int
    gid: int
    additional_gids: list[int]
    home: str


@dataclass(frozen=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def resolve_user(user: str, passwd: str | None, group: str | None,
                 group_add: list[str] | None = None) -> User:
    """Resolve ``user``, ``uid``, ``user:group``, ``uid:gid`` (and mixes) against the
    text of the container's /etc/passwd and /etc/group (None when absent), with the
    groups of ``group_add`` (`--group-add`) among the supplementary ones.

    As in runc's libcontainer: a numeric user absent from passwd is allowed
    (gid 0 then); supplementary groups come from /etc/group only when the
    group is not given explicitly. Errors: invalid (unknown name, id out of range).
    """
    resolved = _resolve_user(user, passwd, group)
    if not group_add:
        return resolved
    extra = additional_groups(group_add, group)
    gids = list(dict.fromkeys([*resolved.additional_gids, *extra]))
    return User(uid=resolved.uid, gid=resolved.gid, additional_gids=gids, home=resolved.home)


def additional_groups(names: list[str], group: str | None) -> list[int]:
    """libcontainer's GetAdditionalGroups: each of `names` by name or gid in the
    container's /etc/group, else as a number. Errors: invalid (an unknown name)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise invalid("invalid HostConfig.GroupAdd: must be a list of strings")
    groups = _group_entries(group) if group is not None else []
    out: list[int] = []
    for name in names:
        match = next((g.gid for g in groups if name in (g.name, str(g.gid))), None)
        if match is None:
            number = _atoi(name)
            if number is None:
                raise invalid(f"invalid HostConfig.GroupAdd: Unable to find group {name}: "
                              "no matching entries in group file")
            match = _check_id_range(number)
        out.append(match)
    return list(dict.fromkeys(out))


def _resolve_user(user: str, passwd: str | None, group: str | None) -> User:
    parts = user.split(":")
    user_arg = parts[0]
    group_arg = parts[1] if len(parts) > 1 else ""
    uid_arg = _atoi(user_arg)

    uid, gid, home = 0, 0, "/"
    matched_name = ""
    entries = _passwd_entries(passwd) if passwd is not None else []
    for entry in entries:
        if user_arg == "":
            found = entry.uid == 0
        elif uid_arg is not None:
            found = entry.uid == uid_arg
        else:
            found = entry.name == user_arg
        if found:
            matched_name, uid, gid, home = entry.name, entry.uid, entry.gid, entry.home or "/"
            break
    else:
        if user_arg != "":
            if uid_arg is None:
                raise invalid(f"unable to find user {user_arg}: no matching entries in passwd file")
            uid = _check_id_range(uid_arg)

    additional: list[int] = []
    if group_arg or matched_name:
        groups = _group_entries(group) if group is not None else []
        if group_arg:
            gid_arg = _atoi(group_arg)
            for g in groups:
                if (g.gid == gid_arg) if gid_arg is not None else (g.name == group_arg):
                    gid = g.gid
                    break
            else:
                if gid_arg is None:
                    raise invalid(
                        f"unable to find group {group_arg}: no matching entries in group file"
                    )
                gid = _check_id_range(gid_arg)
        else:
            additional = [g.gid for g in groups if matched_name in g.members]
    return User(uid=uid, gid=gid, additional_gids=additional, home=home)


def _atoi(text: str) -> int | None:
    return int(text) if _INT_RE.fullmatch(text) else None


def _check_id_range(value: int) -> int:
    if not 0 <= value <= _MAX_ID:
        raise invalid(f"uids and gids must be in range 0-{_MAX_ID}")
    return value


def _colon_lines(text: str) -> Iterable[list[str]]:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def _passwd_entries(text: str) -> list[_PasswdEntry]:
    out = []
    for fields in _colon_lines(text):
        # Go's parser reads a malformed id as 0, i.e. root; we skip the line instead.
        if len(fields) < 4 or _atoi(fields[2]) is None or _atoi(fields[3]) is None:
            continue
        home = fields[5] if len(fields) > 5 else ""
        out.append(_PasswdEntry(fields[0], int(fields[2]), int(fields[3]), home))
    return out


def _group_entries(text: str) -> list[_GroupEntry]:
    out = []
    for fields in _colon_lines(text):
        if len(fields) < 3 or _atoi(fields[2]) is None:
            continue
        members = fields[3].split(",") if len(fields) > 3 else []
        out.append(
            _GroupEntry(fields[0], int(fields[2]), tuple(m.strip() for m in members if m.strip()))
        )
    return out
