from prometheus_client.parser import text_string_to_metric_families

from pouch.actors.exposition import render
from pouch.actors.metrics import ActorMetrics


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_each_process_counts_and_one_exposition_merges_them():
    image, container = ActorMetrics("image"), ActorMetrics("container")
    image.observe("list", 0.002, None)
    image.observe("list", 0.004, None)
    container.observe("start", 0.3, "conflict")
    restarts = container.counter("pouch_child_restarts", "Restarts", ("child",))
    restarts.inc("container")

    parsed = families(render([image.snapshot(), container.snapshot()]))

    requests = {(s.labels["service"], s.labels["method"]): s.value
                for s in parsed["pouch_requests"] if s.name == "pouch_requests_total"}
    assert requests == {("image", "list"): 2.0, ("container", "start"): 1.0}
    errors = [s for s in parsed["pouch_request_errors"] if s.name.endswith("_total")]
    assert [(s.labels["code"], s.value) for s in errors] == [("conflict", 1.0)]
    assert [s.value for s in parsed["pouch_child_restarts"] if s.name.endswith("_total")] \
        == [1.0]


def test_latency_is_a_cumulative_histogram():
    metrics = ActorMetrics("image")
    for seconds in (0.0004, 0.003, 0.003, 2.0):
        metrics.observe("inspect", seconds, None)
    samples = families(render([metrics.snapshot()]))["pouch_request_seconds"]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 3 and buckets["+Inf"] == 4
    count = next(s.value for s in samples if s.name.endswith("_count"))
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert count == 4 and abs(total - 2.0064) < 1e-9


def test_a_snapshot_survives_msgpack():
    from pouch.proto import envelope as env

    metrics = ActorMetrics("system")
    metrics.observe("info", 0.01, None)
    snapshot = env.unpack(env.pack(metrics.snapshot()))
    assert "pouch_requests_total" in render([snapshot])


def test_requests_in_flight_are_those_taken_and_not_answered():
    metrics = ActorMetrics("container")
    metrics.begin("create")
    metrics.begin("create")
    metrics.begin("list")
    metrics.observe("create", 0.01, None)
    metrics.observe("list", 0.001, "invalid")
    samples = families(render([metrics.snapshot()]))["pouch_requests_in_flight"]
    assert {s.labels["method"]: s.value for s in samples} == {"create": 1.0, "list": 0.0}
