"""Whatever a client sends, the validation layer answers `invalid` or lets through only
what fits: never another exception (a 500), never a value the wire cannot carry."""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from pouch.proto.contract import collect, method
from pouch.proto.docker import parse_filters
from pouch.proto.envelope import PouchError
from pouch.proto.limits import INT_MAX, INT_MIN, Bounds, check_value

# Any value JSON brings: integers of any size, lone surrogates, nests.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=30)
# And msgpack: bytes, keys that are not strings.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4),
    max_leaves=30)
# Filters as clients write them, right or nearly.
filter_maps = st.dictionaries(st.text(max_size=6), st.lists(st.text(max_size=6), max_size=3)
                              | st.dictionaries(st.text(max_size=6), json_values, max_size=3)
                              | json_values, max_size=3)


class Service:
    @method(idempotent=True)
    def list(self, all: bool = False, limit: int = -1,
             filters: dict[str, list[str]] | None = None) -> None:
        """A list as the container actor serves it."""

    @method(idempotent=True)
    def resize(self, id: str, height: Annotated[int, Bounds(0, 65535)] = 0,
               tail: Annotated[str, Bounds(pattern=r"all|-?[0-9]{1,18}")] = "all") -> None:
        """Bounded arguments."""


CONTRACT = collect(Service)


def refused_as_invalid(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except PouchError as exc:
        assert exc.code == "invalid"
        return True
    return False


def fits_the_wire(value: Any) -> None:
    msgpack.packb(value)  # raises on an integer beyond 64 bits or a lone surrogate


@settings(max_examples=300, deadline=None)
@given(values)
def test_check_value_refuses_or_passes_what_msgpack_carries(value):
    if not refused_as_invalid(check_value, value, "body") and not _holds_bytes(value):
        fits_the_wire(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CONTRACT)), st.dictionaries(
    st.sampled_from(["all", "limit", "filters", "id", "height", "tail", "other"]), values,
    max_size=4))
def test_a_declaration_refuses_with_invalid_or_passes_typed_values(name, args):
    declaration = CONTRACT[name]
    if refused_as_invalid(declaration.validate, "box", args):
        return
    for key, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool):
            assert INT_MIN <= value <= INT_MAX
        if key == "height":
            assert 0 <= value <= 65535
        if key == "filters" and value is not None:
            assert all(isinstance(v, str) for vs in value.values() for v in vs)
    if not _holds_bytes(args):
        fits_the_wire(args)


@settings(max_examples=300, deadline=None)
@given(st.text() | json_values.map(json.dumps) | filter_maps.map(json.dumps)
       | st.integers(1, 4000).map(lambda depth: "[" * depth))
def test_parse_filters_gives_lists_of_strings_or_invalid(raw):
    try:
        parsed = parse_filters(raw)
    except PouchError as exc:
        assert exc.code == "invalid"
        return
    assert all(isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v)
               for k, v in parsed.items())
    fits_the_wire(parsed)


def _holds_bytes(value: Any) -> bool:
    """msgpack carries bytes too; JSON never brings them, so check_value leaves them be."""
    if isinstance(value, bytes):
        return True
    if isinstance(value, dict):
        return any(_holds_bytes(k) or _holds_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_bytes(v) for v in value)
    return False
