"""How an actor declares the methods it serves: the contract beside the handler.

    class VolumeActor(ActorBase):
        service = "volume"

        @method(idempotent=True)
        def inspect(self, name: str) -> dict:
            \"\"\"Describe one volume. Errors: not_found.\"\"\"

A handler that takes a `reply` parameter answers later (or several times, when
declared `stream=True`); one that takes `conn` is given a client connection
handed over by the gateway (see `pouch.actors.handoff`). Neither appears in
the contract: callers only see the arguments, their types, the docstring and
whether a retry is safe.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pouch.proto.envelope import invalid

F = TypeVar("F", bound=Callable[..., Any])
_HIDDEN = ("self", "reply", "conn")
_MARK = "__pouch_declaration__"


@dataclass(frozen=True)
class Param:
    name: str
    hint: Any
    required: bool
    default: Any = None

    def type_name(self) -> str:
        return getattr(self.hint, "__name__", None) or str(self.hint).replace("typing.", "")


@dataclass(frozen=True)
class Declaration:
    name: str
    attr: str          # the handler's attribute name (differs when `name` would clash)
    doc: str
    idempotent: bool
    params: tuple[Param, ...]
    stream: bool       # answers with several items
    deferred: bool     # takes `reply` and answers when it is ready
    handoff: bool      # takes `conn`, a client socket handed over by the gateway

    def to_wire(self) -> dict[str, Any]:
        return {
            "doc": self.doc, "idempotent": self.idempotent, "stream": self.stream,
            "handoff": self.handoff,
            "args": {p.name: {"type": p.type_name(), "required": p.required} for p in self.params},
        }

    def validate(self, service: str, args: Any) -> dict[str, Any]:
        """The arguments checked against the declaration; invalid() names the offender."""
        if not isinstance(args, dict):
            raise invalid(f"{service}.{self.name}: arguments must be a map")
        known = {p.name: p for p in self.params}
        for name in args:
            if name not in known:
                raise invalid(f"{service}.{self.name}: unknown argument '{name}'")
        for param in self.params:
            if param.name not in args:
                if param.required:
                    raise invalid(f"{service}.{self.name}: missing argument '{param.name}'")
                continue
            if not _conforms(args[param.name], param.hint):
                raise invalid(f"{service}.{self.name}: argument '{param.name}' must be "
                              f"{param.type_name()}, not {type(args[param.name]).__name__}")
        return args


def method(*, idempotent: bool, stream: bool = False,
           name: str | None = None) -> Callable[[F], F]:
    """Declare a handler as a method of its actor's contract, under `name` if given
    (for names such as `start` that pykka's actors use themselves)."""

    def mark(fn: F) -> F:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        params = tuple(
            Param(arg, hints.get(arg, Any), p.default is inspect.Parameter.empty,
                  None if p.default is inspect.Parameter.empty else p.default)
            for arg, p in sig.parameters.items() if arg not in _HIDDEN
        )
        doc = inspect.getdoc(fn) or ""
        setattr(fn, _MARK, Declaration(
            name=name or fn.__name__, attr=fn.__name__,
            doc=doc.splitlines()[0] if doc else "", idempotent=idempotent,
            params=params, stream=stream, deferred="reply" in sig.parameters,
            handoff="conn" in sig.parameters))
        return fn

    return mark


def collect(cls: type) -> dict[str, Declaration]:
    """Every method a class (and its bases) declared, by name."""
    table: dict[str, Declaration] = {}
    for name in dir(cls):
        decl = getattr(getattr(cls, name, None), _MARK, None)
        if isinstance(decl, Declaration):
            table[decl.name] = decl
    return table


def _conforms(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    target = origin or hint
    if target is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if target is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if target in (list, tuple):
        return isinstance(value, list | tuple)
    if isinstance(target, type):
        return isinstance(value, target)
    return True
