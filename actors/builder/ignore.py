""".dockerignore as moby reads it (builder/dockerignore, pkg/fileutils), and which
sources of COPY and ADD are wildcards (matched by pouch.actors.gomatch). Pure: patterns
and relative paths in, answers out; paths are relative to the context, "/"-separated.

Who applies .dockerignore: the client. The docker CLI and docker-py leave the ignored
files out of the context they send; dockerd only reads the Dockerfile and .dockerignore
(which clients always send, since it needs them) and then removes these two from the
context when .dockerignore excludes them, so that COPY and ADD never see them
(`IgnoreRules.removed_by_daemon`). `excluded` and `dir_may_hold_included` are the rules
themselves, for a client-side walk or a server that filters a context a client did not.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from pouch.actors.gomatch import PatternError, match_regex

IGNORE_FILE = ".dockerignore"
_BOM = "\ufeff"


def go_clean(path: str) -> str:
    """Go's filepath.Clean on Linux: "" is ".", one slash at the root, no "." or "x/.."."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def has_wildcards(path: str) -> bool:
    """Whether COPY treats a source as a pattern (moby's containsWildcards)."""
    pos = 0
    while pos < len(path):
        if path[pos] == "\\":
            pos += 2
            continue
        if path[pos] in "*?[":
            return True
        pos += 1
    return False


# -- .dockerignore ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without its "!"
    exclusion: bool  # a "!" exception: matching paths are sent after all
    depth: int  # its number of path elements
    regex: re.Pattern[str]


def _moby_regex(pattern: str) -> re.Pattern[str]:
    """fileutils' Pattern.compile: `**` crosses folders, `*` and `?` do not, "." and "$"
    are literal, `\\` escapes; anything else goes into the regex as written."""
    out, pos = ["^"], 0
    while pos < len(pattern):
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pattern[pos:pos + 1] == "*":
                pos += 1
                if pattern[pos:pos + 1] == "/":
                    pos += 1
                out.append(".*" if pos >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in ".$":
            out.append("\\" + ch)
        elif ch == "\\":
            if pos < len(pattern):
                out.append("\\" + pattern[pos])
                pos += 1
            else:
                out.append("\\\\")
        else:
            out.append(ch)
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise PatternError(pattern) from None


def read_patterns(text: str) -> list[str]:
    """dockerignore.ReadAll: one pattern a line, `#` comments, blank lines skipped, each
    cleaned (filepath.Clean) with its leading "/" dropped, "!" kept in front."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if number == 0:
            line = line.removeprefix(_BOM)
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if pattern == "":
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


class IgnoreRules:
    """fileutils.PatternMatcher over a .dockerignore's patterns: the last pattern that
    matches a path (or one of its parent folders) decides, "!" ones include it again."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if text == "":
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if text == "!":
                    raise PatternError('illegal exclusion pattern: "!"')
                text = text[1:]
            match_regex(text)  # moby's syntax check: filepath.Match's errors
            self.patterns.append(_Pattern(text, exclusion, len(text.split("/")),
                                          _moby_regex(text)))

    @classmethod
    def from_text(cls, text: str) -> IgnoreRules:
        """The rules of a .dockerignore file's text."""
        return cls(read_patterns(text))

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the path (relative to the context) is left out (fileutils.Matches)."""
        path = go_clean(path)
        if path == ".":
            return False
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        matched = False
        for pattern in self.patterns:
            hit = pattern.regex.match(path) is not None
            if not hit and parent != "." and pattern.depth <= len(parents):
                hit = pattern.regex.match("/".join(parents[:pattern.depth])) is not None
            if hit:
                matched = not pattern.exclusion
        return matched

    def dir_may_hold_included(self, path: str) -> bool:
        """Whether an excluded folder must still be walked: an exception ("!") pattern
        starts with it (the CLI's rule; `!**/x` does not count, as in the CLI)."""
        prefix = go_clean(path) + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)

    def removed_by_daemon(self, dockerfile: str) -> list[str]:
        """What dockerd deletes from a received context once it has read the Dockerfile:
        .dockerignore and the Dockerfile, each when the rules exclude it."""
        return [name for name in (IGNORE_FILE, go_clean(dockerfile).lstrip("/"))
                if self.excluded(name)]
