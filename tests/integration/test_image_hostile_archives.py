"""`docker load` and `docker import` of archives whose members reach outside the root
file system: refused with 400 naming the member, through the real CLI and over raw
HTTP, and nothing of them stays (no image, blob, write in progress, snapshot, lease
or spool file). busybox's own image, whose applets are absolute symlinks, still loads."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pouch.actors.containerd.client import Containerd
from pouch.proto.containerd.api.services.content.v1 import content_pb2, content_pb2_grpc
from pouch.tests.faults.checks import NAMESPACE, list_leases
from pouch.tests.images import build_busybox_tarball
from pouch.tests.integration.test_hostile_input import request
from pouch.tests.integration.test_image_save import layered_archive
from pouch.tests.support.daemon import PouchDaemon, running


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def rootfs_layer(*hostile: tarfile.TarInfo) -> bytes:
    """A plain layer tar: a small ordinary root, then the hostile members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info in [entry("etc", tarfile.DIRTYPE), entry("etc/hostname"),
                     entry("bin/sh", tarfile.SYMTYPE, "/bin/busybox"), *hostile]:
            tar.addfile(info, io.BytesIO(b"") if info.isreg() else None)
    return buf.getvalue()


# (id, the layer's hostile member, what the refusal says of it)
HOSTILE = [
    ("dotdot", entry("../evil"), 'member "../evil" escapes the root file system'),
    ("absolute", entry("/etc/cron.d/evil"),
     'member "/etc/cron.d/evil" escapes the root file system'),
    ("symlink", entry("etc/x/out", tarfile.SYMTYPE, "../../../outside"),
     'member "etc/x/out" is a symlink to "../../../outside", outside the root file system'),
]
IDS = [case[0] for case in HOSTILE]


@pytest.fixture(scope="module")
def pouchd(busybox_tarball: Path) -> Iterator[PouchDaemon]:
    """A pouchd of this module's own (it replaces the one-per-test `pouchd`): every
    refusal here must leave it holding what it held, which a shared daemon, still
    collecting what other tests removed, would not promise."""
    with running(busybox_tarball) as daemon:
        yield daemon


def held(pouchd: PouchDaemon) -> dict[str, Any]:
    """What the daemon and its containerd hold: images, blobs, writes in progress,
    snapshots, leases, and the gateway's spool files."""
    metadata = [("containerd-namespace", NAMESPACE)]
    with grpc.insecure_channel(f"unix://{pouchd.containerd_socket}") as channel:
        content = content_pb2_grpc.ContentStub(channel)
        blobs = sorted(info.digest for reply in content.List(
            content_pb2.ListContentRequest(), timeout=5, metadata=metadata)
            for info in reply.info)
        writes = sorted(status.ref for status in content.ListStatuses(
            content_pb2.ListStatusesRequest(), timeout=5, metadata=metadata).statuses)
    with Containerd(pouchd.containerd_socket, NAMESPACE) as ctrd:
        names = sorted(record.name for record in ctrd.images.list())
        snapshots = sorted(info.name for info in ctrd.snapshots.list())
    spool = pouchd.home / "tmp"
    return {
        "images": pouchd.docker("images", "-a", "--no-trunc", "--format",
                                "{{.ID}} {{.Repository}}:{{.Tag}}"),
        "names": names, "blobs": blobs, "writes": writes, "snapshots": snapshots,
        "leases": list_leases(pouchd.containerd_socket),
        "spool": sorted(p.name for p in spool.iterdir()) if spool.is_dir() else [],
    }


@pytest.fixture
def unchanged(pouchd: PouchDaemon) -> Iterator[None]:
    """The test body must leave the daemon holding what it held before."""
    before = held(pouchd)
    yield
    assert held(pouchd) == before


def load_archive(tmp_path: Path, hostile: tarfile.TarInfo) -> Path:
    path = tmp_path / "hostile.tar"
    layered_archive(path, [("hostile:1", [rootfs_layer(hostile)])], lambda data: data)
    return path


@pytest.mark.parametrize(("member", "says"), [case[1:] for case in HOSTILE], ids=IDS)
def test_docker_load_refuses_a_layer_reaching_outside_naming_the_member(
        pouchd: PouchDaemon, unchanged: None, tmp_path: Path, member: tarfile.TarInfo,
        says: str):
    archive = load_archive(tmp_path, member)
    loaded = pouchd.docker_result("load", "-i", str(archive))
    assert loaded.returncode == 1
    assert "/layer.tar " + says in loaded.stderr, loaded.stderr


@pytest.mark.parametrize(("member", "says"), [case[1:] for case in HOSTILE], ids=IDS)
def test_the_load_api_answers_400_naming_the_member(
        pouchd: PouchDaemon, unchanged: None, tmp_path: Path, member: tarfile.TarInfo,
        says: str):
    archive = load_archive(tmp_path, member).read_bytes()
    status, answer = request(pouchd, "POST", "/images/load", archive,
                             {"Content-Type": "application/x-tar"})
    assert status == 400, answer
    assert says in str(answer["message"])


def test_docker_import_refuses_a_member_above_the_root(pouchd: PouchDaemon, unchanged: None,
                                                       tmp_path: Path):
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(rootfs_layer(entry("../evil")))
    imported = pouchd.docker_result("import", str(tarball), "hostile:imported")
    assert imported.returncode == 1
    assert ('the root file system archive member "../evil" escapes the root file system'
            in imported.stderr), imported.stderr

    status, answer = request(pouchd, "POST", "/images/create?fromSrc=-&repo=hostile&tag=raw",
                             tarball.read_bytes(), {"Content-Type": "application/x-tar"})
    assert status == 400, answer
    assert 'member "../evil" escapes the root file system' in str(answer["message"])


def test_busybox_with_its_absolute_applet_links_loads_and_runs(docker: Callable[..., str],
                                                              tmp_path: Path):
    archive = tmp_path / "busybox.tar"
    image_id = build_busybox_tarball(archive, tag="busybox:links",
                                     extra_files={"etc/flavour": b"links"})
    assert docker("load", "-i", str(archive)) == "Loaded image: busybox:links"
    assert docker("run", "--rm", "busybox:links", "readlink", "/bin/sh") == "/bin/busybox"
    assert docker("run", "--rm", "busybox:links", "cat", "/etc/flavour") == "links"
    docker("rmi", image_id)
