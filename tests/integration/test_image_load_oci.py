"""`docker load` of OCI image layouts: index.json and blobs, no manifest.json, as
`ctr images export --skip-manifest-json`, skopeo's `oci-archive:` and buildkit write them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import docker
import pytest

from pouch.tests.support.containerd import ContainerdHandle
from pouch.tests.support.daemon import PouchDaemon
from pouch.tests.support.tools import require

EXPORTED = "docker.io/library/oci-busybox:1"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ctr(containerd: ContainerdHandle, *args: str) -> str:
    program = require("ctr", "containerd")
    done = subprocess.run([program, "-a", str(containerd.address), "-n", "export", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(scope="module")
def ctr_export(containerd: ContainerdHandle, busybox_tarball: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox as oci-busybox:1, exported by ctr (as it is: see ctr_layout)."""
    ctr(containerd, "images", "import", "--no-unpack", str(busybox_tarball))
    ctr(containerd, "images", "tag", "docker.io/library/busybox:latest", EXPORTED)
    exported = tmp_path_factory.mktemp("ctr") / "exported.tar"
    ctr(containerd, "images", "export", "--skip-manifest-json", str(exported), EXPORTED)
    return exported


@pytest.fixture(scope="module")
def ctr_layout(ctr_export: Path) -> Path:
    """ctr's export as an OCI image layout alone. containerd before 1.7 still writes a
    manifest.json, without the names, for an image that is no index (containerd#8213);
    without it the archive is what later ones write."""
    exported = ctr_export
    with tarfile.open(exported) as tar:
        files = {info.name: tar.extractfile(info).read()  # type: ignore[union-attr]
                 for info in tar.getmembers() if info.isreg() and info.name != "manifest.json"}
    assert "index.json" in files
    return write_tar(exported.with_name("layout.tar"), files)


def test_a_ctr_export_loads_with_the_docker_cli_and_runs(pouchd: PouchDaemon, ctr_layout: Path):
    image_id = pouchd.inspect("busybox")["Id"]
    pouchd.docker("rmi", "busybox")  # so that every blob must come from the archive

    assert "Loaded image: oci-busybox:1" in pouchd.docker("load", "-i", str(ctr_layout))

    assert pouchd.inspect("oci-busybox:1")["Id"] == image_id
    assert pouchd.docker("run", "--rm", "oci-busybox:1", "echo", "hi") == "hi"


def test_ctrs_export_as_it_is_loads_named_from_its_index(pouchd: PouchDaemon,
                                                          ctr_export: Path):
    with tarfile.open(ctr_export) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] is None  # what this test is about

    assert "Loaded image: oci-busybox:1" in pouchd.docker("load", "-i", str(ctr_export))


def test_a_ctr_export_loads_with_docker_py(pouchd: PouchDaemon, ctr_layout: Path):
    client = docker.DockerClient(base_url=pouchd.host, version="1.41", timeout=60)
    try:
        client.images.remove("busybox")
        [image] = client.images.load(ctr_layout.read_bytes())
        assert image.tags == ["oci-busybox:1"]
        assert client.containers.run("oci-busybox:1", ["echo", "hi"], remove=True) == b"hi\n"
    finally:
        client.close()


def descriptor(media_type: str, data: bytes, **fields: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **fields}


def test_a_layout_named_by_its_ref_name_is_listed(pouchd: PouchDaemon, tmp_path: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/greeting")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    layer = gzip.compress(buf.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(buf.getvalue())]}}
                        ).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [descriptor(
        "application/vnd.oci.image.manifest.v1+json", manifest,
        annotations={"org.opencontainers.image.ref.name": "example/oci:1"})]}).encode()
    archive = write_tar(tmp_path / "layout.tar", {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index,
        **{f"blobs/sha256/{sha256(blob)[7:]}": blob for blob in (manifest, config, layer)}})

    assert "Loaded image: example/oci:1" in pouchd.docker("load", "-i", str(archive))

    listed = pouchd.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert f"example/oci:1 {sha256(config)[7:19]}" in listed.splitlines()
