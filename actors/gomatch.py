"""Go's filepath.Match (path.Match alike on "/"-separated names), as a Python regex:
for .dockerignore and COPY's wildcards (pouch.actors.builder.ignore) and the `reference`
filter of an image list. Pure."""

from __future__ import annotations

import re


class PatternError(ValueError):
    """A pattern Go's filepath.Match refuses."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"syntax error in pattern: {pattern}")
        self.pattern = pattern


def _class(pattern: str, pos: int) -> tuple[str, int]:
    """A [...] class from pattern[pos] (just past "["): its regex and where it ends."""
    negated = pos < len(pattern) and pattern[pos] == "^"
    pos += negated
    ranges: list[str] = []
    while True:
        if pos < len(pattern) and pattern[pos] == "]" and ranges:
            return ("[^" if negated else "[") + "".join(ranges) + "]", pos + 1
        low, pos = _class_char(pattern, pos)
        high = low
        if pattern[pos] == "-":
            high, pos = _class_char(pattern, pos + 1)
        ranges.append(re.escape(low) if low == high else f"{re.escape(low)}-{re.escape(high)}")


def _class_char(pattern: str, pos: int) -> tuple[str, int]:
    """Go's getEsc: one (maybe escaped) character of a class, never the class's end."""
    if pos >= len(pattern) or pattern[pos] in "-]":
        raise PatternError(pattern)
    if pattern[pos] == "\\":
        pos += 1
        if pos >= len(pattern):
            raise PatternError(pattern)
    if pos + 1 >= len(pattern):
        raise PatternError(pattern)
    return pattern[pos], pos + 1


def match_regex(pattern: str) -> re.Pattern[str]:
    """filepath.Match's pattern as a regex: `*` and `?` stop at "/", `[a-z]`, `[^...]`,
    `\\` escapes; PatternError for a malformed pattern."""
    out, pos = [], 0
    while pos < len(pattern):
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, pos = _class(pattern, pos)
            out.append(regex)
        elif ch == "\\":
            if pos >= len(pattern):
                raise PatternError(pattern)
            out.append(re.escape(pattern[pos]))
            pos += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def filepath_match(pattern: str, name: str) -> bool:
    """Go's filepath.Match(pattern, name)."""
    return match_regex(pattern).fullmatch(name) is not None
