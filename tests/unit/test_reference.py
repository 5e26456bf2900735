"""Image references as users type them, and as docker normalizes and prints them."""

from __future__ import annotations

import pytest

from pouch.actors.image.reference import Reference, familiar_name, parse
from pouch.proto.envelope import PouchError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("typed", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:musl", "docker.io/library/busybox:musl"),
        ("someone/tool:v2", "docker.io/someone/tool:v2"),
        ("quay.io/org/team/app:1.0", "quay.io/org/team/app:1.0"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/app:dev", "localhost:5000/app:dev"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("[::1]:5000/app", "[::1]:5000/app:latest"),
        ("my-registry:5000/x", "my-registry:5000/x:latest"),
        ("a__b/c--d.e_f", "docker.io/a__b/c--d.e_f:latest"),
    ],
)
def test_a_name_the_user_types_gets_registry_namespace_and_tag(typed: str, full: str) -> None:
    assert parse(typed).full() == full


def test_a_pull_by_digest_keeps_the_digest_and_adds_no_tag() -> None:
    ref = parse(f"busybox@{DIGEST}")
    assert ref == Reference("docker.io", "library/busybox", None, DIGEST)
    assert ref.full() == f"docker.io/library/busybox@{DIGEST}"
    assert ref.familiar() == f"busybox@{DIGEST}"


def test_a_reference_may_carry_both_tag_and_digest() -> None:
    ref = parse(f"busybox:1.36@{DIGEST}")
    assert (ref.tag, ref.digest) == ("1.36", DIGEST)
    assert ref.full() == f"docker.io/library/busybox:1.36@{DIGEST}"


def test_without_a_default_tag_a_bare_name_stays_bare() -> None:
    ref = parse("busybox", default_tag=None)
    assert ref.tag is None
    assert ref.full() == "docker.io/library/busybox"
    assert ref.name == "docker.io/library/busybox"


def test_a_localhost_port_without_a_slash_is_a_tag_as_in_docker() -> None:
    assert parse("localhost:5000").full() == "docker.io/library/localhost:5000"


@pytest.mark.parametrize(
    ("full", "familiar"),
    [
        ("docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/library/busybox", "busybox"),
        ("docker.io/someone/tool:v2", "someone/tool:v2"),
        ("docker.io/library/a/b:1", "library/a/b:1"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
        ("quay.io/org/app:1.0", "quay.io/org/app:1.0"),
        (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    ],
)
def test_docker_images_shows_the_short_familiar_name(full: str, familiar: str) -> None:
    assert familiar_name(full) == familiar


def test_a_familiar_name_parses_back_to_the_same_reference() -> None:
    for typed in ["busybox", "someone/tool:v2", "localhost:5000/x:1", "docker.io/localhost/x"]:
        ref = parse(typed)
        assert parse(ref.familiar()) == ref


def test_another_default_registry_needs_no_library_namespace() -> None:
    ref = parse("busybox", default_registry="registry.example:5000")
    assert ref.full() == "registry.example:5000/busybox:latest"
    assert ref.familiar("registry.example:5000") == "busybox:latest"
    assert ref.familiar() == "registry.example:5000/busybox:latest"
    assert familiar_name("registry.example:5000/a/b:1", "registry.example:5000") == "a/b:1"


def test_hub_names_still_get_library_when_another_registry_is_the_default() -> None:
    ref = parse("docker.io/busybox", default_registry="registry.example")
    assert ref.full() == "docker.io/library/busybox:latest"


def test_uppercase_in_a_repository_is_refused_with_dockers_words() -> None:
    for typed in ["BusyBox", "someone/Tool:1", "localhost:5000/App"]:
        with pytest.raises(PouchError) as caught:
            parse(typed)
        assert caught.value.code == "invalid"
        assert caught.value.message == "invalid reference format: repository name must be lowercase"


def test_uppercase_is_fine_in_a_tag_and_a_registry_host() -> None:
    assert parse("busybox:V1").tag == "V1"
    assert parse("Registry.Example/app").registry == "Registry.Example"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        ":latest",
        "busybox:",
        "busybox:-bad",
        "busybox:" + "t" * 129,
        "busy box",
        "busybox!",
        "-busybox",
        "busybox-",
        "a//b",
        "a/b/",
        "busybox@sha256:abc",
        "busybox@md5:" + "ab" * 16,
        f"busybox@{DIGEST.upper()}",
        "busybox@",
        "a:b:c",
        "host:port/app",
        "a" * 64,
        "registry.example/" + "a" * 256,
    ],
)
def test_a_malformed_reference_is_invalid(typed: str) -> None:
    with pytest.raises(PouchError) as caught:
        parse(typed)
    assert caught.value.code == "invalid"
    assert caught.value.message.startswith("invalid reference format")


def test_a_tag_of_128_characters_is_the_longest_allowed() -> None:
    assert parse("busybox:" + "t" * 128).tag == "t" * 128
