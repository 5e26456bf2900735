"""The devices a container gets: the nodes in its /dev (`linux.devices`) and the device
cgroup rules that let it use them (`linux.resources.devices`), as dockerd 20.10 sets
them for `--device`, `--device-cgroup-rule` and `--privileged`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pouch.actors.container.spec.fields import dict_list, str_list
from pouch.actors.container.spec.host import DeviceNode, HostView, NotADevice
from pouch.actors.container.spec.merge import clean_abs
from pouch.proto.envelope import invalid

# (major, minor) char devices every container may use; None is a wildcard.
# runc appends much the same list itself; saying it here keeps the spec
# self-describing and independent of the runtime's defaults.
ALLOWED_CHAR_DEVICES: tuple[tuple[int | None, int | None, str], ...] = (
    (None, None, "m"),  # mknod of any char device (CAP_MKNOD is a default cap)
    (1, 3, "rwm"),  # /dev/null
    (1, 5, "rwm"),  # /dev/zero
    (1, 7, "rwm"),  # /dev/full
    (1, 8, "rwm"),  # /dev/random
    (1, 9, "rwm"),  # /dev/urandom
    (5, 0, "rwm"),  # /dev/tty
    (5, 1, "rwm"),  # /dev/console
    (5, 2, "rwm"),  # /dev/ptmx
    (136, None, "rwm"),  # /dev/pts/*
)

_CGROUP_RULE_RE = re.compile(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})")


def devices(hc: Mapping[str, Any], privileged: bool,
            host: HostView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The device nodes and the device cgroup rules. Errors: invalid, naming the field."""
    mappings = [_mapping(entry) for entry in dict_list(hc, "Devices")]
    rules_asked = str_list(hc, "DeviceCgroupRules")
    nodes: list[DeviceNode] = []
    if privileged:
        # Every device of the host, under its own name; a mapping adds another name.
        nodes = host.host_devices()
        for on_host, in_container, _ in mappings:
            if on_host != in_container:
                nodes += _lookup(host, on_host, in_container)
        return [_node(n) for n in nodes], [{"allow": True, "access": "rwm"}]
    rules = default_rules()
    for on_host, in_container, access in mappings:
        for node in _lookup(host, on_host, in_container):
            nodes.append(node)
            rules.append({"allow": True, "type": node.type, "major": node.major,
                          "minor": node.minor, "access": access})
    rules += [_cgroup_rule(rule) for rule in rules_asked]
    return [_node(n) for n in nodes], rules


def default_rules() -> list[dict[str, Any]]:
    """Deny every device, then allow the few every container uses."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor, access in ALLOWED_CHAR_DEVICES:
        rule: dict[str, Any] = {"allow": True, "type": "c"}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rule["access"] = access
        rules.append(rule)
    rules.append({"allow": True, "type": "b", "access": "m"})
    return rules


def _mapping(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    """(path on host, path in the container, cgroup permissions) of one Devices entry."""
    on_host = entry.get("PathOnHost")
    if not isinstance(on_host, str) or not on_host:
        raise invalid("invalid HostConfig.Devices: each device needs a PathOnHost")
    in_container = entry.get("PathInContainer") or on_host
    access = entry.get("CgroupPermissions") or "rwm"
    if not isinstance(in_container, str) or not in_container.startswith("/"):
        raise invalid(f"invalid HostConfig.Devices: {in_container!r} is not an absolute path")
    if not isinstance(access, str) or not _valid_access(access):
        raise invalid(f"invalid HostConfig.Devices: {on_host} invalid device mode: {access}")
    return on_host, clean_abs(in_container), access


def _valid_access(access: str) -> bool:
    return bool(access) and set(access) <= set("rwm") and len(set(access)) == len(access)


def _lookup(host: HostView, on_host: str, in_container: str) -> list[DeviceNode]:
    try:
        return host.devices_at(on_host, in_container)
    except (OSError, NotADevice) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise invalid(f"invalid HostConfig.Devices: error gathering device information while "
                      f'adding custom device "{on_host}": {reason.lower()}') from None


def _node(node: DeviceNode) -> dict[str, Any]:
    return {"path": node.path, "type": node.type, "major": node.major, "minor": node.minor,
            "fileMode": node.file_mode, "uid": node.uid, "gid": node.gid}


def _cgroup_rule(text: str) -> dict[str, Any]:
    """A `--device-cgroup-rule` ("c 1:3 mr", "a *:* rwm") as a device cgroup rule."""
    match = _CGROUP_RULE_RE.fullmatch(text)
    if match is None:
        raise invalid(f"invalid HostConfig.DeviceCgroupRules: invalid device cgroup rule "
                      f"format: '{text}'")
    kind, major, minor, access = match.groups()
    rule: dict[str, Any] = {"allow": True, "type": kind}
    if major != "*":
        rule["major"] = int(major)
    if minor != "*":
        rule["minor"] = int(minor)
    rule["access"] = access
    return rule
