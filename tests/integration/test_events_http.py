"""GET /events as Docker's clients read it: the docker CLI and docker-py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import docker as docker_py
import pytest
from docker.errors import APIError


def test_docker_events_between_since_and_until_tells_a_containers_life(
        docker: Callable[..., str], name: str):
    started = time.time()
    docker("run", "--name", name, "--label", "team=http", "busybox", "true")
    docker("rm", name)
    # The CLI ends by itself at --until: the kept events, filtered.
    out = docker("events", "--since", f"{started:.6f}", "--until", f"{time.time() + 0.5:.6f}",
                 "--filter", f"container={name}", "--format",
                 "{{.Type}} {{.Action}} {{.Actor.Attributes.team}}")
    assert out.splitlines() == [f"container {a} http"
                                for a in ("create", "attach", "start", "die", "destroy")]


def test_docker_py_follows_live_events_with_filters(
        client: docker_py.DockerClient, docker: Callable[..., str], name: str):
    # Without since, only what happens from now: nothing kept is replayed.
    events = client.events(decode=True, filters={"event": "die", "label": "team=live"})
    seen: list[dict[str, Any]] = []

    def read() -> None:
        seen.append(next(events))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        docker("run", "--rm", "--name", f"{name}-other", "busybox", "true")
        docker("run", "--rm", "--name", name, "--label", "team=live", "busybox", "true")
        reader.join(20)
    finally:
        events.close()
    assert not reader.is_alive()
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in seen] == [("die", name)]


@pytest.mark.parametrize(("params", "says"), [
    ({"since": "yesterday"}, "yesterday"),
    ({"since": "20", "until": "10"}, "since must not be after until"),
    ({"filters": '{"colour": ["red"]}'}, "colour"),
])
def test_bad_events_parameters_are_a_400_naming_them(
        api: docker_py.APIClient, params: dict[str, str], says: str):
    answer = api._get(api._url("/events"), params=params, stream=True)
    with pytest.raises(APIError) as err:
        api._raise_for_status(answer)
    assert err.value.status_code == 400
    assert says in str(err.value.explanation)
