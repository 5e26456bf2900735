"""The pure rules of health checks (pouch.actors.container.health)."""

from __future__ import annotations

import pytest

from pouch.actors.container import health as h
from pouch.actors.timefmt import rfc3339_nano
from pouch.proto.envelope import PouchError

T0 = 1_700_000_000.0


def result(code: int, at: float = T0 + 100) -> dict:
    stamp = rfc3339_nano(int(at * 1_000_000_000))
    return {"Start": stamp, "End": stamp, "ExitCode": code, "Output": ""}


def test_the_body_overrides_the_image_field_by_field():
    image = {"Test": ["CMD", "true"], "Interval": 5, "Retries": 4}
    assert h.merge(image, None) == image
    assert h.merge(None, None) is None
    assert h.merge(image, {"Interval": 9}) == {"Test": ["CMD", "true"], "Interval": 9,
                                               "Retries": 4}
    assert (h.merge(image, {"Test": ["NONE"]}) or {})["Test"] == ["NONE"]


def test_the_test_forms():
    assert h.probe_command(["NONE"]) is None
    assert h.probe_command([]) is None
    assert h.probe_command(["CMD", "ls", "-l"]) == ["ls", "-l"]
    assert h.probe_command(["CMD-SHELL", "exit 1"]) == ["/bin/sh", "-c", "exit 1"]
    assert h.probe_command(["CMD-SHELL", "x"], ["/bin/bash", "-xc"]) == ["/bin/bash", "-xc", "x"]


def test_defaults_fill_a_check():
    check = h.check_of({"Healthcheck": {"Test": ["CMD", "true"]}})
    assert check == h.Check(["true"], 30.0, 30.0, 3, 0.0)
    assert h.check_of({"Healthcheck": {"Test": ["NONE"]}}) is None
    assert h.check_of({}) is None


@pytest.mark.parametrize("body", [{"Interval": 5}, {"Timeout": -1}, {"StartPeriod": 999},
                                  {"Retries": -1}, {"Test": "true"}, {"Retries": True}])
def test_bad_checks_are_refused(body):
    with pytest.raises(PouchError) as err:
        h.check_config(body)
    assert err.value.code == "invalid"


def test_failures_reach_unhealthy_at_retries_and_a_success_heals():
    state = h.fresh(None)
    state = h.on_result(state, result(1), 2, 0, T0)
    assert (state["Status"], state["FailingStreak"]) == ("starting", 1)
    state = h.on_result(state, result(1), 2, 0, T0)
    assert (state["Status"], state["FailingStreak"]) == ("unhealthy", 2)
    state = h.on_result(state, result(0), 2, 0, T0)
    assert (state["Status"], state["FailingStreak"]) == ("healthy", 0)
    assert len(state["Log"]) == 3


def test_failures_in_the_start_period_do_not_count():
    state = h.on_result(h.fresh(None), result(1, T0 + 1), 1, 3600, T0)
    assert (state["Status"], state["FailingStreak"]) == ("starting", 0)
    state = h.on_result(state, result(0, T0 + 2), 1, 3600, T0)
    assert state["Status"] == "healthy"
    # Once healthy, the start period spares nothing.
    state = h.on_result(state, result(1, T0 + 3), 1, 3600, T0)
    assert state["Status"] == "unhealthy"


def test_the_log_keeps_the_last_five_and_output_is_cut():
    state = h.fresh(None)
    for code in range(8):
        state = h.on_result(state, result(code), 100, 0, T0)
    assert [r["ExitCode"] for r in state["Log"]] == [3, 4, 5, 6, 7]
    assert h.fresh(state)["Log"] == state["Log"]
    assert len(h.limit_output(b"x" * 10000)) == h.OUTPUT_KEPT


def test_ps_notes():
    assert h.status_note(None) == ""
    assert h.status_note(h.fresh(None)) == " (health: starting)"
    assert h.status_note({"Status": "healthy"}) == " (healthy)"
    assert h.status_note({"Status": "unhealthy"}) == " (unhealthy)"
