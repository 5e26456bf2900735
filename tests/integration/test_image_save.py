"""`docker save`: images out of containerd into an archive that `docker load` reads back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.dockerexport import ImageToSave, write_archive
from pouch.actors.image.dockersave import MEDIA_TYPE_TAR, read_archive
from pouch.actors.image.store import MANIFEST_MEDIA_TYPE, import_image
from pouch.tests.images import build_busybox_tarball
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.tars import tar_of
from pouch.tests.support.tools import require


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {info.name: info for info in tar.getmembers()}


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        stream = tar.extractfile(name)
        assert stream is not None, name
        return stream.read()


def check_archive(archive: Path) -> list[dict[str, Any]]:
    """The archive's manifest.json, once every layer.tar is found to be the uncompressed
    layer its image's config names."""
    manifest = json.loads(read_member(archive, "manifest.json"))
    for entry in manifest:
        config = json.loads(read_member(archive, entry["Config"]))
        assert sha256(read_member(archive, entry["Config"])) == \
            "sha256:" + entry["Config"].removesuffix(".json")
        layers = [sha256(read_member(archive, layer)) for layer in entry["Layers"]]
        assert layers == config["rootfs"]["diff_ids"]
    return manifest


def docker_bytes(pouchd: PouchDaemon, script: str) -> subprocess.CompletedProcess[bytes]:
    """Run a shell line of docker commands (pipes, redirections) against `pouchd`."""
    require("docker", "docker.io")
    env = pouchd.cli_env()
    return subprocess.run(["sh", "-c", script], capture_output=True, env=env, timeout=120)


# -- with the docker CLI -----------------------------------------------------


def test_a_saved_image_loads_back_after_it_was_removed(pouchd: PouchDaemon, tmp_path: Path):
    archive = tmp_path / "busybox.tar"
    pouchd.docker("save", "busybox", "-o", str(archive))
    image_id = pouchd.inspect("busybox")["Id"]

    pouchd.docker("rmi", "busybox")
    assert "Loaded image: busybox:latest" in pouchd.docker("load", "-i", str(archive))

    assert pouchd.inspect("busybox")["Id"] == image_id
    assert pouchd.docker("run", "--rm", "busybox", "echo", "ok") == "ok"
    [entry] = check_archive(archive)
    assert entry["RepoTags"] == ["busybox:latest"]
    assert entry["Config"] == image_id.removeprefix("sha256:") + ".json"


def test_save_to_stdout_feeds_load(pouchd: PouchDaemon, tmp_path: Path):
    piped = docker_bytes(pouchd, "docker save busybox | docker load")
    assert piped.returncode == 0, piped.stderr
    assert b"Loaded image: busybox:latest" in piped.stdout

    archive = tmp_path / "out.tar"
    saved = docker_bytes(pouchd, f"docker save busybox > {archive}")
    assert saved.returncode == 0, saved.stderr
    pouchd.docker("rmi", "busybox")
    loaded = docker_bytes(pouchd, f"docker load < {archive}")
    assert loaded.returncode == 0, loaded.stderr
    assert pouchd.docker("run", "--rm", "busybox", "echo", "ok") == "ok"


def test_several_names_and_images_go_in_one_archive(pouchd: PouchDaemon, tmp_path: Path):
    other = tmp_path / "other.tar"
    build_busybox_tarball(other, tag="other:1", extra_files={"etc/other": b"other"})
    pouchd.docker("load", "-i", str(other))
    pouchd.docker("tag", "busybox", "busybox:second")
    pouchd.docker("tag", "busybox", "mirror/busybox:v1")
    archive = tmp_path / "all.tar"

    pouchd.docker("save", "-o", str(archive), "busybox", "mirror/busybox:v1", "other:1")

    manifest = check_archive(archive)
    # A repository without a tag stands for all its tags, as with dockerd.
    assert [sorted(entry["RepoTags"]) for entry in manifest] == [
        ["busybox:latest", "busybox:second", "mirror/busybox:v1"], ["other:1"]]
    repositories = json.loads(read_member(archive, "repositories"))
    assert set(repositories) == {"busybox", "mirror/busybox", "other"}
    assert repositories["busybox"]["latest"] == manifest[0]["Layers"][-1].split("/")[0]
    found = members(archive)
    for entry in manifest:
        folder = entry["Layers"][0].split("/")[0]
        assert found[f"{folder}/VERSION"].size == 3
        assert json.loads(read_member(archive, f"{folder}/json"))["id"] == folder

    pouchd.docker("rmi", "busybox:second", "mirror/busybox:v1", "other:1")
    loaded = pouchd.docker("load", "-i", str(archive))
    for name in ("busybox:latest", "busybox:second", "mirror/busybox:v1", "other:1"):
        assert f"Loaded image: {name}" in loaded
    assert pouchd.docker("run", "--rm", "other:1", "cat", "/etc/other") == "other"


def test_an_image_saved_by_id_is_loaded_untagged(pouchd: PouchDaemon, tmp_path: Path):
    image_id = pouchd.inspect("busybox")["Id"]
    archive = tmp_path / "by-id.tar"
    pouchd.docker("save", "-o", str(archive), image_id.removeprefix("sha256:")[:12])
    [entry] = check_archive(archive)
    assert entry["RepoTags"] is None
    assert f"Loaded image ID: {image_id}" in pouchd.docker("load", "-i", str(archive))


def test_an_unknown_image_is_no_such_image(pouchd: PouchDaemon, tmp_path: Path):
    archive = tmp_path / "none.tar"
    result = pouchd.docker_result("save", "-o", str(archive), "busybox", "nosuch:1")
    assert result.returncode == 1
    assert "No such image: nosuch:1" in result.stderr
    assert not archive.exists()
    # Nothing is left behind in the daemon's spool either.
    assert list((pouchd.home / "tmp").glob("save-*")) == []


def test_docker_py_streams_an_image(pouchd: PouchDaemon, tmp_path: Path):
    client = docker.APIClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        chunks = client.get_image("busybox", chunk_size=64 * 1024)
        archive = tmp_path / "py.tar"
        with archive.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
    finally:
        client.close()
    [entry] = check_archive(archive)
    assert entry["RepoTags"] == ["busybox:latest"]
    assert list((pouchd.home / "tmp").glob("save-*")) == []


# -- write_archive against containerd ----------------------------------------


def zstd(data: bytes) -> bytes:
    program = require("zstd", "zstd")
    return subprocess.run([program, "-q", "-c"], input=data, capture_output=True,
                          check=True).stdout


def gzip_twice(data: bytes) -> bytes:
    # Two gzip members one after the other, which is still one gzip stream.
    half = len(data) // 2
    return gzip.compress(data[:half], mtime=0) + gzip.compress(data[half:], mtime=0)


def layered_archive(path: Path, images: list[tuple[str, list[bytes]]],
                    compress: Callable[[bytes], bytes]) -> None:
    """A docker-save archive of images (tag, uncompressed layers) whose layer blobs are
    compressed with `compress`; images that share a layer share its blob."""
    files: dict[str, bytes] = {}
    manifest = []
    for tag, layers in images:
        config = json.dumps({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Labels": {
                "tag": tag}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }).encode()
        names = []
        for layer in layers:
            name = f"{hashlib.sha256(layer).hexdigest()}/layer.tar"
            files[name] = compress(layer)
            names.append(name)
        files[f"{sha256(config)[7:]}.json"] = config
        manifest.append({"Config": f"{sha256(config)[7:]}.json", "RepoTags": [tag],
                         "Layers": names})
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


@pytest.mark.parametrize("compress", [lambda data: data, gzip_twice, zstd],
                         ids=["plain", "gzip", "zstd"])
def test_layers_are_saved_uncompressed_whatever_their_blobs(
        ctrd: Containerd, tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:
    base = tar_of({"etc/base": os.urandom(300_000), "etc/name": tmp_path.name.encode()})
    top = tar_of({"etc/top": os.urandom(3_000_000)})  # more than one Read window below
    other = tar_of({"etc/other": os.urandom(1000)})
    source = tmp_path / "source.tar"
    layered_archive(source, [("one:1", [base, top]), ("two:1", [base, top, other])], compress)
    wanted = []
    for saved in read_archive(source):
        imported = import_image(ctrd, source, saved, [f"docker.io/library/{saved.repo_tags[0]}"])
        target: Descriptor = {"media_type": MANIFEST_MEDIA_TYPE,
                              "digest": imported.manifest_digest, "size": 0}
        wanted.append(ImageToSave(saved.config_digest, target, saved.repo_tags))
    archive = tmp_path / "saved.tar"

    with archive.open("w+b") as out:
        write_archive(ctrd, wanted, out)

    back = read_archive(archive)
    assert [image.config_digest for image in back] == [image.id for image in wanted]
    assert [image.repo_tags for image in back] == [["one:1"], ["two:1"]]
    for image in back:
        assert all(layer.media_type == MEDIA_TYPE_TAR for layer in image.layers)
        assert [layer.digest for layer in image.layers] == \
            [layer.diff_id for layer in image.layers]
    manifest = check_archive(archive)
    # The shared lower layer is one folder; the top of one image, which the other has
    # below its own top, is written once and linked to.
    assert manifest[0]["Layers"][0] == manifest[1]["Layers"][0]
    found = members(archive)
    links = [info for info in found.values() if info.issym()]
    assert len(links) == 1 and links[0].name == manifest[1]["Layers"][1]
    assert sum(1 for info in found.values() if info.isreg() and info.name.endswith(
        "/layer.tar")) == 3
    parent = json.loads(read_member(archive, manifest[1]["Layers"][2].replace(
        "layer.tar", "json")))["parent"]
    assert parent == manifest[1]["Layers"][1].split("/")[0]


def test_a_blob_reads_in_windows(ctrd: Containerd, tmp_path: Path) -> None:
    data = os.urandom(2_500_000)
    digest = sha256(data)
    with ctrd.leases.hold() as lease:
        ctrd.content.write(f"window-{digest}", data, len(data), digest, lease=lease)
        chunks = list(ctrd.content.read_stream(digest, window=1_000_000))
        assert b"".join(chunks) == data
        assert max(len(chunk) for chunk in chunks) <= 1_000_000
