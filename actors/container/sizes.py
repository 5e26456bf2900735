"""How much room a container's files take, as `docker ps -s` and `inspect --size` show it.

dockerd's two figures: SizeRw, the container's own writable layer, and SizeRootFs,
that layer plus every layer of its image below. SizeRw is counted as dockerd's
overlay driver counts it (the bytes of the files in the writable layer, each
inode once, folders nothing: a container that wrote nothing has 0), walking the
layer's folder. The image's layers are the parents of the container's snapshot
in containerd, committed and so never changing: containerd keeps their usage,
and it is kept here too once read.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from pouch.actors.container.changes import layers_of
from pouch.actors.containerd.snapshots import Snapshots
from pouch.proto.envelope import PouchError

log = logging.getLogger("pouch.container")

# Committed snapshot -> (its own bytes, its parent): the same for as long as it exists.
LayerCache = MutableMapping[str, tuple[int, str]]


def layer_sizes(snapshots: Snapshots, cid: str, layers: LayerCache) -> tuple[int, int]:
    """(SizeRw, SizeRootFs) of container `cid`; (0, 0) when its snapshot is gone (it was
    removed meanwhile), as dockerd answers when it cannot find the layer."""
    try:
        info = snapshots.stat(cid)
        if info is None:
            return 0, 0
        upper, _lowers = layers_of([dict(m) for m in snapshots.mounts(cid)])
        rw = files_size(upper)
        below, parent = 0, info.parent
        while parent:
            if parent not in layers:
                size, _inodes = snapshots.usage(parent)
                above = snapshots.stat(parent)
                layers[parent] = (size, above.parent if above else "")
            size, parent = layers[parent]
            below += size
    except PouchError as exc:
        if exc.code != "not_found":
            raise
        log.info("size of %s: %s", cid, exc.message)
        return 0, 0
    return rw, rw + below


def files_size(top: str) -> int:
    """The bytes of the files under `top`, each inode once (dockerd's directory.Size);
    what vanishes during the walk (the container runs on) is not counted."""
    total, seen = 0, set()
    folders = [top]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                folders.append(entry.path)
                continue
            if info.st_nlink > 1:
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


def with_list_sizes(snapshots: Snapshots, rows: Iterable[Mapping[str, Any]],
                    layers: LayerCache) -> list[dict[str, Any]]:
    """List rows with SizeRw and SizeRootFs; as dockerd's (`omitempty`), a zero is left
    out."""
    out = []
    for row in rows:
        rw, rootfs = layer_sizes(snapshots, row["Id"], layers)
        sized = dict(row)
        if rw:
            sized["SizeRw"] = rw
        if rootfs:
            sized["SizeRootFs"] = rootfs
        out.append(sized)
    return out


def with_inspect_sizes(snapshots: Snapshots, document: Mapping[str, Any],
                       layers: LayerCache) -> dict[str, Any]:
    """An inspect document with SizeRw and SizeRootFs (zeros included: dockerd's are
    pointers there, set whenever sizes were asked for)."""
    rw, rootfs = layer_sizes(snapshots, document["Id"], layers)
    return {**document, "SizeRw": rw, "SizeRootFs": rootfs}
