"""Loading a docker-save archive into a real containerd: blobs, snapshots, names."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import tempfile
from pathlib import Path

import pytest

from pouch.actors.containerd.client import Containerd
from pouch.actors.image.dockersave import SavedImage, read_archive
from pouch.actors.image.store import (
    CONFIG_MEDIA_TYPE,
    GC_REF_CONFIG,
    MANIFEST_MEDIA_TYPE,
    chain_ids,
    image_rootfs_chain,
    import_image,
    remove_image,
)
from pouch.proto.envelope import PouchError
from pouch.tests.images import BUSYBOX, build_busybox_tarball
from pouch.tests.support.containerd import ContainerdProcess
from pouch.tests.support.tools import require_file

BUSYBOX_NAME = "docker.io/library/busybox:latest"


def busybox_archive(where: Path, tag: str = "busybox:latest") -> tuple[Path, SavedImage]:
    """A busybox image of its own (an extra file makes its layer unique to the test)."""
    require_file(BUSYBOX, "busybox-static")
    archive = where / "image.tar"
    marker = secrets.token_hex(8).encode()
    build_busybox_tarball(archive, tag=tag, extra_files={"etc/marker": marker})
    [image] = read_archive(archive)
    return archive, image


def collect_garbage(ctrd: Containerd) -> None:
    """containerd collects garbage synchronously when a lease is deleted with sync."""
    ctrd.leases.delete(ctrd.leases.create(), sync=True)


def snapshot_names(ctrd: Containerd) -> set[str]:
    return {info.name for info in ctrd.snapshots.list()}


def test_chain_ids_follow_the_oci_rule() -> None:
    one, two = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    second = "sha256:" + hashlib.sha256(f"{one} {two}".encode()).hexdigest()
    assert chain_ids([one, two]) == [one, second]
    assert image_rootfs_chain({"rootfs": {"type": "layers", "diff_ids": [one, two]}}) == second
    assert image_rootfs_chain({"rootfs": {"type": "layers", "diff_ids": []}}) == ""


def test_loaded_image_is_named_stored_and_unpacked(ctrd: Containerd, tmp_path: Path) -> None:
    archive, image = busybox_archive(tmp_path)
    name = f"docker.io/library/busybox-{secrets.token_hex(4)}:latest"

    imported = import_image(ctrd, archive, image, [name])

    assert imported.id == image.config_digest
    assert imported.names == [name]
    assert imported.chain_id == image_rootfs_chain(json.loads(image.config))
    assert imported.size > 1_000_000  # busybox itself
    record = ctrd.images.get(name)
    assert record is not None
    assert record.target["digest"] == imported.manifest_digest
    assert record.target["media_type"] == MANIFEST_MEDIA_TYPE

    manifest = json.loads(ctrd.content.read(imported.manifest_digest))
    assert manifest["config"] == {
        "mediaType": CONFIG_MEDIA_TYPE,
        "digest": image.config_digest,
        "size": len(image.config),
    }
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.digest for layer in image.layers
    ]
    assert ctrd.content.read(image.config_digest) == image.config
    manifest_info = ctrd.content.info(imported.manifest_digest)
    assert manifest_info is not None
    assert manifest_info.labels[GC_REF_CONFIG] == image.config_digest
    config_info = ctrd.content.info(image.config_digest)
    assert config_info is not None
    assert config_info.labels["containerd.io/gc.ref.snapshot.overlayfs"] == imported.chain_id

    top = ctrd.snapshots.stat(imported.chain_id)
    assert top is not None and top.kind == "committed"
    assert not any(key.startswith("extract-") for key in snapshot_names(ctrd))


def test_unpacked_image_survives_garbage_collection(ctrd: Containerd, tmp_path: Path) -> None:
    archive, image = busybox_archive(tmp_path)
    name = f"docker.io/library/kept-{secrets.token_hex(4)}:latest"
    imported = import_image(ctrd, archive, image, [name])

    # First show that a collection really runs: an unreferenced snapshot goes.
    with ctrd.leases.hold() as lease:
        key = f"scratch-{secrets.token_hex(4)}"
        ctrd.snapshots.prepare(f"{key}-active", lease=lease)
        ctrd.snapshots.commit(key, f"{key}-active", lease=lease)
    collect_garbage(ctrd)
    assert ctrd.snapshots.stat(key) is None

    assert ctrd.snapshots.stat(imported.chain_id) is not None
    for digest in (imported.manifest_digest, image.config_digest, image.layers[0].digest):
        assert ctrd.content.info(digest) is not None

    remove_image(ctrd, name, sync=True)
    assert ctrd.images.get(name) is None
    assert ctrd.snapshots.stat(imported.chain_id) is None
    assert ctrd.content.info(imported.manifest_digest) is None
    assert ctrd.content.info(image.layers[0].digest) is None


def test_image_survives_a_containerd_restart(tmp_path: Path) -> None:
    # A daemon of its own: restarting the module's would disturb the other tests.
    process = ContainerdProcess(Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp")))
    try:
        ctrd = process.start().client()
        archive, image = busybox_archive(tmp_path)
        imported = import_image(ctrd, archive, image, [BUSYBOX_NAME])

        process.restart()
        ctrd.wait_ready(timeout=10)
        collect_garbage(ctrd)

        record = ctrd.images.get(BUSYBOX_NAME)
        assert record is not None and record.target["digest"] == imported.manifest_digest
        assert ctrd.snapshots.stat(imported.chain_id) is not None
    finally:
        process.stop()


def test_importing_twice_changes_nothing(ctrd: Containerd, tmp_path: Path) -> None:
    archive, image = busybox_archive(tmp_path)
    name = f"docker.io/library/twice-{secrets.token_hex(4)}:latest"
    first = import_image(ctrd, archive, image, [name])
    snapshots = snapshot_names(ctrd)

    second = import_image(ctrd, archive, image, [name])

    assert second == first
    assert snapshot_names(ctrd) == snapshots
    record = ctrd.images.get(name)
    assert record is not None and record.target["digest"] == first.manifest_digest


def test_untagged_image_is_kept_under_its_id(ctrd: Containerd, tmp_path: Path) -> None:
    archive, image = busybox_archive(tmp_path, tag="")
    assert image.repo_tags == []

    imported = import_image(ctrd, archive, image, [])

    assert imported.names == []
    assert ctrd.images.get(image.config_digest) is not None
    collect_garbage(ctrd)
    assert ctrd.snapshots.stat(imported.chain_id) is not None

    # Once it has a name, the ID stands in for one no longer.
    name = f"docker.io/library/named-{secrets.token_hex(4)}:v1"
    import_image(ctrd, archive, image, [name])
    assert ctrd.images.get(image.config_digest) is None
    assert ctrd.images.get(name) is not None


def test_layer_that_does_not_match_its_diff_id_is_refused(ctrd: Containerd, tmp_path: Path) -> None:
    archive, image = busybox_archive(tmp_path)
    wrong = "sha256:" + "0" * 64
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] = [wrong]
    config_bytes = json.dumps(config).encode()
    forged = dataclasses.replace(
        image,
        config=config_bytes,
        config_digest="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
        layers=[dataclasses.replace(image.layers[0], diff_id=wrong)],
    )
    before = snapshot_names(ctrd)

    with pytest.raises(PouchError) as raised:
        import_image(ctrd, archive, forged, ["docker.io/library/forged:latest"])

    assert raised.value.code == "invalid"
    assert wrong in raised.value.message
    assert ctrd.images.get("docker.io/library/forged:latest") is None
    assert snapshot_names(ctrd) == before
