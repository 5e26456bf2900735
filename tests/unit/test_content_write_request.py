"""The content writer serializes its WRITE requests itself, to spare the copies protobuf
would make of every chunk: what it sends must be what protobuf would have sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pouch.actors.containerd.content import write_request
from pouch.proto.containerd.api.services.content.v1 import content_pb2


@given(ref=st.text(max_size=80), offset=st.integers(0, 2**62), data=st.binary(max_size=70000))
def test_a_write_request_is_the_bytes_protobuf_makes_of_it(ref: str, offset: int,
                                                           data: bytes) -> None:
    cut = len(data) // 3
    pieces: list[bytes | memoryview] = [data[:cut], memoryview(data)[cut:]]
    made = write_request(ref, pieces, action=content_pb2.WRITE, offset=offset)
    assert made == content_pb2.WriteContentRequest(
        ref=ref, action=content_pb2.WRITE, offset=offset, data=data).SerializeToString()


def test_a_chunk_of_megabytes_has_a_multi_byte_length() -> None:
    data = bytes(range(256)) * (4 * 1024 * 4 + 3)
    parsed = content_pb2.WriteContentRequest.FromString(
        write_request("layer", [data], action=content_pb2.WRITE, offset=12))
    assert (parsed.ref, parsed.offset, parsed.data) == ("layer", 12, data)


def test_a_commit_carries_its_labels() -> None:
    made = write_request("layer", action=content_pb2.COMMIT, offset=5, total=5,
                         expected="sha256:" + "0" * 64, labels={"a": "1"})
    parsed = content_pb2.WriteContentRequest.FromString(made)
    assert parsed.action == content_pb2.COMMIT and dict(parsed.labels) == {"a": "1"}
