"""Times as Docker writes and reads them."""

from __future__ import annotations

import re
import time
from datetime import datetime

ZERO_TIME = "0001-01-01T00:00:00Z"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def rfc3339_nano(ns: int | None = None) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds, trailing zeros of the fraction dropped."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def _rfc3339_parts(value: str) -> tuple[int, str]:
    """The whole seconds since the epoch of an RFC 3339 time, and its fraction's digits."""
    match = _RFC3339.fullmatch(value)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return int(stamp.timestamp()), fraction or ""


def parse_rfc3339(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 time with up to nanoseconds."""
    seconds, fraction = _rfc3339_parts(value)
    return seconds + (float("0." + fraction) if fraction else 0.0)


def rfc3339_nanos(value: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time, exactly (a float is not)."""
    seconds, fraction = _rfc3339_parts(value)
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9])


def parse_timestamp(value: str, now: float | None = None) -> float:
    """Docker's `since`/`until`: Unix seconds (with a fraction), RFC 3339, or a
    duration back from now ("10m", "1h30m"). ValueError if none of these."""
    value = value.strip()
    now = time.time() if now is None else now
    try:
        return float(value)
    except ValueError:
        pass
    if _DURATION.fullmatch(value) or re.fullmatch(rf"(?:{_DURATION.pattern})+", value):
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    return parse_rfc3339(value)


def human_duration(seconds: float) -> str:
    """Docker's HumanDuration: 'Less than a second', '5 seconds', 'About a minute', ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(s / 3600 + 0.5)  # Go rounds halves up
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{s // 3600 // 24 // 365} years"

