"""The broker reads an actor's reply for its id and `more` alone, whatever its size."""

from __future__ import annotations

import msgpack
import pytest

from pouch.broker import frames
from pouch.broker.frames import WHOLE_REPLY, Malformed
from pouch.proto import envelope as env

BIG = ["x" * 100] * 20  # a result well past WHOLE_REPLY


def test_small_and_large_replies_give_their_id_and_more() -> None:
    for result in ([], BIG):
        assert frames.reply_id(env.ok_reply(7, result)) == (7, False)
        assert frames.reply_id(env.ok_reply(8, result, more=True)) == (8, True)
    assert len(env.ok_reply(7, BIG)) > WHOLE_REPLY
    error = env.error_reply(9, env.not_found("x" * (2 * WHOLE_REPLY)))
    assert frames.reply_id(error) == (9, False)


def test_keys_in_any_order_and_a_repeated_key_as_a_whole_decode_reads_it() -> None:
    body = b"\x84\xa6result" + msgpack.packb(BIG) + b"\xa4more\xc3\xa2id\x01\xa2id\x02"
    assert frames.reply_id(body) == (2, True)
    assert frames.reply_id(body) == (env.unpack(body)["id"], env.unpack(body)["more"])


@pytest.mark.parametrize("body", [
    msgpack.packb([1, BIG]),                              # not a map
    env.ok_reply(5, BIG)[:-10],                           # cut short
    env.ok_reply(5, BIG) + b"\x01",                       # bytes past the map
    msgpack.packb({"id": True, "result": BIG}),           # an id that is no id
    msgpack.packb({"result": BIG}),                       # no id at all
    b"\x82\xa2id\x01\xa1r" + b"\x91" * 5000 + b"\x01",   # nested past msgpack's limit
    b"\xc1" * (2 * WHOLE_REPLY),                          # not msgpack
], ids=["list", "truncated", "extra", "bool-id", "no-id", "deep", "garbage"])
def test_a_malformed_large_reply_is_refused(body: bytes) -> None:
    assert len(body) > WHOLE_REPLY
    with pytest.raises(Malformed):
        frames.reply_id(body)
