"""The image index: names move between images, lookups by reference and ID prefix, and
which names go with a removal, as dockerd decides."""

from __future__ import annotations

import pytest

from pouch.actors.image import reference
from pouch.actors.image.index import ImageIndex, unix_time
from pouch.proto.envelope import PouchError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
REPO = "docker.io/library/busybox"
DIGEST = "sha256:" + "d" * 64


def index_of_two() -> ImageIndex:
    index = ImageIndex("docker.io")
    index.add(A, {"created": "2024-01-02T03:04:05Z"}, "chain-a", 10, [f"{REPO}:latest"])
    index.add(B, {}, "chain-b", 20, [f"{REPO}:old"])
    return index


def test_a_name_given_to_another_image_leaves_the_first():
    index = index_of_two()
    index.add(B, {}, "chain-b", 0, [f"{REPO}:latest"])
    assert index.get(A).names == set()  # type: ignore[union-attr]
    assert index.named(f"{REPO}:latest") is index.get(B)
    assert index.get(B).size == 20  # type: ignore[union-attr]  # 0 keeps the known size


def test_find_takes_a_familiar_name_a_full_id_or_a_unique_prefix():
    index = index_of_two()
    assert index.find("busybox").id == A
    assert index.find(B).id == B
    assert index.find("bbbb").id == B
    with pytest.raises(PouchError) as missing:
        index.find("busybox:nope")
    assert missing.value.code == "not_found"


def test_a_tags_digests_go_with_the_last_tag_of_its_repository():
    index = ImageIndex("docker.io")
    image = index.add(A, {}, "c", 1, [f"{REPO}:latest", f"{REPO}:v1", f"{REPO}@{DIGEST}",
                                     "docker.io/other/name:1"])
    assert index.dropped_with(image, f"{REPO}:latest") == {f"{REPO}:latest"}
    index.drop(A, {f"{REPO}:latest"}, deleted=False)
    assert index.dropped_with(image, f"{REPO}:v1") == {f"{REPO}:v1", f"{REPO}@{DIGEST}"}


def test_tags_of_a_repository_and_where_a_push_may_mount_from():
    index = ImageIndex("docker.io")
    image = index.add(A, {}, "c", 1, ["reg.example/team/app:1", "reg.example/base/app:1",
                                      "other.example/app:1", "reg.example/team/app@" + DIGEST])
    assert [name for _, name in index.tagged("reg.example/team/app")] == [
        "reg.example/team/app:1"]
    target = reference.parse("reg.example/team/app", "docker.io", default_tag=None)
    assert index.mountable_from(image, target) == ["base/app"]


def test_created_times_read_as_unix_seconds():
    assert index_of_two().get(A).created == 1704164645  # type: ignore[union-attr]
    assert unix_time(None) == unix_time("yesterday") == 0


@pytest.mark.parametrize(("names", "single"), [
    ([f"{REPO}:latest"], True),
    ([f"{REPO}:latest", f"{REPO}@{DIGEST}"], True),
    ([f"{REPO}@{DIGEST}", f"{REPO}@sha256:{'e' * 64}"], True),
    ([f"{REPO}:latest", f"{REPO}:2b"], False),  # two tags, one repository
    ([f"{REPO}:latest", f"docker.io/other/box@{DIGEST}"], False),
    ([f"{REPO}@{DIGEST}", f"docker.io/other/box@{DIGEST}"], False),
    ([], False),
])
def test_an_id_alone_drops_one_tag_and_its_repositorys_digests(names: list[str], single: bool):
    index = ImageIndex("docker.io")
    image = index.add(A, {}, "chain-a", 10, names)
    assert index.single_reference(image) is single


def test_a_platform_the_image_is_not_of_is_not_found() -> None:
    from pouch.actors.image.actor import check_platform

    amd64 = {"os": "linux", "architecture": "amd64"}
    for same in ("linux", "linux/amd64", "Linux/x86_64"):
        check_platform("busybox", same, amd64)
    with pytest.raises(PouchError) as other:
        check_platform("busybox", "linux/arm64", amd64)
    assert other.value.code == "not_found"
    assert other.value.message.endswith("wanted linux/arm64, actual: linux/amd64")
    with pytest.raises(PouchError) as bad:
        check_platform("busybox", "linux//", amd64)
    assert bad.value.code == "invalid"
