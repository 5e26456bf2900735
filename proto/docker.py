"""Docker's vocabulary, in one place for every actor and the gateway.

The API version served, the storage driver's name, filters (`{"key": ["value", ...]}`:
values of one key OR-ed, keys AND-ed), labels, how a user's reference to an object
(full ID, name, unique ID prefix) is resolved, and the shape of events. The
broker knows none of this: it routes frames.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

import re2

from pouch.proto.envelope import invalid, not_found
from pouch.proto.limits import check_value
from pouch.proto.shapes import Event

API_VERSION: Final = "1.41"
MIN_API_VERSION: Final = "1.24"
# containerd's snapshotter, which inspect and /info also show as the storage driver.
SNAPSHOTTER: Final = "overlayfs"

Filters = dict[str, list[str]]

EVENT_FILTERS: Final = ("container", "daemon", "event", "image", "label", "network", "plugin",
                        "scope", "type", "volume")


# -- filters -----------------------------------------------------------------


def parse_filters(raw: str | None) -> Filters:
    """The `filters` query parameter: {"key": ["v", ...]}, or the older {"key": {"v": true}}.
    Errors: invalid."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"invalid filters: {exc}") from None
    if not isinstance(parsed, dict):
        raise invalid("invalid filters: must be a JSON object")
    check_value(parsed, "filters")
    result: Filters = {}
    for key, values in parsed.items():
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise invalid(f"invalid filter '{key}'")
        result[key] = values
    return result


def check_filters(filters: Filters | None, allowed: Iterable[str]) -> Filters:
    """The filters, if every key is one the caller serves. Errors: invalid."""
    filters = filters or {}
    known = set(allowed)
    for key in filters:
        if key not in known:
            raise invalid(f"invalid filter '{key}'")
    return filters


def _linear_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # an invalid pattern is the caller's answer, not a log line
    return options


_RE2_OPTIONS = _linear_options()


def pattern_matches(pattern: str, text: str) -> bool:
    """A filter value that is a regular expression (as `name`), matched as dockerd does:
    with RE2, in time linear in the text, so no pattern can hold an actor's thread; a
    pattern RE2 cannot read matches nothing."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS).search(text) is not None
    except re2.error:
        return False


def labels_match(wanted: Iterable[str], labels: Mapping[str, str]) -> bool:
    """Every `key` or `key=value` given is among the labels."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


# -- references to objects ---------------------------------------------------

# dockerd's rule for the names users give containers (and volumes, networks).
_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def check_name(name: str, kind: str) -> str:
    """A user-given name, without its leading slash. Errors: invalid."""
    if not _NAME.fullmatch(name):
        raise invalid(f"Invalid {kind} name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                      "are allowed")
    return name.lstrip("/")



def resolve_id(ref: str, ids: Iterable[str], names: Mapping[str, str], kind: str) -> str:
    """An object's ID from a full ID, a name, or a unique ID prefix, in that order.

    As dockerd: an exact ID or name wins over a prefix; a prefix that fits
    several IDs is refused (400) rather than guessed. Errors: not_found, invalid.
    """
    known = ids if isinstance(ids, set | frozenset | dict) else set(ids)
    if ref in known:
        return ref
    by_name = names.get(ref)
    if by_name is not None and by_name in known:
        return by_name
    if ref:
        found = [i for i in known if i.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise invalid(f"multiple IDs found with provided prefix: {ref}")
    raise not_found(f"No such {kind}: {ref}")


def is_hex_id(text: str) -> bool:
    """A full 64-hex object ID (containers, images, networks)."""
    return len(text) == 64 and all(ch in "0123456789abcdef" for ch in text)


# -- events ------------------------------------------------------------------


def event(etype: str, action: str, actor_id: str,
          attributes: Mapping[str, str] | None = None, now_ns: int | None = None) -> Event:
    """One event in Docker's shape.

    Container and image events also carry the fields API 1.22 deprecated, which
    dockerd 20.10 still fills and older clients (docker-py's `event["status"]`, the
    CLI's `{{.Status}}`) still read: `status` (the action), `id` (the actor's) and,
    for a container, `from` (its image); each left out when empty, as dockerd's are.
    """
    now = time.time_ns() if now_ns is None else now_ns
    attrs = dict(attributes or {})
    deprecated: dict[str, str] = {}
    if etype in ("container", "image"):
        deprecated = {"status": action, "id": actor_id}
        if etype == "container":
            deprecated["from"] = attrs.get("image", "")
    return cast(Event, {
        **{key: value for key, value in deprecated.items() if value},
        "Type": etype, "Action": action, "scope": "local",
        "Actor": {"ID": actor_id, "Attributes": attrs},
        "time": now // 1_000_000_000, "timeNano": now})


# Filter keys that name an object of one event type: they match its ID or its name.
_OBJECT_KEYS = ("container", "image", "volume", "network", "daemon", "plugin")


def _names_match(wanted: Iterable[str], candidates: Iterable[str]) -> bool:
    # Short IDs match as prefixes of 64-hex IDs only, never of names.
    return any(w == c or (is_hex_id(c) and c.startswith(w))
               for w in wanted for c in candidates if c)


def _strip_tag(name: str) -> str:
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail and "@" not in name else name


def event_matches(event: Mapping[str, Any], filters: Filters) -> bool:
    """Whether one event passes Docker's event filters (keys: EVENT_FILTERS)."""
    actor = event.get("Actor") or {}
    attrs: dict[str, str] = actor.get("Attributes") or {}
    etype = event.get("Type", "")
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type":
            ok = etype in wanted
        elif key == "event":
            action = event.get("Action", "")
            # "exec_start: sh -c ..." matches the filter "exec_start".
            ok = action in wanted or action.split(":", 1)[0] in wanted
        elif key == "label":
            ok = labels_match(wanted, attrs)
        elif key == "scope":
            ok = event.get("scope", "local") in wanted
        elif key == "image":
            names = [actor.get("ID", ""), attrs.get("name", ""), attrs.get("image", "")]
            # "busybox" matches "busybox:latest", as Docker strips the tag to compare.
            names += [_strip_tag(n) for n in names]
            ok = etype in ("image", "container") and _names_match(wanted, names)
        elif key in _OBJECT_KEYS:
            ok = etype == key and _names_match(wanted, [actor.get("ID", ""),
                                                        attrs.get("name", "")])
        else:
            ok = False  # an unknown key is refused by check_filters; nothing passes it here
        if not ok:
            return False
    return True
