"""The part of a container's /etc/hosts the network actor keeps: its own address and
those of its neighbours on user networks (by name and alias), after a marker line;
what is above the marker is the container actor's and stays as it is.

Rewritten in place (truncate and write), never replaced by a rename: the file is bind
mounted into the container, and a bind mount holds the inode, not the name.
"""

from __future__ import annotations

from collections.abc import Iterable

from pouch.actors.fsutil import rewrite_in_place

MARKER = "# pouch: addresses on networks, kept current by the network actor"


def render(current: str, own: Iterable[tuple[str, str]],
           peers: Iterable[tuple[str, list[str]]]) -> str:
    """`current` with the section after MARKER made of `own` ((address, hostname)) and
    `peers` ((address, [name, alias, ...])). A name of several addresses (an alias that
    a scaled compose service shares, or a container on two of the networks) is left to
    the embedded DNS server (dns.py), which answers all of them: a hosts file would give
    every program the first one only. Pure."""
    peers = list(peers)
    addresses: dict[str, set[str]] = {}
    for address, names in peers:
        for name in names:
            addresses.setdefault(name, set()).add(address)
    base = current.split(MARKER, 1)[0].rstrip("\n")
    lines = [base, MARKER] if base else [MARKER]
    lines += [f"{address}\t{hostname}" for address, hostname in own]
    for address, names in peers:
        single = [n for n in dict.fromkeys(names) if n and len(addresses[n]) == 1]
        if single:
            lines.append(f"{address}\t{' '.join(single)}")
    return "\n".join(lines) + "\n"


def rewrite(path: str, own: Iterable[tuple[str, str]],
            peers: Iterable[tuple[str, list[str]]]) -> None:
    """Update the file at `path` in place; a container whose folder is gone is fine.
    The container actor writes its links' lines above the marker at a start meanwhile:
    both take turns (rewrite_in_place)."""
    rewrite_in_place(path, lambda current: render(current, own, peers))
