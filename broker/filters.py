"""Event filters with Docker's semantics: values of one key are OR-ed, keys are AND-ed.

An event is Docker's shape: {Type, Action, Actor: {ID, Attributes}, scope, time, timeNano}.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Filter keys that name an object of one event type: they match its ID or its name.
_OBJECT_KEYS = {"container": "container", "image": "image", "volume": "volume",
                "network": "network", "daemon": "daemon", "plugin": "plugin"}


def _any(wanted: Iterable[str], candidates: Iterable[str]) -> bool:
    return any(_names(w, c) for w in wanted for c in candidates if c)


def _names(wanted: str, candidate: str) -> bool:
    # Short IDs match as prefixes of 64-hex IDs only, never of names.
    hex_id = len(candidate) == 64 and all(ch in "0123456789abcdef" for ch in candidate)
    return wanted == candidate or (hex_id and candidate.startswith(wanted))


def _strip_tag(name: str) -> str:
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail and "@" not in name else name


def _label_match(wanted: Iterable[str], attributes: dict[str, str]) -> bool:
    """Every label given must be there (with its value, when one is given)."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in attributes or (eq and attributes[key] != value):
            return False
    return True


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether one event passes a set of filters."""
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
            ok = _label_match(wanted, attrs)
        elif key == "scope":
            ok = event.get("scope", "local") in wanted
        elif key in _OBJECT_KEYS:
            names = [actor.get("ID", ""), attrs.get("name", "")]
            if key == "image":
                names.append(attrs.get("image", ""))
                # "busybox" matches "busybox:latest", as Docker strips the tag to compare.
                names += [_strip_tag(n) for n in names]
                ok = _any(wanted, names) if etype in ("image", "container") else False
            else:
                ok = etype == _OBJECT_KEYS[key] and _any(wanted, names)
        else:
            ok = False  # an unknown key is rejected by the caller; nothing passes it here
        if not ok:
            return False
    return True
