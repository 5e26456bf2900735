"""What a value from outside may be, checked before it reaches a handler or msgpack."""

from __future__ import annotations

import pytest

from pouch.proto.envelope import PouchError
from pouch.proto.limits import INT_MAX, INT_MIN, MAX_DEPTH, check_value


def refusal(value: object) -> str:
    with pytest.raises(PouchError) as err:
        check_value(value, "body")
    assert err.value.code == "invalid"
    return err.value.message


def test_what_the_wire_carries_passes():
    check_value({"a": [1, INT_MAX, INT_MIN, 1.5, "text", None, True, {"b": {}}]}, "body")


def test_an_integer_beyond_64_bits_is_named_by_its_path():
    assert refusal({"HostConfig": {"Memory": INT_MAX + 1}}).startswith("body.HostConfig.Memory:")
    assert "body.Cmd[1]" in refusal({"Cmd": [1, INT_MIN - 1]})


def test_a_lone_surrogate_in_a_value_or_a_key_is_refused():
    assert "Unicode" in refusal({"Hostname": "\ud800"})
    assert "Unicode" in refusal({"\udfff": 1})


def test_not_a_finite_number_is_refused():
    assert "finite" in refusal({"x": float("inf")})


def test_nesting_is_bounded_without_recursion():
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert f"deeper than {MAX_DEPTH}" in refusal(deep)
