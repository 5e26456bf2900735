"""The Dockerfile as dockerd's classic builder reads it: moby's parser (directives,
continuations, comments, each instruction's argument syntax), its instruction checks, and
the shell-like word expansion ($VAR, ${VAR:-x}, quotes) its dispatchers apply. Pure: text
in, values out; every refusal is a `DockerfileError` in dockerd's words, naming the line.

Nothing here expands variables at parse time: that needs the build args and each stage's
environment, which only the build knows. `EXPANDS` says which instructions the build
passes through `expand` (EXPOSE through `expand_words`: its one word may become several);
an ONBUILD trigger is parsed again when it runs (`parse_instruction` with the default
escape: dockerd parses each trigger as a Dockerfile of its own) and expanded then.

Facts are dockerd 20.10's (moby's vendored buildkit parser and instructions packages):
one ARG a line, no `--chmod`, only the `escape` directive (`# syntax=` ends directives).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

ESCAPE = "\\"
# Instructions whose arguments the classic builder expands with the stage's environment
# (and the build args in scope); FROM is expanded with the meta args (ARGs before FROM).
EXPANDS = frozenset({"add", "arg", "copy", "env", "expose", "from", "label", "stopsignal",
                     "user", "volume", "workdir"})
# The flags each instruction takes (dockerd's BFlags); any other is "Unknown flag".
FLAGS: dict[str, tuple[str, ...]] = {
    "from": ("platform",),
    "copy": ("from", "chown"),  # --chmod: BuildKit's; "Unknown flag" in dockerd 20.10
    "add": ("chown",),
    "healthcheck": ("interval", "timeout", "start-period", "retries"),
}
# Triggers ONBUILD refuses, and how.
_NOT_TRIGGERS = {"onbuild": "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                 "from": "FROM isn't allowed as an ONBUILD trigger",
                 "maintainer": "MAINTAINER isn't allowed as an ONBUILD trigger"}

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")  # the parser's reWhitespace
_DIRECTIVE = re.compile(r"^#[ \t]*escape[ \t]*=[ \t]*(.).*$", re.DOTALL)
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_ONBUILD = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"
_BOM = "\ufeff"
LINE_MAX = 65535  # bytes of one line (bufio.Scanner's buffer, its newline included)
MINIMUM_DURATION = 1_000_000  # ns: HEALTHCHECK's shortest interval, timeout, start period


class DockerfileError(ValueError):
    """A Dockerfile dockerd's classic builder would refuse, in its words."""


@dataclass(frozen=True)
class Instruction:
    """One instruction. `args` by command:

    - RUN, CMD, ENTRYPOINT, SHELL: the exec form's strings (`json_form`), else one string,
      the shell form's text ([] when there is none);
    - COPY, ADD, VOLUME: the JSON array's strings, else the whitespace-separated words;
    - FROM, EXPOSE: the whitespace-separated words;
    - ENV, LABEL: key, value, key, value, ... (raw: quotes and `$` kept for `expand`);
    - ARG: one word, `name` or `name=default` (raw; see `arg_pairs`);
    - USER, WORKDIR, STOPSIGNAL, MAINTAINER: the rest of the line, one string;
    - HEALTHCHECK: ["NONE"], or ["CMD", ...] with the command as RUN's (`json_form`);
    - ONBUILD: one string, the trigger's text (`parse_instruction` reads it).
    """

    command: str
    args: list[str]
    flags: dict[str, str]
    json_form: bool
    line: int
    original: str
    # False for what the build adds itself (`--label`): taken as is, never expanded.
    expand: bool = True

    def __str__(self) -> str:
        return self.original


@dataclass(frozen=True)
class Stage:
    name: str | None
    base: str
    platform: str | None
    instructions: list[Instruction]
    from_line: Instruction


@dataclass(frozen=True)
class Dockerfile:
    meta_args: list[Instruction]
    stages: list[Stage]
    escape: str
    # What the classic builder prints before the first step (empty continuation lines).
    warnings: list[str] = field(default_factory=list)


def _fail(line: int, message: str) -> DockerfileError:
    return DockerfileError(f"dockerfile parse error line {line}: {message}")


# -- the parser ------------------------------------------------------------------------


class _Directives:
    """The parser directive at the top of the file, `# escape=` (dockerd 20.10's classic
    parser knows no other: any other line, `# syntax=` included, ends the directives)."""

    def __init__(self) -> None:
        self.escape = ESCAPE
        self.done = False
        self.seen = False
        self._continuation = _continuation(ESCAPE)

    def consider(self, text: str, line: int) -> None:
        if self.done:
            return
        match = _DIRECTIVE.match(text.lower())
        if not match:
            self.done = True
            return
        if self.seen:
            raise _fail(line, "only one escape parser directive can be used")
        self.seen = True
        value = match.group(1)
        if value not in ("`", "\\"):
            raise _fail(line, f"invalid ESCAPE '{value}'. Must be ` or \\")
        self.escape = value
        self._continuation = _continuation(value)

    def trim_continuation(self, text: str) -> tuple[str, bool]:
        """The line without its continuation mark, and whether the instruction ends."""
        stripped, marks = self._continuation.subn("", text)
        return stripped, marks == 0


def _continuation(escape: str) -> re.Pattern[str]:
    return re.compile(re.escape(escape) + r"[ \t]*$")


def _lines(text: str) -> list[str]:
    """bufio.Scanner's lines: split on \\n, one trailing \\r dropped, no last empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse(text: str) -> Dockerfile:
    """Read a Dockerfile: its stages, the ARGs before the first FROM, the escape char."""
    directives = _Directives()
    lines = _lines(text.removeprefix(_BOM))
    for number, line in enumerate(lines, 1):
        if len(line.encode("utf-8", "surrogateescape")) > LINE_MAX:
            raise _fail(number, f"dockerfile line greater than max allowed size of {LINE_MAX}")
    warnings: list[str] = []
    instructions: list[Instruction] = []
    i = 0
    while i < len(lines):
        start = i + 1
        token = lines[i].lstrip()
        i += 1
        directives.consider(token, start)
        if token.startswith("#"):
            token = ""
        joined, ended = directives.trim_continuation(token)
        if ended and joined == "":
            continue
        empty_continuation = False
        while not ended and i < len(lines):
            raw = lines[i]
            i += 1
            stripped = raw.lstrip()
            if stripped.startswith("#"):
                continue
            if stripped == "":
                empty_continuation = True
                continue
            more, ended = directives.trim_continuation(raw)
            joined += more
        if empty_continuation:
            warnings.append("[WARNING]: Empty continuation line found in:\n    " + joined)
        instructions.append(parse_instruction(joined, directives.escape, start))
    if warnings:
        warnings.append("[WARNING]: Empty continuation lines will become errors in a future "
                        "release.")
    return _assemble(instructions, directives.escape, warnings)


def _assemble(instructions: list[Instruction], escape: str,
              warnings: list[str]) -> Dockerfile:
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.command == "from":
            stages.append(_stage(ins))
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.command == "arg":
            meta.append(ins)
        else:
            raise _fail(ins.line, "no build stage in current context")
    if not stages:
        raise DockerfileError("No image was generated. Is your Dockerfile empty?")
    return Dockerfile(meta_args=meta, stages=stages, escape=escape, warnings=warnings)


def _stage(ins: Instruction) -> Stage:
    args, name = ins.args, None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _fail(ins.line, f"invalid name for build stage: {_go_quote(name)}, name "
                                  "can't start with a number or contain symbols")
    elif len(args) != 1:
        raise _fail(ins.line, "FROM requires either one or three arguments")
    return Stage(name=name, base=args[0], platform=ins.flags.get("platform") or None,
                 instructions=[], from_line=ins)


def parse_instruction(text: str, escape: str = ESCAPE, line: int = 1) -> Instruction:
    """One instruction's text (already joined into one line), as the parser and the
    instructions package read it; an ONBUILD trigger is read again with this."""
    original = text.strip()
    head = _WHITESPACE.split(original, maxsplit=1)
    command = head[0].lower()
    rest, flag_words = _builder_flags(head[1]) if len(head) == 2 else ("", [])
    rest = rest.strip()
    if command not in _PARSERS:
        raise _fail(line, f"unknown instruction: {command.upper()}")
    try:
        flags = _flags(command, flag_words)
        args, json_form = _PARSERS[command](rest, escape)
        _check(command, args, json_form, flags, rest)
    except DockerfileError as e:
        raise _fail(line, str(e)) from None
    if command == "onbuild":
        args = [_ONBUILD.sub("", original)]
    return Instruction(command=command, args=args, flags=flags, json_form=json_form,
                       line=line, original=original)


def _builder_flags(text: str) -> tuple[str, list[str]]:
    """The leading `--name[=value]` words of an instruction's arguments, and the rest
    (moby's extractBuilderFlags: quotes and backslash escapes inside a flag's word)."""
    words: list[str] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos == n:
            return "", words
        if not text.startswith("--", pos):
            return text[pos:], words
        word, blank_ok, quote = "", False, ""
        while pos < n:
            ch = text[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\":
                    if pos + 1 == n:
                        quote = ""
                        pos += 1
                        continue
                    pos += 1
                    word += text[pos]
                else:
                    word += ch
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word += text[pos]
            else:
                word += ch
            pos += 1
        if word == "--":
            return text[pos:], words
        if blank_ok or word:
            words.append(word)
        if pos >= n:
            return "", words


def _flags(command: str, words: list[str]) -> dict[str, str]:
    allowed, flags = FLAGS.get(command, ()), {}
    for word in words:
        if not word.startswith("--"):
            raise DockerfileError(f"Arg should start with -- : {word}")
        name, has_value, value = word[2:].partition("=")
        if name not in allowed:
            raise DockerfileError(f"Unknown flag: {name}")
        if name in flags:
            raise DockerfileError(f"Duplicate flag specified: {name}")
        if not has_value:
            raise DockerfileError(f"Missing a value on flag: {name}")
        flags[name] = value
    return flags


def _json_array(rest: str) -> list[str] | None:
    """The exec form's strings, None when `rest` is no JSON array (the shell form)."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        # json.Decoder.Decode as Go uses it: the first value, whatever follows it.
        value, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError(_NOT_STRINGS)
    return value


def _maybe_json(rest: str, escape: str) -> tuple[list[str], bool]:
    if rest == "":
        return [], False
    array = _json_array(rest)
    return (array, True) if array is not None else ([rest], False)


def _maybe_json_list(rest: str, escape: str) -> tuple[list[str], bool]:
    array = _json_array(rest)
    return (array, True) if array is not None else _words(rest, escape)


def _words(rest: str, escape: str) -> tuple[list[str], bool]:
    return ([] if rest == "" else _WHITESPACE.split(rest)), False


def _string(rest: str, escape: str) -> tuple[list[str], bool]:
    return ([rest] if rest else []), False


_Parser = Callable[[str, str], tuple[list[str], bool]]


def _name_value(command: str) -> _Parser:
    def parse_pairs(rest: str, escape: str) -> tuple[list[str], bool]:
        words = shell_split(rest, escape)
        if not words:
            return [], False
        if "=" not in words[0]:  # the old form: KEY name value
            parts = _WHITESPACE.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise DockerfileError(f"{command} must have two arguments")
            return parts, False
        pairs: list[str] = []
        for word in words:
            if "=" not in word:
                raise DockerfileError(f"Syntax error - can't find = in {_go_quote(word)}. "
                                      "Must be of the form: name=value")
            key, _, value = word.partition("=")
            pairs += [key, value]
        return pairs, False
    return parse_pairs


def _arg(rest: str, escape: str) -> tuple[list[str], bool]:
    return shell_split(rest, escape), False


def _healthcheck(rest: str, escape: str) -> tuple[list[str], bool]:
    parts = rest.split(maxsplit=1)
    if not parts:
        return [], False
    args, json_form = _maybe_json(parts[1] if len(parts) == 2 else "", escape)
    return [parts[0], *args], json_form


def _onbuild(rest: str, escape: str) -> tuple[list[str], bool]:
    return ([rest] if rest else []), False


_PARSERS: dict[str, _Parser] = {
    "add": _maybe_json_list, "arg": _arg, "cmd": _maybe_json, "copy": _maybe_json_list,
    "entrypoint": _maybe_json, "env": _name_value("ENV"), "expose": _words,
    "from": _words, "healthcheck": _healthcheck, "label": _name_value("LABEL"),
    "maintainer": _string, "onbuild": _onbuild, "run": _maybe_json, "shell": _maybe_json,
    "stopsignal": _string, "user": _string, "volume": _maybe_json_list, "workdir": _string,
}


def _check(command: str, args: list[str], json_form: bool, flags: dict[str, str],
           rest: str) -> None:
    """The instructions package's checks of the arguments' number and shape."""
    name = command.upper()
    if command in ("env", "label", "expose", "volume", "onbuild", "shell",
                   "healthcheck") and not args:
        raise DockerfileError(f"{name} requires at least one argument")
    if command in ("user", "workdir", "stopsignal", "maintainer", "arg") and len(args) != 1:
        raise DockerfileError(f"{name} requires exactly one argument")
    if command in ("copy", "add") and len(args) < 2:
        raise DockerfileError(f"{name} requires at least two arguments, but only one was "
                              "provided. Destination could not be determined.")
    if command == "shell" and not json_form:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    if command in ("env", "label") and any(key == "" for key in args[::2]):
        raise DockerfileError(f"{name} names can not be blank")
    if command == "arg" and any(word.startswith("=") for word in args):
        raise DockerfileError("ARG names can not be blank")
    if command == "volume" and any(path.strip() == "" for path in args):
        raise DockerfileError("VOLUME specified can not be an empty string")
    if command == "onbuild":
        trigger = _WHITESPACE.split(rest.strip(), maxsplit=1)[0].lower()
        if trigger in _NOT_TRIGGERS:
            raise DockerfileError(_NOT_TRIGGERS[trigger])
    if command == "healthcheck":
        _health_config(args, json_form, flags)


def _go_quote(text: str) -> str:
    """Go's %q, near enough for messages."""
    return json.dumps(text, ensure_ascii=False)


# -- what the build reads off instructions ---------------------------------------------


def shell_split(text: str, escape: str = ESCAPE) -> list[str]:
    """The parser's word splitting (moby's parseWords) for ENV, LABEL and ARG: words at
    unquoted whitespace; quotes and escapes stay in the words, for `expand` to remove."""
    words: list[str] = []
    word, quote, in_word, blank_ok = "", "", False, False
    pos, n = 0, len(text)
    while pos < n:
        ch = text[pos]
        if not in_word:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = text[pos]
            word += ch
            pos += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append(word)
            word, in_word, blank_ok = "", False, False
            pos += 1
            continue
        if ch in "'\"":
            quote, blank_ok = ch, True
        if ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word += ch
            pos += 1
            ch = text[pos]
        word += ch
        pos += 1
    if in_word and (blank_ok or word):
        words.append(word)
    return words


def pairs(ins: Instruction) -> list[tuple[str, str]]:
    """ENV's and LABEL's (key, value) pairs, raw."""
    return list(zip(ins.args[::2], ins.args[1::2], strict=True))


def arg_pairs(ins: Instruction) -> list[tuple[str, str | None]]:
    """ARG's (name, default or None), raw: one pair (dockerd 20.10 takes one ARG a line)."""
    found: list[tuple[str, str | None]] = []
    for word in ins.args:
        name, has_default, default = word.partition("=")
        found.append((name, default if has_default else None))
    return found


def stage_index(df: Dockerfile, target: str | None) -> int:
    """The last stage a build for `target` runs (the last one without a target)."""
    if not target:
        return len(df.stages) - 1
    for i, stage in enumerate(df.stages):
        if stage.name is not None and stage.name == target.lower():
            return i
    raise DockerfileError(f"failed to reach build target {target} in Dockerfile")


def step_count(df: Dockerfile, target: str | None = None) -> int:
    """The n of "Step i/n": the meta ARGs, then each stage's FROM and instructions, up
    to the target's stage (after `with_labels`, whose LABELs count too)."""
    stages = df.stages[:stage_index(df, target) + 1]
    return len(df.meta_args) + len(stages) + sum(len(s.instructions) for s in stages)


def with_labels(df: Dockerfile, labels: Mapping[str, str],
                target: str | None = None) -> Dockerfile:
    """The build's `labels` as the classic builder adds them: one unexpanded LABEL per key,
    in key order, at the end of the last stage built (stages after the target dropped)."""
    last = stage_index(df, target)
    added = [Instruction(command="label", args=[key, labels[key]], flags={}, json_form=False,
                         line=0, original=f"LABEL {key}={labels[key]}", expand=False)
             for key in sorted(labels)]
    stages = [*df.stages[:last],
              replace(df.stages[last],
                      instructions=[*df.stages[last].instructions, *added])]
    return replace(df, stages=stages)


def health_config(ins: Instruction) -> dict[str, object]:
    """HEALTHCHECK's image config value (dockerd's container.HealthConfig, zeros left
    out as its JSON does): Test, Interval, Timeout, StartPeriod (ns), Retries."""
    return _health_config(ins.args, ins.json_form, ins.flags)


def _health_config(args: list[str], json_form: bool, flags: dict[str, str]) -> dict[str, object]:
    kind = args[0].upper()
    if kind == "NONE":
        if len(args) > 1:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise DockerfileError(f"Unknown type {_go_quote(kind)} in HEALTHCHECK (try CMD)")
    command = args[1:]
    if not command:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    config: dict[str, object] = {"Test": ["CMD" if json_form else "CMD-SHELL", *command]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                      ("start-period", "StartPeriod")):
        value = flags.get(flag, "")
        if value:
            ns = go_duration(value)
            if ns < MINIMUM_DURATION:
                raise DockerfileError(f'Interval "{flag}" cannot be less than 1ms')
            config[key] = ns
    if flags.get("retries"):
        try:
            retries = int(flags["retries"], 10)
        except ValueError:
            raise DockerfileError(f'strconv.ParseInt: parsing {_go_quote(flags["retries"])}: '
                                  "invalid syntax") from None
        if retries < 1:
            raise DockerfileError(f"--retries must be at least 1 (not {retries})")
        config["Retries"] = retries
    return config


_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def go_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s", "1.5h", "250ms")."""
    bad = DockerfileError(f"time: invalid duration {_go_quote(text)}")
    body = text[1:] if text[:1] in "+-" else text
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return 0
    if body == "":
        raise bad
    total, pos = 0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.end() == pos:
            raise bad
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise bad
        if unit not in _UNITS:
            raise (DockerfileError(f"time: missing unit in duration {_go_quote(text)}")
                   if unit == "" else
                   DockerfileError(f'time: unknown unit {_go_quote(unit)} in duration '
                                   f'{_go_quote(text)}'))
        scale = _UNITS[unit]
        total += int(whole or "0") * scale
        if fraction:
            total += int(int(fraction) * scale // 10 ** len(fraction))
        pos = match.end()
    return sign * total


# -- word expansion (moby's shell.Lex) -------------------------------------------------


class _Lexer:
    """ProcessWord and ProcessWords over one word; raises DockerfileError."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text, self.env, self.escape, self.pos = text, env, escape, 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def process(self, stop: str = "") -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.done()
            if ch in "'\"$":
                value = {"'": self.single_quote, '"': self.double_quote,
                         "$": self.dollar}[ch]()
                result.append(value)
                if ch == "$":
                    words.add_string(value)
                else:
                    words.add_raw(value)
                continue
            ch = self.next()
            if ch == self.escape:
                ch = self.next()
                if not ch:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise DockerfileError(
                f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.done()

    def single_quote(self) -> str:
        self.next()
        result: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise DockerfileError(
                    "unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(result)
            result.append(ch)

    def double_quote(self) -> str:
        self.next()
        result: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise DockerfileError(
                    "unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(result)
            if ch == "$":
                result.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        if not self.peek():
            raise DockerfileError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise DockerfileError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        if ch == ":":
            modifier = self.next()
            try:
                word, _ = self.process("}")
            except DockerfileError:
                if not self.peek():
                    raise DockerfileError("syntax error: missing '}'") from None
                raise
            value = self.env.get(name, "")
            if modifier == "+":
                return word if value else value
            if modifier == "-":
                return value or word
            raise DockerfileError(f"unsupported modifier ({modifier}) in substitution")
        raise DockerfileError("missing ':' in substitution")

    def name(self) -> str:
        name: list[str] = []
        while self.peek():
            ch = self.peek()
            if not name and ch.isdigit():
                while self.peek() and self.peek().isdigit():
                    name.append(self.next())
                return "".join(name)
            if not name and ch in "@*#?-$!0":
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)


class _Words:
    """ProcessWords' word builder: unquoted whitespace (also from a $VAR) splits words."""

    def __init__(self) -> None:
        self.word, self.in_word = "", False
        self.words: list[str] = []

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def done(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


def _process(word: str, env: Mapping[str, str], escape: str) -> tuple[str, list[str]]:
    try:
        return _Lexer(word, env, escape).process()
    except DockerfileError as e:
        raise DockerfileError(f"failed to process {_go_quote(word)}: {e}") from None


def expand(word: str, env: Mapping[str, str], escape: str = ESCAPE) -> str:
    """One argument with $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative} replaced,
    quotes removed and escapes applied (moby's ProcessWord); whitespace kept."""
    return _process(word, env, escape)[0]


def expand_words(words: Iterable[str], env: Mapping[str, str],
                 escape: str = ESCAPE) -> list[str]:
    """Each word expanded and split at unquoted whitespace, its variables' included
    (moby's ProcessWords, as EXPOSE uses it: `EXPOSE $PORTS` with PORTS="80 443")."""
    return [part for word in words for part in _process(word, env, escape)[1]]
