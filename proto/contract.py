"""How a service declares the methods it serves: the contract beside the handler.

    class VolumeActor(ActorBase):
        service = "volume"

        @method(idempotent=True, errors=("not_found",))
        def inspect(self, name: str) -> VolumeInfo:
            \"\"\"Describe one volume.\"\"\"

A handler that takes a `reply` parameter answers later (or several times, when
declared `stream=True`) and names its result type with `returns=`; one that
takes `conn` is given the stream session of a client connection the gateway
handed over (see `pouch.proto.handoff` and `pouch.proto.stream`). Neither
appears in the contract: callers see the arguments with their types and
defaults, the result type, the errors, the docstring's first paragraph, the
call's deadline and whether a retry is safe.

This one table is the source of the typed client stubs (`pouch.proto.stubs`)
and of the reference (`proto/REFERENCE.md`), both written by
`python -m pouch.actors.reference` and kept current by a test.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pouch.proto.envelope import ERROR_CODES, ErrorCode, invalid
from pouch.proto.limits import DEFAULT_BOUNDS, Bounds, check_value

F = TypeVar("F", bound=Callable[..., Any])
# How long a caller waits for an answer unless the method declares otherwise.
DEFAULT_TIMEOUT = 30.0
_HIDDEN = ("self", "reply", "conn")
_MARK = "__pouch_declaration__"


@dataclass(frozen=True)
class Param:
    name: str
    hint: Any
    required: bool
    default: Any = None
    # Declared with the type as `Annotated[int, Bounds(0, 65535)]`: see Bounds.
    bounds: Bounds = DEFAULT_BOUNDS

    def type_name(self) -> str:
        return type_name(self.hint)


def type_name(hint: Any) -> str:
    """A type as a reader writes it: `int | None`, `dict[str, Any]`, `ContainerSummary`."""
    if hint is None or hint is type(None):
        return "None"
    if typing.get_origin(hint) is None and isinstance(hint, type):
        return hint.__name__
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    for module in ("pouch.proto.shapes.", "socket."):
        text = text.replace(module, "")
    return text


@dataclass(frozen=True)
class Resumption:
    """How a caller takes a stream up again after its actor restarted: it sends the
    request again with the argument `arg` set to the latest item's `field` times
    `scale`, less `overlap` (items from several publishers may arrive a little out of
    order), and skips the items of that overlap it was sent already."""

    field: str
    arg: str
    scale: float = 1.0
    overlap: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"field": self.field, "arg": self.arg, "scale": self.scale,
                "overlap": self.overlap}


@dataclass(frozen=True)
class Declaration:
    name: str
    attr: str          # the handler's attribute name (differs when `name` would clash)
    doc: str           # the docstring's first paragraph
    idempotent: bool
    params: tuple[Param, ...]
    stream: bool       # answers with several items
    deferred: bool     # takes `reply` and answers when it is ready
    handoff: bool      # takes `conn`, the stream of a client connection the gateway handed over
    # A stream that outlives its actor's restart. True for a hand-off: the gateway hands
    # the connection over anew, marked as resumed (pouch.proto.handoff), and the restarted
    # actor takes it up. A Resumption for a broker stream: the caller sends it again.
    resumable: bool | Resumption = False
    # Done at most once per call: the caller sends a fresh `token` with each call and the
    # same one with its retries, and the service answers a retry of a call it did with
    # that call's outcome. A call whose actor died is then retried like an idempotent one.
    once: bool = False
    result: Any = None                 # the type of the answer (of each item, for a stream)
    errors: tuple[ErrorCode, ...] = ()  # the error codes it may answer besides the common ones
    # The caller's deadline, in seconds from the call; None: as long as the method takes
    # (its handler bounds the wait itself, as stop does with the container's stop timeout).
    timeout: float | None = DEFAULT_TIMEOUT
    handler: str = ""  # where the handler is: module.Class.function, for readers

    def to_wire(self) -> dict[str, Any]:
        return {
            "doc": self.doc, "idempotent": self.idempotent, "stream": self.stream,
            "handoff": self.handoff, "timeout": self.timeout, "once": self.once,
            "resumable": self.resumable.to_wire() if isinstance(self.resumable, Resumption)
            else self.resumable,
            "errors": list(self.errors),
            "result": type_name(self.result),
            "args": {p.name: {"type": p.type_name(), "required": p.required}
                     | ({} if p.required else {"default": p.default}) for p in self.params},
        }

    def validate(self, service: str, args: Any) -> dict[str, Any]:
        """The arguments checked against the declaration: their types (the items of a
        list or a map too), what the wire carries (64-bit integers, valid Unicode,
        bounded depth) and each argument's Bounds. Errors: invalid, naming the offender."""
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
            value = args[param.name]
            where = f"{service}.{self.name}: argument '{param.name}'"
            check_value(value, where)
            if not _conforms(value, param.hint):
                raise invalid(f"{where} must be {param.type_name()}, not "
                              f"{type(value).__name__}")
            param.bounds.check(value, where)
        return args


_UNSET: Any = object()


def method(*, idempotent: bool, errors: tuple[ErrorCode, ...] = (), stream: bool = False,
           returns: Any = _UNSET, timeout: float | None = DEFAULT_TIMEOUT,
           name: str | None = None,
           resumable: bool | Resumption = False, once: bool = False) -> Callable[[F], F]:
    """Declare a handler as a method of its service's contract, under `name` if given
    (for names such as `start` that pykka's actors use themselves).

    `returns` names the result type of a handler that answers through `reply`
    (for others it is the return annotation); `errors` the codes it may answer;
    `resumable` how its stream outlives the actor's restart, `once` that it takes a
    `token` and does each call at most once (see Declaration).
    """
    for code in errors:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")

    def mark(fn: F) -> F:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        annotated = typing.get_type_hints(fn, include_extras=True)
        params = tuple(
            Param(arg, hints.get(arg, Any), p.default is inspect.Parameter.empty,
                  None if p.default is inspect.Parameter.empty else p.default,
                  _bounds(annotated.get(arg)))
            for arg, p in sig.parameters.items() if arg not in _HIDDEN
        )
        deferred = "reply" in sig.parameters
        if once and "token" not in sig.parameters:
            raise TypeError(f"{fn.__qualname__} is done once per call: it takes a `token`")
        if returns is not _UNSET:
            result = returns
        elif deferred:
            raise TypeError(f"{fn.__qualname__} answers through `reply`: declare `returns=`")
        else:
            result = hints.get("return")
        doc = inspect.getdoc(fn) or ""
        setattr(fn, _MARK, Declaration(
            name=name or fn.__name__, attr=fn.__name__,
            doc=" ".join(doc.split("\n\n")[0].split()), idempotent=idempotent,
            params=params, stream=stream, deferred=deferred,
            handoff="conn" in sig.parameters, resumable=resumable, once=once, result=result,
            errors=tuple(errors), timeout=timeout, handler=f"{fn.__module__}.{fn.__qualname__}"))
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


def _bounds(hint: Any) -> Bounds:
    if typing.get_origin(hint) is typing.Annotated:
        for extra in hint.__metadata__:
            if isinstance(extra, Bounds):
                return extra
    return DEFAULT_BOUNDS


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
    items = typing.get_args(hint)
    if target in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        # list[T] and tuple[T, ...]: every item a T (a fixed-length tuple is not declared).
        return not items or all(_conforms(v, items[0]) for v in value)
    if target is dict:
        if not isinstance(value, dict):
            return False
        return len(items) != 2 or all(_conforms(k, items[0]) and _conforms(v, items[1])
                                      for k, v in value.items())
    if isinstance(target, type):
        return isinstance(value, target)
    return True
