"""A layer's way from a registry into containerd, as a pull sends it: the registry client
checks the size, containerd the digest, and a blob that is not what its digest says is
refused and leaves nothing behind."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import grpc
import pytest

from pouch.actors.containerd.client import Containerd
from pouch.actors.containerd.content import CHUNK_SIZE, WRITE_AHEAD
from pouch.actors.containerd.types import Descriptor
from pouch.actors.image.reference import parse
from pouch.actors.image.registry import Registry, RegistryConfig
from pouch.proto.containerd.api.services.content.v1 import content_pb2, content_pb2_grpc
from pouch.proto.envelope import PouchError
from pouch.tests.support import registry as test_registry
from pouch.tests.support.registry import digest_of, image_config, layer, publish

# More chunks than are ever sent ahead of containerd's answers, and a last one cut short.
BIG = (WRITE_AHEAD + 3) * CHUNK_SIZE + 12345


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def uploads(ctrd: Containerd) -> list[str]:
    """The refs of the writes containerd holds in progress in the namespace."""
    metadata = [("containerd-namespace", ctrd.namespace)]
    with grpc.insecure_channel(f"unix://{ctrd.address}") as channel:
        statuses = content_pb2_grpc.ContentStub(channel).ListStatuses(
            content_pb2.ListStatusesRequest(), timeout=5, metadata=metadata).statuses
    return [status.ref for status in statuses]


class Pieces:
    """A reader that hands out at most `piece` bytes a read, and ends after `end` bytes."""

    def __init__(self, data: bytes, piece: int, end: int | None = None) -> None:
        self._data = data[:end]
        self._piece = piece
        self._offset = 0

    def read(self, size: int, /) -> bytes:
        chunk = self._data[self._offset:self._offset + min(size, self._piece)]
        self._offset += len(chunk)
        return chunk


@pytest.fixture(scope="module")
def registry() -> Iterator[test_registry.Registry]:
    with test_registry.Registry() as registry:
        yield registry


def published(registry: test_registry.Registry, repository: str,
              size: int) -> tuple[Registry, Descriptor, bytes]:
    """A one-layer image of about `size` incompressible bytes: the client, the layer."""
    blob = layer({"data/random": secrets.token_bytes(size)})
    publish(registry.url, repository, "v1", [blob], image_config([blob]))
    client = Registry(RegistryConfig(timeout=10), parse(f"{registry.host}/{repository}:v1"))
    described: Descriptor = {"media_type": test_registry.DOCKER_LAYER,
                             "digest": digest_of(blob), "size": len(blob)}
    return client, described, blob


def test_a_blob_read_in_odd_pieces_is_stored_whole(ctrd: Containerd) -> None:
    data = secrets.token_bytes(BIG)
    digest = digest_of(data)
    with ctrd.leases.hold() as lease:
        ctrd.content.write(unique("ref"), Pieces(data, 700 * 1024), len(data), digest,
                           lease=lease)
        assert b"".join(ctrd.content.read_stream(digest)) == data


def test_bytes_that_are_not_the_blob_are_refused_naming_it(ctrd: Containerd) -> None:
    data = secrets.token_bytes(BIG)
    digest = digest_of(data[:-1] + bytes([data[-1] ^ 1]))
    ref = unique("ref")
    with ctrd.leases.hold() as lease, pytest.raises(PouchError) as raised:
        ctrd.content.write(ref, Pieces(data, CHUNK_SIZE), len(data), digest, lease=lease)
    assert raised.value.code == "invalid"
    assert raised.value.message.startswith(f"blob {digest} failed verification: ")
    assert f"digest {digest_of(data)}" in raised.value.message
    assert ctrd.content.info(digest) is None
    assert ref not in uploads(ctrd)


def test_a_blob_that_ends_early_is_refused_and_leaves_no_upload(ctrd: Containerd) -> None:
    data = secrets.token_bytes(BIG)
    digest = digest_of(data)
    ref = unique("ref")
    with ctrd.leases.hold() as lease, pytest.raises(PouchError) as raised:
        ctrd.content.write(ref, Pieces(data, CHUNK_SIZE, end=5 * CHUNK_SIZE), len(data),
                           digest, lease=lease)
    assert raised.value.code == "invalid"
    assert raised.value.message == f"blob {digest} ended after {5 * CHUNK_SIZE} of {BIG} bytes"
    assert ctrd.content.info(digest) is None
    assert ref not in uploads(ctrd)


class Gone(Exception):
    """What a pull's progress raises once its client went away."""


class GoneAfter(Pieces):
    """A download whose client goes away once `limit` bytes were read."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data, CHUNK_SIZE)
        self._limit = limit

    def read(self, size: int, /) -> bytes:
        if self._offset >= self._limit:
            raise Gone
        return super().read(size)


def test_a_write_stopped_midway_stores_nothing_and_frees_its_ref(ctrd: Containerd) -> None:
    data = secrets.token_bytes(BIG)
    digest = digest_of(data)
    ref = unique("ref")
    with ctrd.leases.hold() as lease:
        with pytest.raises(Gone):
            ctrd.content.write(ref, GoneAfter(data, 3 * CHUNK_SIZE), len(data), digest,
                               lease=lease)
        assert ctrd.content.info(digest) is None
        # The stream was ended, not left holding the ref: the next writer goes straight on.
        ctrd.content.write(ref, data, len(data), digest, lease=lease, timeout=30)
        assert b"".join(ctrd.content.read_stream(digest)) == data


def test_a_layer_fetched_unhashed_is_stored_as_it_is(ctrd: Containerd,
                                                     registry: test_registry.Registry) -> None:
    client, described, blob = published(registry, "team/fine", 3 * CHUNK_SIZE)
    with client, ctrd.leases.hold() as lease:
        chunks = b"".join(client.fetch_blob(described, verify_digest=False))
        ctrd.content.write(unique("ref"), chunks, len(chunks), described["digest"],
                           lease=lease)
        assert b"".join(ctrd.content.read_stream(described["digest"])) == blob


def test_a_corrupted_layer_fetched_unhashed_is_refused_by_containerd(
        ctrd: Containerd, registry: test_registry.Registry) -> None:
    client, described, blob = published(registry, "team/corrupt", 3 * CHUNK_SIZE)
    registry.corrupt_blob(described["digest"])
    ref = unique("ref")
    with client, ctrd.leases.hold() as lease:
        # The registry client checks only the size: the bytes come through.
        received = b"".join(client.fetch_blob(described, verify_digest=False))
        assert len(received) == len(blob) and received != blob
        with pytest.raises(PouchError) as raised:
            ctrd.content.write(ref, received, len(received), described["digest"],
                               lease=lease)
    assert raised.value.code == "invalid"
    assert raised.value.message.startswith(f"blob {described['digest']} failed verification")
    assert ctrd.content.info(described["digest"]) is None
    assert ref not in uploads(ctrd)


def test_a_layer_of_another_size_than_its_descriptor_is_invalid_unhashed_too(
        registry: test_registry.Registry) -> None:
    client, described, blob = published(registry, "team/sizes", 64 * 1024)
    digest = described["digest"]
    with client:
        with pytest.raises(PouchError) as smaller:
            list(client.fetch_blob({**described, "size": len(blob) - 1}, verify_digest=False))
        with pytest.raises(PouchError) as larger:
            list(client.fetch_blob({**described, "size": len(blob) + 1}, verify_digest=False))
    assert smaller.value.code == larger.value.code == "invalid"
    assert smaller.value.message == (f"blob {digest} is larger than the {len(blob) - 1} bytes "
                                     "its manifest names")
    assert larger.value.message == (f"blob {digest} is {len(blob)} bytes, not the "
                                    f"{len(blob) + 1} its manifest names")

