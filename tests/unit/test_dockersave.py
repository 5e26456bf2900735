"""Reading `docker save` archives: the classic layout, docker 25's OCI layout,
and archives that are broken in the ways a user's file can be."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pouch.actors.image.dockersave import (
    MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP,
    SavedImage,
    open_member,
    read_archive,
)
from pouch.proto.envelope import PouchError
from pouch.tests.images import build_busybox_tarball, go_architecture
from pouch.tests.support.tars import tar_of

# A busybox archive built once per module, and its image ID.
Built = tuple[Path, str]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def read_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            info.name: tar.extractfile(info).read()  # type: ignore[union-attr]
            for info in tar.getmembers()
            if info.isreg()
        }


def config_for(*diff_ids: str) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }
    ).encode()


def oci_archive(path: Path, layer: bytes, repo_tags: list[str] | None) -> dict[str, Any]:
    """An archive laid out as docker 25+ saves it, with one gzip'd layer."""
    blob = gzip.compress(layer, mtime=0)
    config = config_for(sha256(layer))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": MEDIA_TYPE_TAR_GZIP, "digest": sha256(blob), "size": len(blob)}
            ],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha256(manifest),
                "size": len(manifest),
            }
        ],
    }

    def blob_path(data: bytes) -> str:
        return "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    saved = [{"Config": blob_path(config), "RepoTags": repo_tags, "Layers": [blob_path(blob)]}]
    write_archive(
        path,
        {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": json.dumps(index).encode(),
            blob_path(manifest): manifest,
            blob_path(config): config,
            blob_path(blob): blob,
            "manifest.json": json.dumps(saved).encode(),
        },
    )
    return {"config": config, "blob": blob, "layer": layer, "blob_path": blob_path(blob)}


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Built:
    path = tmp_path_factory.mktemp("images") / "busybox.tar"
    return path, build_busybox_tarball(path)


def only_image(path: Path) -> SavedImage:
    images = read_archive(path)
    assert len(images) == 1
    return images[0]


def assert_invalid(path: Path, *words: str) -> None:
    with pytest.raises(PouchError) as caught:
        read_archive(path)
    assert caught.value.code == "invalid"
    for word in words:
        assert word in caught.value.message


# --- the test image itself ---------------------------------------------------


def test_the_busybox_image_reads_back_with_its_id_tag_and_layer(busybox_tar: Built) -> None:
    path, image_id = busybox_tar
    image = only_image(path)
    assert image.config_digest == image_id == sha256(image.config)
    assert image.repo_tags == ["busybox:latest"]
    [layer] = image.layers
    assert layer.media_type == MEDIA_TYPE_TAR
    assert layer.digest == layer.diff_id
    with open_member(path, layer.member) as stream:
        blob = stream.read()
    assert (len(blob), sha256(blob)) == (layer.size, layer.digest)


def test_the_busybox_layer_holds_a_small_usable_root(busybox_tar: Built) -> None:
    path, _ = busybox_tar
    with (
        open_member(path, only_image(path).layers[0].member) as stream,
        tarfile.open(fileobj=stream) as layer,
    ):
        entries = {info.name: info for info in layer.getmembers()}
        passwd = layer.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        group = layer.extractfile("etc/group").read().decode()  # type: ignore[union-attr]
    names = list(entries)
    assert names == sorted(names)
    assert entries["bin/busybox"].isreg() and entries["bin/busybox"].mode == 0o755
    for applet in ["bin/sh", "usr/bin/awk", "sbin/ifconfig", "bin/ls"]:
        assert entries[applet].issym() and entries[applet].linkname == "/bin/busybox"
    assert entries["tmp"].isdir() and entries["tmp"].mode == 0o1777
    for empty in ["root", "home", "var", "proc", "sys", "dev", "etc", "usr/sbin"]:
        assert entries[empty].isdir()
    assert all(info.uid == 0 and info.gid == 0 for info in entries.values())
    assert "root:x:0:0:" in passwd and "nobody:x:65534:65534:" in passwd
    assert "nogroup:x:65534:" in group


def test_the_busybox_config_runs_sh_on_this_machine(busybox_tar: Built) -> None:
    config = json.loads(only_image(busybox_tar[0]).config)
    assert config["os"] == "linux"
    assert config["architecture"] == go_architecture()[0]
    assert config["config"]["Cmd"] == ["sh"]
    assert config["config"]["Env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ]
    assert config["rootfs"]["type"] == "layers"
    assert config["history"]


def test_building_the_same_image_twice_gives_the_same_id(tmp_path: Path) -> None:
    first = build_busybox_tarball(tmp_path / "a.tar")
    again = build_busybox_tarball(tmp_path / "b.tar")
    assert first == again
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_an_extra_file_makes_a_different_image(tmp_path: Path) -> None:
    plain = build_busybox_tarball(tmp_path / "a.tar")
    flavoured = build_busybox_tarball(tmp_path / "b.tar", extra_files={"etc/flavour": b"two"})
    assert plain != flavoured
    image = only_image(tmp_path / "b.tar")
    with (
        open_member(tmp_path / "b.tar", image.layers[0].member) as stream,
        tarfile.open(fileobj=stream) as layer,
    ):
        assert layer.extractfile("etc/flavour").read() == b"two"  # type: ignore[union-attr]


def test_a_registry_tag_without_version_gets_latest(tmp_path: Path) -> None:
    build_busybox_tarball(tmp_path / "a.tar", tag="localhost:5000/tools/bb")
    assert only_image(tmp_path / "a.tar").repo_tags == ["localhost:5000/tools/bb:latest"]
    repositories = json.loads(read_files(tmp_path / "a.tar")["repositories"])
    assert list(repositories) == ["localhost:5000/tools/bb"]


def test_an_untagged_image_has_no_repo_tags(tmp_path: Path) -> None:
    build_busybox_tarball(tmp_path / "a.tar", tag="")
    assert only_image(tmp_path / "a.tar").repo_tags == []


def test_the_cli_prints_the_image_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pouch.tests.images import main

    assert main([str(tmp_path / "x.tar"), "--tag", "bb:1"]) == 0
    image_id = capsys.readouterr().out.strip()
    image = only_image(tmp_path / "x.tar")
    assert (image.config_digest, image.repo_tags) == (image_id, ["bb:1"])


def test_the_cli_says_how_to_install_a_missing_busybox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pouch.tests import images

    monkeypatch.setattr(images, "BUSYBOX", tmp_path / "no-busybox")
    assert images.main([str(tmp_path / "x.tar")]) == 1
    assert "apt-get install busybox-static" in capsys.readouterr().err


# --- layouts that docker writes -------------------------------------------------


def test_a_docker_25_oci_archive_with_a_gzip_layer_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "oci.tar"
    made = oci_archive(path, tar_of({"hello": b"world"}), ["tiny:1"])
    image = only_image(path)
    assert image.config == made["config"]
    assert image.config_digest == sha256(made["config"])
    assert image.repo_tags == ["tiny:1"]
    [layer] = image.layers
    assert layer.member == made["blob_path"]
    assert layer.media_type == MEDIA_TYPE_TAR_GZIP
    assert (layer.digest, layer.size) == (sha256(made["blob"]), len(made["blob"]))
    assert layer.diff_id == sha256(made["layer"])
    with open_member(path, layer.member) as stream:
        assert gzip.decompress(stream.read()) == made["layer"]


def test_an_untagged_image_in_an_oci_archive_has_no_repo_tags(tmp_path: Path) -> None:
    oci_archive(tmp_path / "oci.tar", tar_of({"a": b"1"}), None)
    assert only_image(tmp_path / "oci.tar").repo_tags == []


def test_two_images_sharing_a_layer_through_a_symlink_read_it_once(tmp_path: Path) -> None:
    # Docker before 25 saves a layer once and links to it from the other image.
    layer = tar_of({"shared": b"base"})
    first, second = config_for(sha256(layer)), config_for(sha256(layer)) + b" "
    manifest = [
        {"Config": "one.json", "RepoTags": ["one:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": "two.json", "RepoTags": ["two:1", "two:latest"], "Layers": ["bbb/layer.tar"]},
    ]
    path = write_archive(
        tmp_path / "two.tar",
        {
            "manifest.json": json.dumps(manifest).encode(),
            "one.json": first,
            "two.json": second,
            "aaa/layer.tar": layer,
        },
        links={"bbb/layer.tar": "../aaa/layer.tar"},
    )
    one, two = read_archive(path)
    assert one.repo_tags == ["one:1"] and two.repo_tags == ["two:1", "two:latest"]
    assert one.config_digest != two.config_digest
    assert one.layers == two.layers
    assert one.layers[0].member == "aaa/layer.tar"


def test_an_archive_made_with_tar_dot_reads_back(tmp_path: Path, busybox_tar: Built) -> None:
    files = {f"./{name}": data for name, data in read_files(busybox_tar[0]).items()}
    path = write_archive(tmp_path / "dot.tar", files)
    assert only_image(path).config_digest == busybox_tar[1]


def test_a_gzipped_archive_reads_back(tmp_path: Path, busybox_tar: Built) -> None:
    path = tmp_path / "busybox.tar.gz"
    path.write_bytes(gzip.compress(busybox_tar[0].read_bytes()))
    image = only_image(path)
    assert image.config_digest == busybox_tar[1]
    with open_member(path, image.layers[0].member) as stream:
        assert sha256(stream.read()) == image.layers[0].digest


# --- archives that are broken -----------------------------------------------------


def busybox_parts(busybox_tar: Built) -> tuple[dict[str, Any], bytes]:
    path, _ = busybox_tar
    files = read_files(path)
    entry = json.loads(files["manifest.json"])[0]
    return entry, files[entry["Config"]]


def with_files(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    files = read_files(src)
    for name, data in changes.items():
        if data is None:
            del files[name]
        else:
            files[name] = data
    return write_archive(dst, files)


def test_a_file_that_is_not_a_tar_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "junk.tar"
    path.write_bytes(b"this is not an archive" * 100)
    assert_invalid(path, "not a readable tar archive")


def test_a_truncated_archive_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    path = tmp_path / "cut.tar"
    path.write_bytes(busybox_tar[0].read_bytes()[:1_000_000])
    with pytest.raises(PouchError) as caught:
        read_archive(path)
    assert caught.value.code == "invalid"


def test_an_archive_without_manifest_json_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {"manifest.json": None})
    assert_invalid(path, "manifest.json is missing")


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        (b"{not json", "manifest.json is not valid JSON"),
        (b'{"Config": "x"}', "not a list"),
        (b"[42]", "entry 0 is not an object"),
        (b'[{"Layers": []}]', "has no Config"),
        (b'[{"Config": "x.json"}]', "has no list of Layers"),
        (b'[{"Config": "x.json", "Layers": [], "RepoTags": "busybox"}]', "RepoTags"),
    ],
)
def test_a_garbled_manifest_json_is_invalid(
    tmp_path: Path, busybox_tar: Built, manifest: bytes, words: str
) -> None:
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {"manifest.json": manifest})
    assert_invalid(path, words)


def test_a_config_named_but_absent_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    entry, _ = busybox_parts(busybox_tar)
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {entry["Config"]: None})
    assert_invalid(path, entry["Config"], "is not in the archive")


def test_a_layer_named_but_absent_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    entry, _ = busybox_parts(busybox_tar)
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {entry["Layers"][0]: None})
    assert_invalid(path, entry["Layers"][0], "is not in the archive")


def test_a_layer_symlink_to_nowhere_is_invalid(tmp_path: Path) -> None:
    layer = tar_of({"a": b"1"})
    manifest = [{"Config": "c.json", "RepoTags": [], "Layers": ["bbb/layer.tar"]}]
    path = write_archive(
        tmp_path / "a.tar",
        {"manifest.json": json.dumps(manifest).encode(), "c.json": config_for(sha256(layer))},
        links={"bbb/layer.tar": "../aaa/layer.tar"},
    )
    assert_invalid(path, "bbb/layer.tar links to aaa/layer.tar")


def test_more_layers_than_diff_ids_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    entry, _ = busybox_parts(busybox_tar)
    entry["Layers"] = entry["Layers"] * 2
    path = with_files(
        busybox_tar[0], tmp_path / "a.tar", {"manifest.json": json.dumps([entry]).encode()}
    )
    assert_invalid(path, "lists 1 layers in rootfs.diff_ids but manifest.json names 2")


def test_a_config_without_diff_ids_is_invalid(tmp_path: Path, busybox_tar: Built) -> None:
    entry, _ = busybox_parts(busybox_tar)
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {entry["Config"]: b'{"os": "linux"}'})
    assert_invalid(path, "has no rootfs.diff_ids")


def test_a_layer_that_does_not_match_its_diff_id_is_invalid(
    tmp_path: Path, busybox_tar: Built
) -> None:
    entry, _ = busybox_parts(busybox_tar)
    other = tar_of({"tampered": b"yes"})
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {entry["Layers"][0]: other})
    assert_invalid(path, "says sha256:")


def test_an_oci_config_that_does_not_match_its_digest_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "oci.tar"
    made = oci_archive(path, tar_of({"a": b"1"}), ["tiny:1"])
    config_path = "blobs/sha256/" + hashlib.sha256(made["config"]).hexdigest()
    tampered = made["config"].replace(b"amd64", b"arm64")
    bad = with_files(path, tmp_path / "bad.tar", {config_path: tampered})
    assert_invalid(bad, config_path, "does not match its digest")


def test_an_oci_layer_that_does_not_match_its_digest_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "oci.tar"
    made = oci_archive(path, tar_of({"a": b"1"}), ["tiny:1"])
    tampered = gzip.compress(made["layer"], mtime=12345)
    bad = with_files(path, tmp_path / "bad.tar", {made["blob_path"]: tampered})
    assert_invalid(bad, made["blob_path"], "does not match its digest")


def test_a_bzip2_layer_is_refused_by_name_of_its_compression(tmp_path: Path) -> None:
    layer = tar_of({"a": b"1"})
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    path = write_archive(
        tmp_path / "a.tar",
        {
            "manifest.json": json.dumps(manifest).encode(),
            "c.json": config_for(sha256(layer)),
            "l/layer.tar": bz2.compress(layer),
        },
    )
    assert_invalid(path, "bzip2")


def test_reading_a_member_of_a_truncated_archive_is_invalid(
    tmp_path: Path, busybox_tar: Built
) -> None:
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(busybox_tar[0].read_bytes())[:600_000])
    member = read_archive(busybox_tar[0])[0].layers[0].member
    with pytest.raises(PouchError) as caught, open_member(path, member) as stream:
        stream.read()
    assert caught.value.code == "invalid"


def test_opening_a_member_that_is_not_there_is_invalid(busybox_tar: Built) -> None:
    with pytest.raises(PouchError) as caught:
        open_member(busybox_tar[0], "nope/layer.tar")
    assert caught.value.code == "invalid"
    assert "nope/layer.tar" in caught.value.message


# --- OCI image layouts, with index.json and no manifest.json ------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


def blob_path(data: bytes) -> str:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **fields: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **fields}


def image_blobs(layer: bytes) -> tuple[bytes, dict[str, bytes]]:
    """An image manifest over one gzip'd layer, and the blobs it needs, itself included."""
    blob = gzip.compress(layer, mtime=0)
    config = config_for(sha256(layer))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor(MEDIA_TYPE_TAR_GZIP, blob)],
        }
    ).encode()
    return manifest, {blob_path(data): data for data in (manifest, config, blob)}


def index_of(descriptors: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    ).encode()


def layout_archive(path: Path, index: bytes, blobs: dict[str, bytes]) -> Path:
    """An archive as `ctr images export --skip-manifest-json` writes one."""
    return write_archive(
        path, {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index, **blobs}
    )


def platform(name: str) -> dict[str, str]:
    os, architecture, *variant = name.split("/")
    return {"os": os, "architecture": architecture, **({"variant": variant[0]} if variant else {})}


@pytest.mark.parametrize(
    ("annotations", "names"),
    [
        (
            {CONTAINERD_NAME: "docker.io/library/tiny:1", REF_NAME: "1"},
            ["docker.io/library/tiny:1"],
        ),
        ({REF_NAME: "example/tiny:1"}, ["example/tiny:1"]),
        ({REF_NAME: "latest"}, []),
        ({}, []),
    ],
    ids=["containerd-name", "whole-ref-name", "bare-tag", "none"],
)
def test_an_oci_layout_loads_named_by_its_annotations(
    tmp_path: Path, annotations: dict[str, str], names: list[str]
) -> None:
    layer = tar_of({"hello": b"layout"})
    manifest, blobs = image_blobs(layer)
    index = index_of([descriptor(OCI_MANIFEST, manifest, annotations=annotations)])
    path = layout_archive(tmp_path / "layout.tar", index, blobs)

    image = only_image(path)
    assert image.repo_tags == names
    assert image.config == config_for(sha256(layer))
    [saved] = image.layers
    assert saved.media_type == MEDIA_TYPE_TAR_GZIP and saved.diff_id == sha256(layer)
    with open_member(path, saved.member) as stream:
        assert gzip.decompress(stream.read()) == layer


def test_descriptors_of_one_manifest_make_one_image_with_every_name(tmp_path: Path) -> None:
    first, first_blobs = image_blobs(tar_of({"a": b"1"}))
    second, second_blobs = image_blobs(tar_of({"b": b"2"}))
    index = index_of(
        [
            descriptor(OCI_MANIFEST, first, annotations={REF_NAME: "one:1"}),
            descriptor(OCI_MANIFEST, second, annotations={CONTAINERD_NAME: "two:1"}),
            descriptor(OCI_MANIFEST, first, annotations={CONTAINERD_NAME: "one:latest"}),
            descriptor(OCI_MANIFEST, first, annotations={REF_NAME: "one:1"}),
        ]
    )
    path = layout_archive(tmp_path / "layout.tar", index, {**first_blobs, **second_blobs})
    one, two = read_archive(path)
    assert one.repo_tags == ["one:1", "one:latest"]
    assert two.repo_tags == ["two:1"]


def test_a_nested_index_gives_its_linux_amd64_image(tmp_path: Path) -> None:
    # As `ctr images export --platform` writes it: the other platform's blobs are absent.
    arm, _ = image_blobs(tar_of({"arch": b"arm64"}))
    amd, blobs = image_blobs(tar_of({"arch": b"amd64"}))
    nested = index_of(
        [
            descriptor(OCI_MANIFEST, arm, platform=platform("linux/arm64/v8")),
            descriptor(OCI_MANIFEST, amd, platform=platform("linux/amd64")),
        ]
    )
    index = index_of([descriptor(OCI_INDEX, nested, annotations={REF_NAME: "multi:1"})])
    path = layout_archive(tmp_path / "layout.tar", index, {blob_path(nested): nested, **blobs})
    image = only_image(path)
    assert image.repo_tags == ["multi:1"]
    assert image.config == config_for(sha256(tar_of({"arch": b"amd64"})))


def test_an_index_without_linux_amd64_is_invalid_naming_its_platforms(tmp_path: Path) -> None:
    arm, blobs = image_blobs(tar_of({"a": b"1"}))
    nested = index_of(
        [
            descriptor(OCI_MANIFEST, arm, platform=platform("linux/arm64/v8")),
            descriptor(OCI_MANIFEST, arm, platform=platform("windows/amd64")),
        ]
    )
    index = index_of([descriptor(OCI_INDEX, nested)])
    path = layout_archive(tmp_path / "layout.tar", index, {blob_path(nested): nested, **blobs})
    assert_invalid(path, "no linux/amd64 manifest", "linux/arm64/v8", "windows/amd64")


def test_index_json_listing_only_other_platforms_is_invalid(tmp_path: Path) -> None:
    arm, blobs = image_blobs(tar_of({"a": b"1"}))
    index = index_of([descriptor(OCI_MANIFEST, arm, platform=platform("linux/s390x"))])
    path = layout_archive(tmp_path / "layout.tar", index, blobs)
    assert_invalid(path, "index.json has no linux/amd64 manifest", "linux/s390x")


@pytest.mark.parametrize(
    ("change", "words"),
    [("digest", "does not match its digest"), ("size", "bytes, but index.json says")],
)
def test_a_manifest_blob_unlike_its_descriptor_is_invalid(
    tmp_path: Path, change: str, words: str
) -> None:
    manifest, blobs = image_blobs(tar_of({"a": b"1"}))
    named = descriptor(OCI_MANIFEST, manifest)
    if change == "digest":
        # Same size, other bytes: only the digest can tell.
        blobs[blob_path(manifest)] = manifest.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    else:
        named["size"] += 1
    path = layout_archive(tmp_path / "layout.tar", index_of([named]), blobs)
    assert_invalid(path, blob_path(manifest), words)


def garbled_indexes() -> list[tuple[bytes, str]]:
    manifest, _ = image_blobs(tar_of({"a": b"1"}))
    good = descriptor(OCI_MANIFEST, manifest)
    return [
        (b"{not json", "index.json is not valid JSON"),
        (b'{"schemaVersion": 2}', "index.json has no manifests list"),
        (b'{"manifests": [42]}', "index.json has no manifests list"),
        (index_of([{**good, "mediaType": "text/plain"}]), "unknown media type 'text/plain'"),
        (index_of([{**good, "digest": "sha256:abc"}]), "malformed digest 'sha256:abc'"),
        (index_of([{**good, "digest": "md5:" + "0" * 32}]), "malformed digest"),
        (index_of([{**good, "size": "big"}]), "a size of 'big'"),
        (index_of([descriptor(OCI_MANIFEST, b"{}")]), "is not in the archive"),
    ]


@pytest.mark.parametrize(("index", "words"), garbled_indexes())
def test_a_garbled_index_json_is_invalid(tmp_path: Path, index: bytes, words: str) -> None:
    _, blobs = image_blobs(tar_of({"a": b"1"}))
    assert_invalid(layout_archive(tmp_path / "layout.tar", index, blobs), words)


def test_indexes_nested_too_deep_are_invalid(tmp_path: Path) -> None:
    manifest, blobs = image_blobs(tar_of({"a": b"1"}))
    inner = descriptor(OCI_MANIFEST, manifest, platform=platform("linux/amd64"))
    for _ in range(5):
        nested = index_of([inner])
        blobs[blob_path(nested)] = nested
        inner = descriptor(OCI_INDEX, nested, platform=platform("linux/amd64"))
    path = layout_archive(tmp_path / "layout.tar", index_of([inner]), blobs)
    assert_invalid(path, "nested too deep")


# --- names that reach outside the archive or the root: refused, never clamped ---------


def classic_archive(path: Path, manifest: list[dict[str, Any]], files: dict[str, bytes],
                    links: dict[str, str] | None = None) -> Path:
    return write_archive(path, {"manifest.json": json.dumps(manifest).encode(), **files}, links)


@pytest.mark.parametrize(("field", "name"), [("Layers", "../layer.tar"), ("Layers", "/layer.tar"),
                                             ("Config", "../c.json"), ("Config", "/c.json")])
def test_manifest_json_naming_a_path_outside_the_archive_is_refused(
    tmp_path: Path, field: str, name: str
) -> None:
    layer = tar_of({"a": b"1"})
    entry = {"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["layer.tar"]}
    entry[field] = [name] if field == "Layers" else name
    # What clamping the name would find is there: only a refusal fails this load.
    files = {"c.json": config_for(sha256(layer)), "layer.tar": layer}
    assert_invalid(classic_archive(tmp_path / "a.tar", [entry], files), f'"{name}"', "outside")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "../aaa/../../outside"])
def test_a_layer_that_links_outside_the_archive_is_refused(tmp_path: Path, target: str) -> None:
    layer = tar_of({"a": b"1"})
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["bbb/layer.tar"]}]
    files = {"c.json": config_for(sha256(layer)), "etc/passwd": layer, "outside": layer}
    path = classic_archive(tmp_path / "a.tar", manifest, files, links={"bbb/layer.tar": target})
    assert_invalid(path, "bbb/layer.tar", f'links to "{target}"', "outside the archive")


def test_an_archive_member_named_above_its_root_is_refused(
    tmp_path: Path, busybox_tar: Built
) -> None:
    path = with_files(busybox_tar[0], tmp_path / "a.tar", {"../../escaped.json": b"{}"})
    assert_invalid(path, '"../../escaped.json"')


@pytest.mark.parametrize(("hostile", "words"), [
    ({"../evil": b"x"}, 'member "../evil" escapes the root file system'),
    ({"/etc/cron.d/evil": b"x"}, 'member "/etc/cron.d/evil" escapes the root file system'),
])
def test_a_layer_with_a_member_outside_the_root_is_refused_naming_it(
    tmp_path: Path, hostile: dict[str, bytes], words: str
) -> None:
    layer = tar_of({"ok": b"1", **hostile})
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    files = {"c.json": config_for(sha256(layer)), "l/layer.tar": layer}
    assert_invalid(classic_archive(tmp_path / "a.tar", manifest, files),
                   f"layer l/layer.tar {words}")


def test_a_gzipd_oci_layer_with_an_escaping_symlink_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, target in [("bin/sh", "/bin/busybox"), ("etc/x/shadow", "../../../shadow")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    made = oci_archive(tmp_path / "oci.tar", buf.getvalue(), ["tiny:1"])
    assert_invalid(tmp_path / "oci.tar", f'layer {made["blob_path"]} member "etc/x/shadow"',
                   '"../../../shadow"')


def test_a_layer_that_is_not_a_tar_is_refused_naming_it(tmp_path: Path) -> None:
    junk = b"no tar here\n" * 100
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    files = {"c.json": config_for(sha256(junk)), "l/layer.tar": junk}
    assert_invalid(classic_archive(tmp_path / "a.tar", manifest, files),
                   "layer l/layer.tar is not a tar archive")


def test_an_empty_layer_blob_reads_as_an_empty_layer(tmp_path: Path) -> None:
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"]}]
    files = {"c.json": config_for(sha256(b"")), "l/layer.tar": b""}
    [layer] = only_image(classic_archive(tmp_path / "a.tar", manifest, files)).layers
    assert (layer.size, layer.digest, layer.media_type) == (0, sha256(b""), MEDIA_TYPE_TAR)
