"""The Dockerfile as dockerd's classic builder reads it: directives, continuations,
comments, each instruction's arguments, the refusals naming their line, word expansion."""

from __future__ import annotations

import pytest

from pouch.actors.builder.dockerfile import (
    DockerfileError,
    Instruction,
    arg_pairs,
    expand,
    expand_words,
    go_duration,
    health_config,
    pairs,
    parse,
    parse_instruction,
    shell_split,
    stage_index,
    step_count,
    with_labels,
)


def one(line: str) -> Instruction:
    return parse_instruction(line)


def refused(text: str) -> str:
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    return str(caught.value)


def test_a_multi_stage_file_reads_into_stages_with_meta_args_first():
    df = parse("ARG BASE=busybox\n"
               "FROM $BASE AS Build\n"
               "RUN make\n"
               "\n"
               "from --platform=linux/amd64 scratch\n"
               "COPY --from=build /out /\n"
               'CMD ["/out"]\n')
    assert [m.original for m in df.meta_args] == ["ARG BASE=busybox"]
    first, second = df.stages
    assert (first.name, first.base, first.platform) == ("build", "$BASE", None)
    assert [i.command for i in first.instructions] == ["run"]
    assert (second.name, second.base, second.platform) == (None, "scratch", "linux/amd64")
    assert second.from_line.line == 5 and second.from_line.command == "from"
    copy, cmd = second.instructions
    assert copy.flags == {"from": "build"} and copy.args == ["/out", "/"]
    assert cmd.json_form and cmd.args == ["/out"] and cmd.line == 7
    assert step_count(df) == 1 + 2 + 3


def test_step_count_stops_at_the_target_and_counts_added_labels():
    df = parse("FROM a AS one\nRUN x\nFROM b AS two\nRUN y\nRUN z\n")
    assert step_count(df) == 5
    assert step_count(df, "ONE") == 2 and stage_index(df, "one") == 0
    with pytest.raises(DockerfileError, match="failed to reach build target nope in Dockerfile"):
        step_count(df, "nope")
    labelled = with_labels(df, {"b": "2", "a": "1"}, target="one")
    assert [str(i) for i in labelled.stages[0].instructions] == ["RUN x", "LABEL a=1", "LABEL b=2"]
    assert not labelled.stages[0].instructions[1].expand
    assert step_count(labelled, "one") == 4


def test_continuations_join_lines_and_skip_comments_inside_them():
    df = parse("FROM busybox\n"
               "RUN echo one \\\n"
               "# a comment inside\n"
               "    && echo two \\  \n"
               "\n"
               "  && echo three\n"
               "   # indented comment\n"
               "CMD x\n")
    run, cmd = df.stages[0].instructions
    assert run.args == ["echo one     && echo two   && echo three"]
    assert run.line == 2 and cmd.line == 8
    assert df.warnings[0].startswith("[WARNING]: Empty continuation line found in:")
    assert df.warnings[-1] == ("[WARNING]: Empty continuation lines will become errors in a "
                               "future release.")


def test_the_escape_directive_changes_the_continuation_char():
    df = parse("# escape=`\n"
               "FROM windows\n"
               "COPY testfile.txt c:\\ `\n"
               "     d:\\\n")
    assert df.escape == "`"
    assert df.stages[0].instructions[0].args == ["testfile.txt", "c:\\", "d:\\"]


def test_directives_only_count_before_anything_else():
    df = parse("FROM busybox\n# escape=`\nRUN a \\\n b\n")
    assert df.escape == "\\" and df.stages[0].instructions[0].args == ["a  b"]
    df = parse("\n# escape=`\nFROM busybox\n")  # a blank line ends the directives
    assert df.escape == "\\"
    df = parse("#Escape = ` \nFROM busybox\n")
    assert df.escape == "`"
    df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\n")
    assert df.escape == "\\"  # dockerd 20.10's classic parser knows only escape
    assert "only one escape parser directive can be used" in refused(
        "# escape=`\n# escape=\\\nFROM busybox\n")
    assert "invalid ESCAPE 'x'. Must be ` or \\" in refused(
        "# escape=x\nFROM busybox\n")


def test_crlf_and_a_byte_order_mark_are_read_through():
    df = parse("\ufeffFROM busybox\r\nRUN a \\\r\n b\r\n")
    assert df.stages[0].base == "busybox"
    assert df.stages[0].instructions[0].args == ["a  b"]


def test_commands_are_case_insensitive_and_errors_name_the_line():
    df = parse("from busybox\nRuN true\n")
    assert df.stages[0].instructions[0].command == "run"
    assert refused("FROM busybox\nRUN true\nFOO bar\n") == (
        "dockerfile parse error line 3: unknown instruction: FOO")
    assert refused("RUN true\n") == (
        "dockerfile parse error line 1: no build stage in current context")
    assert refused("# only a comment\n") == "No image was generated. Is your Dockerfile empty?"


def test_a_line_longer_than_the_scanner_takes_is_refused():
    parse("FROM busybox\nRUN " + "x" * 65531 + "\n")
    assert refused("FROM busybox\nRUN " + "x" * 65532 + "\n") == (
        "dockerfile parse error line 2: dockerfile line greater than max allowed size of 65535")


def test_the_error_of_a_continued_instruction_names_its_first_line():
    assert refused("FROM busybox\n\nCOPY \\\n  onlyone\n") == (
        "dockerfile parse error line 3: COPY requires at least two arguments, but only one "
        "was provided. Destination could not be determined.")


def test_from_takes_one_or_three_words_and_a_valid_stage_name():
    assert "FROM requires either one or three arguments" in refused("FROM a b\n")
    assert 'invalid name for build stage: "1x", name can\'t start with a number' in refused(
        "FROM a AS 1X\n")


def test_run_cmd_entrypoint_shell_have_exec_and_shell_forms():
    assert one('RUN ["echo", "hi there"]').args == ["echo", "hi there"]
    assert one('RUN ["echo", "hi there"]').json_form
    assert one("RUN echo [not json").args == ["echo [not json"]
    assert one('CMD ["a", "b"') .args == ['["a", "b"']  # bad JSON: the shell form
    assert one("ENTRYPOINT   top -b  ").args == ["top -b"]
    assert one("CMD []").args == [] and one("CMD []").json_form
    assert one("CMD").args == []
    assert one('SHELL ["powershell", "-command"]').args == ["powershell", "-command"]
    with pytest.raises(DockerfileError, match="line 1: SHELL requires the arguments to be in "
                                              "JSON form"):
        one("SHELL /bin/bash -c")
    with pytest.raises(DockerfileError, match="arrays must be comprised of strings only"):
        one('CMD ["a", 1]')


def test_env_and_label_have_both_forms():
    assert pairs(one("ENV A 1 2  3")) == [("A", "1 2  3")]
    assert pairs(one('ENV A=1 B="two words" C=x\\ y D=')) == [
        ("A", "1"), ("B", '"two words"'), ("C", "x\\ y"), ("D", "")]
    assert pairs(one('LABEL "com.example.vendor"="ACME Inc" version=1.0')) == [
        ('"com.example.vendor"', '"ACME Inc"'), ("version", "1.0")]
    with pytest.raises(DockerfileError, match="ENV must have two arguments"):
        one("ENV A")
    with pytest.raises(DockerfileError, match="can't find = in \"B\""):
        one("ENV A=1 B")
    with pytest.raises(DockerfileError, match="LABEL requires at least one argument"):
        one("LABEL")
    with pytest.raises(DockerfileError, match="ENV names can not be blank"):
        one("ENV =x")


def test_arg_has_names_and_defaults():
    assert arg_pairs(one("ARG user1")) == [("user1", None)]
    assert arg_pairs(one("ARG buildno=1")) == [("buildno", "1")]
    assert arg_pairs(one('ARG v="a b"')) == [("v", '"a b"')]
    assert arg_pairs(one("ARG e=")) == [("e", "")]
    for bad in ("ARG", "ARG a=1 b=2"):
        with pytest.raises(DockerfileError, match="ARG requires exactly one argument"):
            one(bad)
    with pytest.raises(DockerfileError, match="ARG names can not be blank"):
        one("ARG =1")


def test_words_and_single_string_instructions():
    assert one("EXPOSE 80/tcp  443").args == ["80/tcp", "443"]
    assert one("VOLUME /a /b").args == ["/a", "/b"]
    assert one('VOLUME ["/data"]').args == ["/data"] and one('VOLUME ["/data"]').json_form
    assert one("USER app:staff").args == ["app:staff"]
    assert one("WORKDIR /path with space").args == ["/path with space"]
    assert one("STOPSIGNAL SIGKILL").args == ["SIGKILL"]
    assert one("MAINTAINER Jane <j@x>").args == ["Jane <j@x>"]
    assert one('ADD ["a b", "/c/"]').args == ["a b", "/c/"]
    assert one("COPY --chown=1:2 a* /d/").flags == {"chown": "1:2"}
    for bare in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"):
        with pytest.raises(DockerfileError, match=f"{bare} requires exactly one argument"):
            one(bare)
    for bare in ("EXPOSE", "VOLUME"):
        with pytest.raises(DockerfileError, match=f"{bare} requires at least one argument"):
            one(bare)


def test_flags_are_checked_per_instruction():
    with pytest.raises(DockerfileError, match="Unknown flag: from"):
        one("ADD --from=x a b")
    with pytest.raises(DockerfileError, match="Unknown flag: mount"):
        one("RUN --mount=type=cache,target=/x true")
    with pytest.raises(DockerfileError, match="Missing a value on flag: chown"):
        one("COPY --chown a b")
    with pytest.raises(DockerfileError, match="Duplicate flag specified: from"):
        one("COPY --from=a --from=b a b")
    with pytest.raises(DockerfileError, match="Unknown flag: chmod"):
        one("COPY --chmod=755 a b")
    assert one('COPY --chown="a b" x y').flags == {"chown": "a b"}
    assert one("COPY -- --from=x y").args == ["--from=x", "y"]


def test_onbuild_keeps_its_trigger_and_refuses_some():
    ins = one("ONBUILD ADD . /app/src")
    assert ins.args == ["ADD . /app/src"]
    assert parse_instruction(ins.args[0]).command == "add"
    with pytest.raises(DockerfileError, match="Chaining ONBUILD via `ONBUILD ONBUILD` isn't"):
        one("ONBUILD ONBUILD RUN x")
    with pytest.raises(DockerfileError, match="FROM isn't allowed as an ONBUILD trigger"):
        one("onbuild from x")
    with pytest.raises(DockerfileError, match="MAINTAINER isn't allowed as an ONBUILD"):
        one("ONBUILD MAINTAINER me")


def test_healthcheck_none_or_cmd_with_its_options():
    assert health_config(one("HEALTHCHECK NONE")) == {"Test": ["NONE"]}
    ins = one("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --retries=3 "
              "CMD curl -f http://localhost/ || exit 1")
    assert health_config(ins) == {
        "Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        "Interval": 300_000_000_000, "Timeout": 3_000_000_000,
        "StartPeriod": 90_000_000_000, "Retries": 3}
    assert health_config(one('HEALTHCHECK CMD ["true"]')) == {"Test": ["CMD", "true"]}
    with pytest.raises(DockerfileError, match="HEALTHCHECK NONE takes no arguments"):
        one("HEALTHCHECK NONE x")
    with pytest.raises(DockerfileError, match='Unknown type "RUN" in HEALTHCHECK'):
        one("HEALTHCHECK RUN x")
    with pytest.raises(DockerfileError, match="Missing command after HEALTHCHECK CMD"):
        one("HEALTHCHECK CMD")
    with pytest.raises(DockerfileError, match='Interval "interval" cannot be less than 1ms'):
        one("HEALTHCHECK --interval=10us CMD x")
    with pytest.raises(DockerfileError, match="--retries must be at least 1"):
        one("HEALTHCHECK --retries=0 CMD x")


def test_go_durations():
    assert go_duration("1.5h") == 5_400_000_000_000
    assert go_duration("250ms") == 250_000_000
    assert go_duration("1m30s") == 90_000_000_000
    assert go_duration("0") == 0
    for bad in ("", "5", "5x", "s", "."):
        with pytest.raises(DockerfileError):
            go_duration(bad)


def test_shell_split_keeps_quotes_and_escapes_for_expansion():
    assert shell_split('a="b c" d\\ e \'f g\'') == ['a="b c"', "d\\ e", "'f g'"]
    assert shell_split('x="a\\"b"') == ['x="a\\"b"']
    assert shell_split("a`  b", "`") == ["a` ", "b"]
    assert shell_split("  ") == []
    assert shell_split('""') == ['""']


def test_expand_as_the_reference_shows():
    env = {"FOO": "/bar", "EMPTY": "", "TWO": "a b"}
    assert expand("$FOO", env) == "/bar"
    assert expand("${FOO}/x", env) == "/bar/x"
    assert expand("${FOO:-d}-${NOPE:-d}-${EMPTY:-d}", env) == "/bar-d-d"
    assert expand("${FOO:+set}-${NOPE:+set}", env) == "set-"
    assert expand("\\$FOO", env) == "$FOO"
    assert expand("'$FOO'", env) == "$FOO"
    assert expand('"$FOO \\"q\\""', env) == '/bar "q"'
    assert expand("a\\ b", env) == "a b"
    assert expand("$", env) == "$" and expand("$1x", env) == "x"
    assert expand("${NOPE:-${FOO}}", env) == "/bar"
    assert expand("`$FOO", env, escape="`") == "$FOO"
    for bad, why in (("${FOO:-x", "missing '}'"), ("${FOO", "missing ':' in substitution"),
                     ("${}", "bad substitution"),
                     ("${FOO:?x}", r"unsupported modifier \(\?\) in substitution"),
                     ("'abc", "matching single-quote"), ('"abc', "matching double-quote")):
        with pytest.raises(DockerfileError, match=f'failed to process ".*": .*{why}'):
            expand(bad, env)


def test_expand_words_splits_unquoted_variables():
    env = {"PORTS": "80/tcp  443"}
    assert expand_words(["$PORTS", "8080"], env) == ["80/tcp", "443", "8080"]
    assert expand_words(['"$PORTS"'], env) == ["80/tcp  443"]
