"""The filters of `docker ps` (GET /containers/json), as dockerd 20.10 reads them.

Pure: the filters are checked once (`check`), then each container's record is
judged (`passes`). `before` and `since` name containers, so the actor resolves
them itself; every other filter is here. `is-task` is a swarm notion: no
container of pouch is a task, so `true` keeps none and `false` keeps all.
"""

from __future__ import annotations

import re
from typing import Any

from pouch.proto.docker import check_filters, labels_match, pattern_matches
from pouch.proto.envelope import invalid

LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "before", "since",
                "health", "isolation", "is-task", "volume", "network", "publish", "expose")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
HEALTH_STATUSES = ("starting", "healthy", "unhealthy", "none")

Filters = dict[str, list[str]]

_PORT = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def check(filters: Filters | None) -> Filters:
    """The filters if dockerd would take them, with its words. Errors: invalid."""
    filters = check_filters(filters, LIST_FILTERS)
    for value in filters.get("exited", []):
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            raise invalid(f'strconv.Atoi: parsing "{value}": invalid syntax')
    for value in filters.get("status", []):
        if value not in STATUSES:
            raise invalid(f"invalid filter 'status={value}'")
    tasks = filters.get("is-task", [])
    if tasks and not (set(tasks) <= {"true", "false"} and len(set(tasks)) == 1):
        raise invalid(f"invalid filter 'is-task=[{' '.join(tasks)}]'")
    for value in filters.get("health", []):
        if value not in HEALTH_STATUSES:
            raise invalid(f"Unrecognised filter value for health: {value}")
    for key in ("publish", "expose"):
        for value in filters.get(key, []):
            ports(key, value)
    return filters


def ports(key: str, value: str) -> set[str]:
    """The ports a `publish` or `expose` value names ("80", "80/udp", "8000-8080/tcp"), as
    "80/tcp". Errors: invalid."""
    if ":" in value:
        raise invalid(f"filter for '{key}' should not contain ':': {value}")
    port, _, proto = value.partition("/")
    found = _PORT.fullmatch(port)
    if not found:
        raise invalid(f"error while looking up for {key} {value}: Invalid containerPort: "
                      f"{port}")
    start = int(found.group(1))
    end = int(found.group(2) or start)
    if end < start or end > 65535:
        raise invalid(f"error while looking up for {key} {value}: Invalid range specified "
                      f"for the Port: {port}")
    return {f"{n}/{proto or 'tcp'}" for n in range(start, end + 1)}


def _health(record: dict[str, Any]) -> str:
    return str((record["State"].get("Health") or {}).get("Status") or "none")


def _volumes(record: dict[str, Any]) -> set[str]:
    """What a `volume` filter may name: a mount's volume name (else its source), or its
    destination."""
    names = set()
    for mount in record.get("Mounts") or []:
        names.add(mount.get("Name") or mount.get("Source") or "")
        names.add(mount.get("Destination") or "")
    return names - {""}


def _in_network(record: dict[str, Any], wanted: list[str]) -> bool:
    networks = (record.get("NetworkSettings") or {}).get("Networks") or {}
    return any(value in networks or any(str((nw or {}).get("NetworkID") or "").startswith(value)
                                        for nw in networks.values())
               for value in wanted)


def _port_sets(record: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(published host ports, exposed container ports), each as "80/tcp"."""
    published, exposed = set(), set()
    for port, bindings in ((record.get("NetworkSettings") or {}).get("Ports") or {}).items():
        exposed.add(port)
        proto = port.partition("/")[2] or "tcp"
        for binding in bindings or []:
            if binding.get("HostPort"):
                published.add(f"{binding['HostPort']}/{proto}")
    return published, exposed


def passes(record: dict[str, Any], filters: Filters) -> bool:
    """Whether one container passes every filter but `before` and `since`."""
    if not filters:
        return True  # `docker ps -a`: nothing to judge
    state, config = record["State"], record["Config"]
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "id" and not any(record["Id"].startswith(w) for w in wanted):
            return False
        # dockerd matches the name as a regular expression, with its slash and without.
        if key == "name" and not any(pattern_matches(w, record["Name"])
                                     or pattern_matches(w, record["Name"].lstrip("/"))
                                     for w in wanted):
            return False
        if key == "status" and state["Status"] not in wanted:
            return False
        if key == "exited" and (state["Status"] != "exited"
                                or not any(int(w) == state["ExitCode"] for w in wanted)):
            return False
        if key == "ancestor" and record["Image"] not in wanted:  # image IDs, resolved
            return False
        if key == "label" and not labels_match(wanted, config.get("Labels") or {}):
            return False
        if key == "health" and _health(record) not in wanted:
            return False
        if key == "isolation":
            isolation = str(record["HostConfig"].get("Isolation") or "default").lower()
            if not any(pattern_matches(w, isolation) for w in wanted):
                return False
        if key == "is-task" and wanted[0] == "true":
            return False
        if key == "volume" and not set(wanted) & _volumes(record):
            return False
        if key == "network" and not _in_network(record, wanted):
            return False
    if filters.get("publish") or filters.get("expose"):
        published, exposed = _port_sets(record)
        wanted_published = set().union(*(ports("publish", w) for w in filters.get("publish", [])))
        wanted_exposed = set().union(*(ports("expose", w) for w in filters.get("expose", [])))
        if not (published & wanted_published or exposed & wanted_exposed):
            return False
    return True
