"""What a value from outside may be: the bounds every entrance checks before a value
reaches a handler (and before msgpack, which cannot carry an integer beyond 64 bits
or a string that is not UTF-8, would fail on it)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from pouch.proto.envelope import invalid

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
# Docker's create bodies nest a handful of levels; this leaves room and no more.
MAX_DEPTH: Final = 64
# A JSON request body (as dockerd's API reads them; archives are streamed, not parsed).
MAX_JSON_BODY: Final = 10 * 1024 * 1024
# A string argument of a method that declares no length of its own (a name, an ID, a
# path): far above any real one, far below what would cost a service to hold.
MAX_TEXT: Final = 64 * 1024
# A wait in seconds (a stop timeout): what a timer can hold, and 68 years.
MAX_SECONDS: Final = 2**31 - 1


def check_int(value: int, where: str) -> int:
    """`value`, if a signed 64-bit integer holds it. Errors: invalid."""
    if not INT_MIN <= value <= INT_MAX:
        raise invalid(f"{where}: {value} is out of range (a signed 64-bit integer)")
    return value


def check_value(value: Any, where: str) -> None:
    """A decoded value (JSON or msgpack) that fits the wire: no integer beyond 64 bits,
    no float that is not finite, no string that is not valid Unicode, no nesting deeper
    than MAX_DEPTH. Iterative, so a hostile depth cannot exhaust the stack. Errors:
    invalid, naming `where` and the path to the offending part."""
    pending: list[tuple[Any, str, int]] = [(value, where, 0)]
    while pending:
        item, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise invalid(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            check_int(item, path)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise invalid(f"{path}: {item} is not a finite number")
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict):
            for key, sub in item.items():
                pending.append((key, path, depth + 1))
                pending.append((sub, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            pending.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{path}: not valid Unicode (a lone surrogate?)") from None


@dataclass(frozen=True)
class Bounds:
    """A method argument's limits beyond its type, declared beside it:

        def resize(self, id: str, height: Annotated[int, Bounds(0, 65535)] = 0): ...

    a range for an integer; a length (MAX_TEXT unless given) and a full-match pattern
    for a string. None passes: whether None is allowed is the type's business."""

    low: int | None = None
    high: int | None = None
    max_len: int = MAX_TEXT
    pattern: str | None = None

    def check(self, value: Any, where: str) -> None:
        """Errors: invalid, naming `where`."""
        if isinstance(value, int) and not isinstance(value, bool):
            if self.low is not None and value < self.low:
                raise invalid(f"{where}: {value} is below {self.low}")
            if self.high is not None and value > self.high:
                raise invalid(f"{where}: {value} is above {self.high}")
        elif isinstance(value, str):
            if len(value) > self.max_len:
                raise invalid(f"{where}: longer than {self.max_len} characters")
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise invalid(f"{where}: {value!r} does not match {self.pattern}")

    def to_wire(self) -> dict[str, Any]:
        """What the reference shows of the bounds."""
        shown = {"min": self.low, "max": self.high, "pattern": self.pattern}
        wire = {k: v for k, v in shown.items() if v is not None}
        if self.max_len != MAX_TEXT:
            wire["max_length"] = self.max_len
        return wire


# What every argument gets when it declares no Bounds of its own.
DEFAULT_BOUNDS: Final = Bounds()
