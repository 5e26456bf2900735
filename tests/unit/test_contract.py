"""Method declarations: what a handler's signature promises callers, and how
arguments are checked against it before the handler runs."""

from __future__ import annotations

import socket
from typing import Annotated, Any, Literal

import pytest

from pouch.actors.host import Reply
from pouch.proto.contract import Declaration, collect, method
from pouch.proto.envelope import PouchError
from pouch.proto.limits import MAX_TEXT, Bounds


class Volumes:
    """A stand-in actor class: `method` and `collect` need nothing of pykka."""

    @method(idempotent=True, errors=("not_found",))
    def inspect(self, name: str) -> dict[str, Any]:
        """Describe one volume.

        More words that callers need not see.
        """
        return {"Name": name}

    @method(idempotent=False)
    def remove(self, name: str, force: bool = False, timeout: int | None = None) -> None:
        """Remove a volume."""

    @method(idempotent=True, name="start", returns=bool, timeout=None)
    def start_(self, id: str, reply: Reply) -> None:
        """Start something; answers later."""

    @method(idempotent=True, stream=True, returns=str)
    def watch(self, filters: dict[str, Any], reply: Reply, since: float = 0.0) -> None:
        """Stream changes."""

    @method(idempotent=False, returns=None)
    def attach(self, id: str, conn: socket.socket, reply: Reply,
               mode: Literal["r", "rw"] = "r", names: list[str] | None = None) -> None:
        """Take a handed-over connection."""

    @method(idempotent=True)
    def anything(self, value: Any) -> None:
        """Take any value."""

    def helper(self) -> None:
        """Not declared: not part of the contract."""


class MoreVolumes(Volumes):
    @method(idempotent=True)
    def prune(self) -> list[str]:
        return []


@pytest.fixture(scope="module")
def contract() -> dict[str, Declaration]:
    return collect(Volumes)


def check(contract: dict[str, Declaration], name: str, args: Any) -> dict[str, Any]:
    return contract[name].validate("volume", args)


def invalid_message(contract: dict[str, Declaration], name: str, args: Any) -> str:
    with pytest.raises(PouchError) as err:
        check(contract, name, args)
    assert err.value.code == "invalid"
    return err.value.message


# -- declarations ------------------------------------------------------------


def test_only_declared_methods_are_in_the_contract(contract):
    assert set(contract) == {"inspect", "remove", "start", "watch", "attach", "anything"}


def test_a_declaration_records_the_signature_and_the_docstrings_first_line(contract):
    inspect = contract["inspect"]
    assert (inspect.name, inspect.attr, inspect.idempotent) == ("inspect", "inspect", True)
    assert inspect.doc == "Describe one volume."
    assert [(p.name, p.required) for p in inspect.params] == [("name", True)]
    assert (inspect.stream, inspect.deferred, inspect.handoff) == (False, False, False)


def test_the_result_type_errors_and_deadline_are_declared(contract):
    inspect, start, watch = contract["inspect"], contract["start"], contract["watch"]
    assert (inspect.result, inspect.errors, inspect.timeout) == (dict[str, Any], ("not_found",),
                                                                  30.0)
    assert (start.result, start.timeout) == (bool, None)
    assert watch.result is str and watch.to_wire()["result"] == "str"


def test_a_handler_that_answers_later_must_name_its_result():
    with pytest.raises(TypeError, match="returns="):
        @method(idempotent=True)
        def later(self: Any, reply: Reply) -> None:
            """Answers later."""


def test_an_unknown_error_code_is_refused_at_declaration():
    with pytest.raises(ValueError, match="unknown error code"):
        method(idempotent=True, errors=("teapot",))  # type: ignore[arg-type]


def test_defaults_make_arguments_optional(contract):
    params = {p.name: p for p in contract["remove"].params}
    assert params["name"].required and params["name"].default is None
    assert not params["force"].required and params["force"].default is False
    assert not params["timeout"].required and params["timeout"].default is None
    assert not contract["remove"].idempotent


def test_the_name_override_keeps_the_handler_attribute(contract):
    start = contract["start"]
    assert (start.name, start.attr) == ("start", "start_")
    assert "start_" not in contract


def test_reply_and_conn_are_hidden_from_callers(contract):
    start, watch, attach = contract["start"], contract["watch"], contract["attach"]
    assert [p.name for p in start.params] == ["id"]
    assert start.deferred and not start.stream and not start.handoff
    assert [p.name for p in watch.params] == ["filters", "since"]
    assert watch.deferred and watch.stream
    assert [p.name for p in attach.params] == ["id", "mode", "names"]
    assert attach.handoff and attach.deferred


def test_collect_sees_methods_of_base_classes():
    assert set(collect(MoreVolumes)) == {"inspect", "remove", "start", "watch", "attach",
                                         "anything", "prune"}


def test_the_wire_form_names_types_and_requirements(contract):
    wire = contract["remove"].to_wire()
    assert wire == {
        "doc": "Remove a volume.", "idempotent": False, "stream": False, "handoff": False,
        "resumable": False, "timeout": 30.0, "once": False, "errors": [], "result": "None",
        "args": {"name": {"type": "str", "required": True},
                 "force": {"type": "bool", "required": False, "default": False},
                 "timeout": {"type": "int | None", "required": False, "default": None}},
    }
    assert contract["watch"].to_wire()["stream"] is True
    assert contract["attach"].to_wire()["handoff"] is True


# -- validate: names ---------------------------------------------------------


def test_valid_arguments_come_back_unchanged(contract):
    args = {"name": "v1", "force": True}
    assert check(contract, "remove", args) == args


def test_optional_arguments_may_be_left_out(contract):
    assert check(contract, "remove", {"name": "v1"}) == {"name": "v1"}


def test_arguments_must_be_a_map(contract):
    assert invalid_message(contract, "inspect", ["v1"]) == \
        "volume.inspect: arguments must be a map"
    assert "must be a map" in invalid_message(contract, "inspect", None)


def test_an_unknown_argument_is_named(contract):
    assert invalid_message(contract, "inspect", {"name": "v1", "colour": "red"}) == \
        "volume.inspect: unknown argument 'colour'"


def test_hidden_parameters_cannot_be_passed_by_callers(contract):
    assert "unknown argument 'reply'" in invalid_message(contract, "start",
                                                         {"id": "c1", "reply": None})


def test_a_missing_argument_is_named(contract):
    assert invalid_message(contract, "remove", {"force": True}) == \
        "volume.remove: missing argument 'name'"


def test_the_override_name_is_used_in_messages(contract):
    assert invalid_message(contract, "start", {}) == "volume.start: missing argument 'id'"


# -- validate: types ---------------------------------------------------------


def test_a_wrong_type_names_the_argument_and_both_types(contract):
    assert invalid_message(contract, "inspect", {"name": 5}) == \
        "volume.inspect: argument 'name' must be str, not int"


def test_optional_int_takes_an_int_or_none(contract):
    check(contract, "remove", {"name": "v", "timeout": 3})
    check(contract, "remove", {"name": "v", "timeout": None})
    message = invalid_message(contract, "remove", {"name": "v", "timeout": "3"})
    assert message == "volume.remove: argument 'timeout' must be int | None, not str"


def test_bool_is_not_an_int(contract):
    message = invalid_message(contract, "remove", {"name": "v", "timeout": True})
    assert "argument 'timeout'" in message and "not bool" in message


def test_bool_is_not_a_float_but_an_int_is(contract):
    check(contract, "watch", {"filters": {}, "since": 3})
    check(contract, "watch", {"filters": {}, "since": 3.5})
    assert "argument 'since'" in invalid_message(contract, "watch",
                                                 {"filters": {}, "since": False})


def test_an_int_is_not_a_bool(contract):
    assert "argument 'force'" in invalid_message(contract, "remove", {"name": "v", "force": 1})


def test_a_dict_argument_takes_any_map_and_nothing_else(contract):
    check(contract, "watch", {"filters": {"label": ["a=b"], "n": 1}})
    check(contract, "watch", {"filters": {}})
    message = invalid_message(contract, "watch", {"filters": [["label", "a"]]})
    assert message == "volume.watch: argument 'filters' must be dict[str, Any], not list"


def test_a_list_argument_takes_a_list_or_a_tuple(contract):
    check(contract, "attach", {"id": "c", "names": ["a", "b"]})
    check(contract, "attach", {"id": "c", "names": ("a",)})
    check(contract, "attach", {"id": "c", "names": None})
    assert "argument 'names'" in invalid_message(contract, "attach", {"id": "c", "names": "a"})


def test_a_literal_takes_only_its_values(contract):
    check(contract, "attach", {"id": "c", "mode": "rw"})
    assert "argument 'mode'" in invalid_message(contract, "attach", {"id": "c", "mode": "w"})


def test_any_takes_everything(contract):
    for value in (None, 1, "x", [1], {"a": 1}, True):
        check(contract, "anything", {"value": value})


# -- validate: what the wire carries, items, bounds ----------------------------


class Bounded:
    @method(idempotent=True)
    def resize(self, height: Annotated[int, Bounds(0, 65535)] = 0,
               tail: Annotated[str, Bounds(pattern=r"all|[0-9]{1,3}")] = "all",
               timeout: Annotated[int | None, Bounds(high=10)] = None) -> None:
        """Bounded arguments."""

    @method(idempotent=True)
    def find(self, filters: dict[str, list[str]] | None = None, name: str = "") -> None:
        """Typed items."""


@pytest.fixture(scope="module")
def bounded() -> dict[str, Declaration]:
    return collect(Bounded)


def refusal(contract: dict[str, Declaration], name: str, args: Any) -> str:
    with pytest.raises(PouchError) as err:
        contract[name].validate("box", args)
    assert err.value.code == "invalid"
    return err.value.message


def test_an_integer_beyond_64_bits_is_refused_naming_the_argument(contract):
    assert invalid_message(contract, "remove", {"name": "v", "timeout": 2**63}).startswith(
        "volume.remove: argument 'timeout'")


def test_a_lone_surrogate_in_an_argument_is_refused(contract):
    assert "Unicode" in invalid_message(contract, "inspect", {"name": "\ud800"})


def test_a_declared_range_is_checked(bounded):
    bounded["resize"].validate("box", {"height": 65535, "timeout": -5})
    assert "above 65535" in refusal(bounded, "resize", {"height": 65536})
    assert "below 0" in refusal(bounded, "resize", {"height": -1})
    assert "'timeout': 11 is above 10" in refusal(bounded, "resize", {"timeout": 11})
    bounded["resize"].validate("box", {"timeout": None})


def test_a_declared_pattern_is_matched_whole(bounded):
    bounded["resize"].validate("box", {"tail": "12"})
    assert "does not match" in refusal(bounded, "resize", {"tail": "1234"})
    assert "does not match" in refusal(bounded, "resize", {"tail": "all\n"})


def test_a_string_argument_is_bounded_even_undeclared(bounded):
    assert "longer than" in refusal(bounded, "find", {"name": "x" * (MAX_TEXT + 1)})


def test_the_items_of_lists_and_maps_are_checked(bounded):
    bounded["find"].validate("box", {"filters": {"name": ["a", "b"]}})
    assert "must be dict[str, list[str]]" in refusal(bounded, "find", {"filters": {"type": 5}})
    assert "must be" in refusal(bounded, "find", {"filters": {"type": [5]}})
    assert "must be" in refusal(bounded, "find", {"filters": {1: ["a"]}})


def test_bounds_leave_the_wire_contract_as_it_was(bounded):
    assert bounded["resize"].to_wire()["args"]["height"] == {
        "type": "int", "required": False, "default": 0}
