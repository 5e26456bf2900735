"""How a caller takes a resumable stream up again: from where, and without repeats."""

from __future__ import annotations

from pouch.broker.client import Resumed
from pouch.proto.contract import Resumption

EVENTS = Resumption("timeNano", "since", scale=1e-9, overlap=1.0).to_wire()


def event(seconds: float, action: str) -> dict[str, object]:
    return {"Action": action, "timeNano": int(seconds * 1e9)}


def test_a_stream_cut_before_any_item_is_asked_again_as_it_was():
    resumed = Resumed("events", {"since": 5.0}, EVENTS)
    assert resumed.args() == {"since": 5.0}


def test_a_stream_is_asked_again_from_its_latest_item_less_the_overlap():
    resumed = Resumed("events", {"since": 5.0, "filters": {"type": ["container"]}}, EVENTS)
    for item in (event(100.0, "create"), event(100.5, "start"), event(100.2, "attach")):
        assert not resumed.had(item)
    assert resumed.args() == {"since": 99.5, "filters": {"type": ["container"]}}


def test_a_stream_is_never_asked_for_more_than_it_first_asked():
    resumed = Resumed("events", {"since": 100.0}, EVENTS)
    resumed.had(event(100.2, "create"))
    assert resumed.args() == {"since": 100.0}


def test_the_items_of_the_overlap_sent_again_are_skipped_and_new_ones_kept():
    resumed = Resumed("events", {}, EVENTS)
    first, second = event(100.0, "create"), event(100.5, "start")
    resumed.had(first)
    resumed.had(second)
    # Asked again from 99.5: the actor sends both again, then what is new.
    assert resumed.had(first) and resumed.had(second)
    assert not resumed.had(event(100.5, "die"))  # the same time, another event
    assert not resumed.had(event(101.0, "destroy"))


def test_only_the_overlap_is_remembered():
    resumed = Resumed("events", {}, EVENTS)
    old = event(100.0, "create")
    resumed.had(old)
    resumed.had(event(102.0, "start"))
    # Older than the overlap: a request from 101.0 cannot send it again.
    assert not resumed.had(old)
