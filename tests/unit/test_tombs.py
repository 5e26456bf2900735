"""The container actor's memory of removed containers: tokens and tombs by ID or name,
forgotten TOMB_KEPT seconds after."""

from __future__ import annotations

from typing import Any

from pouch.actors.container.meta import TOMB_KEPT
from pouch.actors.container.tombs import Graveyard


def tomb(name: str, at: float, *tokens: str, code: int = 0) -> dict[str, Any]:
    return {"Name": name, "ExitCode": code, "Tokens": list(tokens), "At": at}


def test_a_token_of_any_call_on_a_removed_container_names_it():
    yard = Graveyard({"c1": tomb("web", 100.0, "create-1", "start-1", "remove-1")})
    assert [yard.by_token(t) for t in ("create-1", "start-1", "remove-1")] == ["c1"] * 3
    assert yard.by_token("other") is None and yard.by_token("") is None


def test_a_name_finds_the_latest_container_of_that_name():
    yard = Graveyard({})
    yard.add("c1", tomb("web", 100.0, code=1))
    yard.add("c2", tomb("web", 101.0, code=2))
    assert yard.find("web") == tomb("web", 101.0, code=2)
    assert yard.find("c1") == tomb("web", 100.0, code=1)
    assert yard.find("db") is None


def test_tombs_older_than_kept_are_forgotten_with_their_tokens():
    yard = Graveyard({"c1": tomb("old", 100.0, "t1")})
    yard.add("c2", tomb("new", 100.0 + TOMB_KEPT + 1, "t2"))
    assert yard.find("c1") is None and yard.by_token("t1") is None
    assert yard.by_token("t2") == "c2"
