""".dockerignore as moby reads it, and Go's filepath.Match for COPY's wildcards."""

from __future__ import annotations

import pytest

from pouch.actors.builder.ignore import IgnoreRules, go_clean, has_wildcards, read_patterns
from pouch.actors.gomatch import PatternError, filepath_match

# The reference's example .dockerignore.
REFERENCE = """\
# comment
*/temp*
*/*/temp*
temp?
"""


def test_the_reference_example():
    rules = IgnoreRules.from_text(REFERENCE)
    assert rules.excluded("somedir/temporary.txt")
    assert rules.excluded("somedir/temp")  # a folder: everything in it too
    assert rules.excluded("somedir/temp/inner/file")
    assert rules.excluded("somedir/subdir/temporary.txt")
    assert rules.excluded("tempa") and rules.excluded("tempb")
    assert not rules.excluded("temp")  # temp? needs one more char
    assert not rules.excluded("temporary.txt")  # */temp* needs a folder above
    assert not rules.excluded("a/b/c/temp")


def test_double_star_crosses_folders():
    rules = IgnoreRules.from_text("**/*.go\n")
    assert rules.excluded("main.go") and rules.excluded("a/b/c.go")
    assert not rules.excluded("a/b/c.gox")
    rules = IgnoreRules.from_text("a/**\n")
    assert rules.excluded("a/x/y") and not rules.excluded("ab")
    rules = IgnoreRules.from_text("a/**/z\n")
    assert rules.excluded("a/z") and rules.excluded("a/b/c/z") and not rules.excluded("a/b/y")


def test_exceptions_and_the_last_match_wins():
    rules = IgnoreRules.from_text("*.md\n!README*.md\nREADME-secret.md\n")
    assert rules.excluded("CHANGES.md")
    assert not rules.excluded("README.md")
    assert rules.excluded("README-secret.md")
    rules = IgnoreRules.from_text("*.md\nREADME-secret.md\n!README*.md\n")
    assert not rules.excluded("README-secret.md")
    assert rules.has_exceptions


def test_patterns_are_cleaned_and_rooted_at_the_context():
    assert read_patterns("/foo/../bar/\n  ./baz  \n! /qux\n\n# c\n #not a comment\n") == [
        "bar", "baz", "!qux", "#not a comment"]
    rules = IgnoreRules.from_text("/node_modules\n")
    assert rules.excluded("node_modules/x/y.js")
    assert rules.excluded("./node_modules")
    assert not rules.excluded(".")
    assert read_patterns("\ufeffa\r\n") == ["a"]


def test_a_folder_excluded_is_walked_only_for_an_exception_inside():
    rules = IgnoreRules.from_text("docs\n!docs/keep.md\n")
    assert rules.excluded("docs") and rules.excluded("docs/other.md")
    assert not rules.excluded("docs/keep.md")
    assert rules.dir_may_hold_included("docs")
    assert not rules.dir_may_hold_included("src")
    assert not IgnoreRules.from_text("docs\n").dir_may_hold_included("docs")


def test_the_daemon_removes_an_excluded_dockerfile_and_dockerignore_only():
    rules = IgnoreRules.from_text("Dockerfile*\n.dockerignore\nsecret\n")
    assert rules.removed_by_daemon("Dockerfile") == [".dockerignore", "Dockerfile"]
    assert rules.removed_by_daemon("sub/Dockerfile.dev") == [".dockerignore"]
    assert IgnoreRules.from_text("*.txt\n").removed_by_daemon("Dockerfile") == []


def test_bad_patterns_are_refused():
    for bad in ("[", "a[b", "[]a]", "a\\", "[a-]"):
        with pytest.raises(PatternError):
            IgnoreRules([bad])
    with pytest.raises(PatternError, match='illegal exclusion pattern: "!"'):
        IgnoreRules(["!"])


def test_filepath_match_as_go():
    assert filepath_match("*.txt", "a.txt") and not filepath_match("*.txt", "d/a.txt")
    assert filepath_match("d*/f?le", "dir/file")
    assert filepath_match("[a-c]x", "bx") and not filepath_match("[^a-c]x", "bx")
    assert filepath_match("\\*x", "*x") and not filepath_match("\\*x", "ax")
    assert filepath_match("[\\]]", "]")
    assert not filepath_match("a*", "a/b")
    with pytest.raises(PatternError):
        filepath_match("[", "a")


def test_wildcards_and_clean():
    assert has_wildcards("*.txt") and has_wildcards("a?") and has_wildcards("[ab]")
    assert not has_wildcards("plain/name") and not has_wildcards("a\\*b")
    assert go_clean("") == "." and go_clean("//a//b/../c/.") == "/a/c"
    assert go_clean("a/../..") == ".."
