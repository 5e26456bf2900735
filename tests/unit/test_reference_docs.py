"""The typed stubs and the reference are generated from the declarations: they must
say what the services declare now, so a caller never reads a stale contract."""

from __future__ import annotations

import typing

from pouch.actors import reference
from pouch.proto import stubs
from pouch.proto.contract import DEFAULT_TIMEOUT


def test_the_committed_stubs_and_reference_are_current():
    table = reference.services()
    assert reference.STUBS.read_text() == reference.render_stubs(table), \
        "proto/stubs.py is stale: run python -m pouch.actors.reference"
    assert reference.REFERENCE.read_text() == reference.render_reference(table), \
        "proto/REFERENCE.md is stale: run python -m pouch.actors.reference"


def test_every_method_has_a_doc_a_result_type_and_an_example():
    for service, methods in reference.services().items():
        for name, decl in methods.items():
            assert decl.doc, f"{service}.{name} has no docstring"
            assert f"### {service}.{name}(" in reference.REFERENCE.read_text()
            if not decl.handoff:
                assert decl.result is not typing.Any, f"{service}.{name}: say its result type"


class Recorder:
    """Stands in for the broker client: what a stub sends is what it records."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, typing.Any], float | None]] = []

    def call(self, service: str, method: str, args: dict[str, typing.Any],
             timeout: float | None) -> typing.Any:
        self.sent.append((service, method, args, timeout))
        return None

    def stream(self, service: str, method: str, args: dict[str, typing.Any],
               timeout: float | None) -> typing.Generator[typing.Any, None, None]:
        self.sent.append((service, method, args, timeout))
        yield from ()


def test_an_argument_left_out_is_not_sent_so_the_declared_default_applies():
    sent = Recorder()
    stubs.Calls(sent).container.kill(id="c1")
    stubs.Calls(sent).container.kill(id="c1", signal="SIGTERM")
    assert [args for _, _, args, _ in sent.sent] == [{"id": "c1"},
                                                     {"id": "c1", "signal": "SIGTERM"}]


def test_a_stub_waits_as_long_as_the_declaration_says():
    sent = Recorder()
    calls = stubs.Calls(sent)
    calls.container.inspect(id="c1")
    calls.container.stop(id="c1")  # bounded by the container's own stop timeout
    calls.container.start(id="c1")
    assert [t for *_, t in sent.sent] == [DEFAULT_TIMEOUT, None, 60.0]
