"""Docker's vocabulary: names, references to objects, filters, and events as
`docker events --filter` applies them."""

from __future__ import annotations

from typing import Any

import pytest

from pouch.proto.docker import (
    check_filters,
    check_name,
    event,
    parse_filters,
    pattern_matches,
    resolve_id,
)
from pouch.proto.docker import event_matches as matches
from pouch.proto.envelope import PouchError

CID = "4f2b" + "0" * 56 + "beef"
IMAGE_ID = "sha256:" + "ab" * 32


def container_event(action: str = "start", cid: str = CID, **attrs: str) -> dict[str, Any]:
    attributes = {"name": "web", "image": "busybox:latest", **attrs}
    return {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": attributes},
            "scope": "local", "time": 1, "timeNano": 1_000_000_000}


def image_event(action: str = "load", name: str = "busybox:latest") -> dict[str, Any]:
    return {"Type": "image", "Action": action,
            "Actor": {"ID": IMAGE_ID, "Attributes": {"name": name}},
            "scope": "local", "time": 1, "timeNano": 1_000_000_000}


def test_no_filters_pass_everything():
    assert matches(container_event(), {})
    assert matches(image_event(), {})


def test_an_empty_value_list_does_not_filter():
    assert matches(container_event(), {"type": [], "container": []})


def test_values_of_one_key_are_ored():
    assert matches(container_event("die"), {"event": ["start", "die"]})
    assert not matches(container_event("create"), {"event": ["start", "die"]})


def test_keys_are_anded():
    event = container_event("start")
    assert matches(event, {"type": ["container"], "event": ["start"]})
    assert not matches(event, {"type": ["container"], "event": ["stop"]})
    assert not matches(event, {"type": ["image"], "event": ["start"]})


def test_type():
    assert matches(image_event(), {"type": ["image"]})
    assert not matches(image_event(), {"type": ["container", "volume"]})


def test_event_matches_the_action_before_its_colon():
    event = container_event("exec_start: sh -c true")
    assert matches(event, {"event": ["exec_start"]})
    assert matches(event, {"event": ["exec_start: sh -c true"]})
    assert not matches(event, {"event": ["exec"]})


def test_container_by_full_id_short_id_or_name():
    event = container_event()
    assert matches(event, {"container": [CID]})
    assert matches(event, {"container": [CID[:12]]})
    assert matches(event, {"container": ["web"]})
    assert not matches(event, {"container": ["db", CID[:4] + "1"]})


def test_the_container_key_passes_only_container_events():
    assert not matches(image_event(), {"container": [IMAGE_ID]})


def test_image_matches_image_events_and_containers_made_from_it():
    assert matches(image_event(), {"image": ["busybox:latest"]})
    assert matches(image_event(), {"image": [IMAGE_ID]})
    assert matches(container_event(), {"image": ["busybox:latest"]})
    assert not matches(container_event(), {"image": ["alpine:latest"]})


def test_image_passes_no_other_event_type():
    volume = {"Type": "volume", "Action": "create",
              "Actor": {"ID": "v1", "Attributes": {"image": "busybox:latest"}}}
    assert not matches(volume, {"image": ["busybox:latest"]})


def test_image_without_a_tag_matches_the_tagged_name():
    assert matches(container_event(), {"image": ["busybox"]})
    assert matches(image_event(), {"image": ["busybox"]})


def test_label_with_and_without_a_value():
    event = container_event(tier="front", team="a")
    assert matches(event, {"label": ["tier"]})
    assert matches(event, {"label": ["tier=front"]})
    assert not matches(event, {"label": ["tier=back"]})
    assert not matches(event, {"label": ["colour"]})


def test_a_label_value_must_match_whole():
    assert not matches(container_event(tier="front"), {"label": ["tier=fro"]})
    assert matches(container_event(note="a=b"), {"label": ["note=a=b"]})


def test_every_label_given_must_match():
    assert not matches(container_event(tier="front"), {"label": ["tier=front", "team=a"]})


def test_scope_defaults_to_local():
    event = container_event()
    del event["scope"]
    assert matches(event, {"scope": ["local"]})
    assert not matches(event, {"scope": ["swarm"]})


def test_daemon_and_volume_and_network_keys_match_their_own_type():
    daemon = {"Type": "daemon", "Action": "reload",
              "Actor": {"ID": "node-1", "Attributes": {"name": "host"}}}
    assert matches(daemon, {"daemon": ["host"]})
    assert matches(daemon, {"daemon": ["node-1"]})
    assert not matches(container_event(name="host"), {"daemon": ["host"]})
    volume = {"Type": "volume", "Action": "create", "Actor": {"ID": "data", "Attributes": {}}}
    assert matches(volume, {"volume": ["data"]})
    assert not matches(volume, {"network": ["data"]})


def test_an_unknown_key_passes_nothing():
    assert not matches(container_event(), {"colour": ["red"]})


def test_an_event_without_actor_or_attributes_is_handled():
    bare = {"Type": "container", "Action": "start"}
    assert matches(bare, {"type": ["container"]})
    assert not matches(bare, {"container": ["web"]})
    assert not matches(bare, {"label": ["a"]})


# -- names and references ----------------------------------------------------


@pytest.mark.parametrize(("given", "kept"), [("web", "web"), ("/web", "web"),
                                             ("a.b_c-1", "a.b_c-1"), ("9lives", "9lives")])
def test_valid_names_lose_their_slash(given, kept):
    assert check_name(given, "container") == kept


@pytest.mark.parametrize("name", ["a", "-web", "_web", "we b", "web!", "", "//web", "w/eb",
                                  "web\n"])
def test_invalid_names_are_refused_with_dockers_words(name):
    with pytest.raises(PouchError) as err:
        check_name(name, "container")
    assert err.value.code == "invalid"
    assert err.value.message == (f"Invalid container name ({name}), only "
                                 "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


IDS = {"abc123" + "0" * 58, "abd456" + "0" * 58}
NAMES = {"web": "abd456" + "0" * 58, "abc": "abd456" + "0" * 58}


def test_a_full_id_a_name_and_a_unique_prefix_each_resolve():
    assert resolve_id("abc123" + "0" * 58, IDS, NAMES, "container").startswith("abc123")
    assert resolve_id("web", IDS, NAMES, "container").startswith("abd456")
    assert resolve_id("abc1", IDS, NAMES, "container").startswith("abc123")


def test_a_name_wins_over_an_id_prefix():
    assert resolve_id("abc", IDS, NAMES, "container").startswith("abd456")


def test_an_ambiguous_prefix_is_refused_not_guessed():
    with pytest.raises(PouchError) as err:
        resolve_id("ab", IDS, NAMES, "image")
    assert (err.value.code, err.value.message) == (
        "invalid", "multiple IDs found with provided prefix: ab")


def test_nothing_found_names_the_kind():
    with pytest.raises(PouchError) as err:
        resolve_id("zz", IDS, NAMES, "image")
    assert (err.value.code, err.value.message) == ("not_found", "No such image: zz")


# -- filters -------------------------------------------------------------------


def test_filters_parse_in_both_of_dockers_forms():
    assert parse_filters('{"label": ["a=b"]}') == {"label": ["a=b"]}
    assert parse_filters('{"label": {"a=b": true, "c": false}}') == {"label": ["a=b"]}
    assert parse_filters("") == {}


@pytest.mark.parametrize("raw", ["[1]", "{", '{"label": "a"}', '{"label": [1]}'])
def test_malformed_filters_are_invalid(raw):
    with pytest.raises(PouchError) as err:
        parse_filters(raw)
    assert err.value.code == "invalid"


def test_an_unknown_filter_key_is_named():
    with pytest.raises(PouchError) as err:
        check_filters({"colour": ["red"]}, ("label",))
    assert err.value.message == "invalid filter 'colour'"


def test_a_name_pattern_matches_as_a_regular_expression():
    assert pattern_matches("^/we", "/web")
    assert not pattern_matches("^/db", "/web")


def test_a_catastrophic_pattern_answers():
    # A backtracking engine would not finish this in the lifetime of the machine.
    assert not pattern_matches("(a+)+b", "/" + "a" * 5000)


def test_a_pattern_re2_cannot_read_matches_nothing():
    assert not pattern_matches("(?=web)", "/web")


def test_container_and_image_events_carry_dockers_deprecated_fields():
    """As dockerd 20.10's: `status`, `id` and (containers) `from`, first, none empty."""
    died = event("container", "die", CID, {"name": "web", "image": "busybox", "exitCode": "0"})
    assert list(died)[:3] == ["status", "id", "from"]
    assert (died["status"], died["id"], died["from"]) == ("die", CID, "busybox")
    pulled = event("image", "pull", "busybox:latest", {"name": "busybox:latest"})
    assert (pulled["status"], pulled["id"]) == ("pull", "busybox:latest")
    assert "from" not in pulled
    pruned = event("container", "prune", "", {"reclaimed": "0"})
    assert pruned["status"] == "prune" and "id" not in pruned and "from" not in pruned
    for etype in ("volume", "network", "daemon", "plugin"):
        assert not {"status", "id", "from"} & set(event(etype, "create", "x", {"image": "y"}))
