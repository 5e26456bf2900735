"""Reading typed HostConfig fields: an error names the field at fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pouch.proto.envelope import invalid


def unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def bool_field(hc: Mapping[str, Any], key: str) -> bool:
    value = hc.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"invalid HostConfig.{key} {value!r}: must be true or false")
    return value


def int_field(hc: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = hc.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"invalid HostConfig.{key} {value!r}: must be an integer")
    return value


def str_field(hc: Mapping[str, Any], key: str) -> str:
    value = hc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"invalid HostConfig.{key} {value!r}: must be a string")
    return value


def str_list(hc: Mapping[str, Any], key: str) -> list[str]:
    value = hc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"invalid HostConfig.{key}: must be a list of strings")
    return value


def dict_list(hc: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = hc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise invalid(f"invalid HostConfig.{key}: must be a list of objects")
    return value
