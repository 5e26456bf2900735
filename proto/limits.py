"""What a value from outside may be: the bounds every entrance checks before a value
reaches a handler (and before msgpack, which cannot carry an integer beyond 64 bits
or a string that is not UTF-8, would fail on it)."""

from __future__ import annotations

import math
from typing import Any, Final

from pouch.proto.envelope import invalid

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
# Docker's create bodies nest a handful of levels; this leaves room and no more.
MAX_DEPTH: Final = 64
# A JSON request body (as dockerd's API reads them; archives are streamed, not parsed).
MAX_JSON_BODY: Final = 10 * 1024 * 1024


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
                if isinstance(key, str):
                    _check_text(key, path)
                pending.append((sub, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            pending.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{path}: not valid Unicode (a lone surrogate?)") from None
