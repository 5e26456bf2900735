"""Times as Docker writes them (RFC 3339 with nanoseconds, `docker ps` durations)
and reads them (`since`/`until`)."""

from __future__ import annotations

import time

import pytest

from pouch.actors.timefmt import (
    ZERO_TIME,
    human_duration,
    parse_rfc3339,
    parse_timestamp,
    rfc3339_nano,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MINUTE, HOUR, DAY = 60, 3600, 86400


# -- rfc3339_nano ------------------------------------------------------------


@pytest.mark.parametrize(("ns", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (1, "1970-01-01T00:00:00.000000001Z"),
    (1_500_000_000, "1970-01-01T00:00:01.5Z"),
    (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
    (1_700_000_000_120_000_000, "2023-11-14T22:13:20.12Z"),
    (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
])
def test_rfc3339_nano_drops_trailing_zeros_like_go(ns, text):
    assert rfc3339_nano(ns) == text


def test_rfc3339_nano_defaults_to_now():
    before = time.time()
    stamp = parse_rfc3339(rfc3339_nano())
    assert before - 1 <= stamp <= time.time() + 1


# -- parse_rfc3339 -----------------------------------------------------------


def test_parse_rfc3339_reads_what_rfc3339_nano_writes():
    assert parse_rfc3339(rfc3339_nano(1_700_000_000_250_000_000)) == pytest.approx(NOW + 0.25)


@pytest.mark.parametrize(("text", "seconds"), [
    ("2023-11-14T22:13:20Z", NOW),
    ("2023-11-14T22:13:20.5Z", NOW + 0.5),
    ("2023-11-14T22:13:20.000000001Z", NOW + 1e-9),
    ("2023-11-15T00:13:20+02:00", NOW),
    ("2023-11-14T17:13:20.25-05:00", NOW + 0.25),
])
def test_parse_rfc3339_with_fractions_and_offsets(text, seconds):
    assert parse_rfc3339(text) == pytest.approx(seconds, abs=1e-6)


def test_the_zero_time_parses():
    assert parse_rfc3339(ZERO_TIME) < 0


@pytest.mark.parametrize("text", ["", "2023-11-14", "2023-11-14 22:13:20Z",
                                  "2023-11-14T22:13:20", "yesterday", "1700000000"])
def test_parse_rfc3339_refuses_other_forms(text):
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_rfc3339(text)


# -- parse_timestamp -----------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("1700000000", NOW),
    ("1700000000.5", NOW + 0.5),
    ("1700000000.000000001", NOW),
    ("0", 0.0),
    ("  1700000000 ", NOW),
])
def test_parse_timestamp_takes_unix_seconds(value, seconds):
    assert parse_timestamp(value, now=5.0) == pytest.approx(seconds)


def test_parse_timestamp_takes_rfc3339():
    assert parse_timestamp("2023-11-14T22:13:20.5Z", now=5.0) == pytest.approx(NOW + 0.5)


@pytest.mark.parametrize(("value", "back"), [
    ("10s", 10), ("10m", 10 * MINUTE), ("2h", 2 * HOUR), ("1h30m", 90 * MINUTE),
    ("1.5h", 90 * MINUTE), ("500ms", 0.5), ("1m30s", 90), ("250us", 250e-6),
    ("3µs", 3e-6), ("7ns", 7e-9),
])
def test_parse_timestamp_takes_durations_back_from_now(value, back):
    assert parse_timestamp(value, now=NOW) == pytest.approx(NOW - back)


def test_parse_timestamp_counts_from_the_clock_by_default():
    expected = time.time() - 60
    assert parse_timestamp("1m") == pytest.approx(expected, abs=2)


@pytest.mark.parametrize("value", ["", "soon", "10x", "h", "1d", "-", "10 m", "2023-11-14"])
def test_parse_timestamp_refuses_anything_else(value):
    with pytest.raises(ValueError):
        parse_timestamp(value, now=NOW)


# -- human_duration ------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "Less than a second"),
    (0.9, "Less than a second"),
    (1, "1 second"),
    (1.9, "1 second"),
    (2, "2 seconds"),
    (59, "59 seconds"),
    (60, "About a minute"),
    (119, "About a minute"),
    (120, "2 minutes"),
    (59 * MINUTE + 59, "59 minutes"),
    (HOUR, "About an hour"),
    (HOUR + 29 * MINUTE, "About an hour"),
    (HOUR + 31 * MINUTE, "2 hours"),
    (47 * HOUR, "47 hours"),
    (48 * HOUR, "2 days"),
    (13 * DAY, "13 days"),
    (14 * DAY, "2 weeks"),
    (59 * DAY, "8 weeks"),
    (60 * DAY, "2 months"),
    (729 * DAY, "24 months"),
    (730 * DAY, "2 years"),
    (365 * 5 * DAY, "5 years"),
])
def test_human_duration_words_like_docker(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (2 * HOUR + 30 * MINUTE, "3 hours"),
    (4 * HOUR + 30 * MINUTE, "5 hours"),
    (730 * DAY - 1, "1 years"),
])
def test_human_duration_rounds_hours_like_go(seconds, text):
    assert human_duration(seconds) == text
