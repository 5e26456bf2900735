"""The actor host: where each request's answer goes (Reply), and the inbox that is
also the broker socket (Host), driven through real threads and a real ZeroMQ socket."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from pouch.actors.host import Reply, host_of
from pouch.broker.router import HEARTBEAT_LIVENESS
from pouch.proto import envelope as env
from pouch.tests.support.probe import ANSWER_WITHIN, BrokerEnd, hosted

BEAT = 0.2  # a heartbeat interval short enough to see several


class Answers:
    """What a Reply delivered, and what its on_done was told."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, Any], bool]] = []
        self.done: list[str | None] = []
        self.finished = threading.Event()

    def deliver(self, body: bytes, final: bool, _rid: int) -> None:
        self.bodies.append((env.unpack(body), final))

    def on_done(self, code: str | None) -> None:
        self.done.append(code)
        self.finished.set()

    def reply(self) -> Reply:
        return Reply(self.deliver, 7, "probe.test", self.on_done)


@pytest.fixture
def answers() -> Answers:
    return Answers()


# -- Reply ---------------------------------------------------------------------


def test_send_answers_once_with_the_result(answers: Answers):
    reply = answers.reply()
    reply.send({"Id": "abc"})
    assert answers.bodies == [({"id": 7, "ok": True, "result": {"Id": "abc"}}, True)]
    assert answers.done == [None]
    assert reply.done


def test_fail_answers_with_the_error_and_tells_on_done_its_code(answers: Answers):
    answers.reply().fail(env.not_found("no such container: x"))
    assert answers.bodies == [({"id": 7, "ok": False, "error": {
        "code": "not_found", "message": "no such container: x"}}, True)]
    assert answers.done == ["not_found"]


def test_the_first_final_answer_wins(answers: Answers):
    reply = answers.reply()
    reply.fail(env.conflict("first"))
    reply.send("second")
    reply.fail(env.invalid("third"))
    assert [body["error"]["message"] for body, _ in answers.bodies] == ["first"]
    assert answers.done == ["conflict"]


def test_racing_threads_give_one_answer(answers: Answers):
    reply = answers.reply()
    start = threading.Barrier(8)

    def answer(i: int) -> None:
        start.wait()
        if i % 2:
            reply.send(i)
        else:
            reply.fail(env.invalid(str(i)))

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers.bodies) == 1 and len(answers.done) == 1


def test_stream_items_precede_the_final_answer(answers: Answers):
    reply = answers.reply()
    assert reply.more("a") and reply.more("b")
    reply.send(None)
    assert answers.bodies == [
        ({"id": 7, "ok": True, "result": "a", "more": True}, False),
        ({"id": 7, "ok": True, "result": "b", "more": True}, False),
        ({"id": 7, "ok": True, "result": None}, True),
    ]
    assert answers.done == [None]


def test_more_after_the_end_is_refused_and_sends_nothing(answers: Answers):
    reply = answers.reply()
    reply.send(None)
    assert reply.more("late") is False
    assert len(answers.bodies) == 1


def test_more_once_the_caller_gave_up_is_refused(answers: Answers):
    reply = answers.reply()
    reply.cancelled = True
    assert reply.more("unwanted") is False
    assert answers.bodies == []


def test_run_answers_with_what_the_handler_returns(answers: Answers):
    answers.reply().run(lambda a, b: a + b, 2, b=3)
    assert answers.bodies == [({"id": 7, "ok": True, "result": 5}, True)]


def test_run_answers_a_pouch_error_as_it_is(answers: Answers):
    def handler() -> None:
        raise env.conflict("in use")

    answers.reply().run(handler)
    assert answers.bodies[0][0]["error"] == {"code": "conflict", "message": "in use"}


def test_run_answers_any_other_exception_as_internal(answers: Answers):
    def handler() -> None:
        raise OSError("the FIFO is gone")

    answers.reply().run(handler)
    error = answers.bodies[0][0]["error"]
    assert error["code"] == "internal"
    assert "probe.test" in error["message"] and "OSError: the FIFO is gone" in error["message"]
    assert answers.done == ["internal"]


def test_attempt_gives_the_result_back_without_answering(answers: Answers):
    reply = answers.reply()
    assert reply.attempt(lambda: "value") == (True, "value")
    assert answers.bodies == [] and not reply.done


def test_attempt_answers_the_failure_itself(answers: Answers):
    reply = answers.reply()
    settings: dict[str, str] = {}
    assert reply.attempt(lambda: settings["missing"]) == (False, None)
    assert answers.done == ["internal"]


def test_run_in_thread_answers_from_another_thread(answers: Answers):
    answered_on: list[str] = []

    def handler() -> str:
        answered_on.append(threading.current_thread().name)
        return "done"

    answers.reply().run_in_thread(handler)
    assert answers.finished.wait(ANSWER_WITHIN)
    assert answers.bodies == [({"id": 7, "ok": True, "result": "done"}, True)]
    assert answered_on == ["probe.test"]


# -- Host: the inbox that is the broker socket ---------------------------------


@pytest.fixture
def probe() -> Iterator[tuple[pykka.ActorRef[Any], BrokerEnd]]:
    folder = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))  # ipc paths must be short
    try:
        with hosted(folder) as running:
            yield running
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_registration_lists_the_declared_methods(probe):
    _, broker = probe
    assert {"echo", "broken", "later", "count", "greet", "metrics"} <= set(broker.hello["methods"])


def test_a_request_from_the_broker_is_answered(probe):
    _, broker = probe
    broker.request("echo", {"text": "hi"}, rid=3)
    assert broker.reply() == {"id": 3, "ok": True, "result": "hi"}


def test_an_answer_given_on_another_thread_leaves_at_once(probe):
    _, broker = probe
    broker.request("later", {"text": "from a thread"})
    assert broker.reply(timeout=ANSWER_WITHIN)["result"] == "from a thread"


def test_a_message_from_another_thread_wakes_the_actor(probe):
    ref, _ = probe
    # The actor's thread waits in its poll for a minute; only the wake-up brings this in.
    assert ref.ask("ping", timeout=ANSWER_WITHIN) == ("seen", "ping")


def test_an_event_published_from_another_thread_leaves_at_once(probe):
    ref, broker = probe
    event = {"Type": "container", "Action": "start"}
    threading.Thread(target=host_of(ref).publish, args=(event,)).start()
    frames = broker.receive()
    assert frames[:3] == [env.ACTOR, env.PUB, b""]
    assert env.unpack(frames[3]) == event


def test_a_handler_that_raises_anything_answers_internal(probe):
    _, broker = probe
    broker.request("broken")
    error = broker.reply()["error"]
    assert error["code"] == "internal" and "OSError" in error["message"]
    broker.request("echo", {"text": "still serving"}, rid=2)
    assert broker.reply()["result"] == "still serving"


def test_a_stream_arrives_in_order_then_ends(probe):
    _, broker = probe
    broker.request("count", {"n": 3})
    replies = [broker.reply() for _ in range(4)]
    assert [(r["result"], r.get("more", False)) for r in replies] == \
        [(0, True), (1, True), (2, True), (None, False)]


def test_an_undeclared_method_is_refused(probe):
    _, broker = probe
    broker.request("nothing_here")
    error = broker.reply()["error"]
    assert error["code"] == "invalid" and "no method 'nothing_here'" in error["message"]


def test_bad_arguments_are_refused_before_the_handler_runs(probe):
    _, broker = probe
    broker.request("echo", {"text": 5})
    error = broker.reply()["error"]
    assert error["code"] == "invalid" and "'text'" in error["message"]


def test_a_hand_off_method_is_refused_through_the_broker(probe):
    _, broker = probe
    broker.request("greet", {"name": "x"})
    error = broker.reply()["error"]
    assert error["code"] == "invalid" and "hand-off" in error["message"]


def test_a_request_whose_caller_gave_up_is_not_run(probe):
    _, broker = probe
    broker.request("echo", {"text": "too late"}, rid=1, deadline=1.0)
    broker.request("echo", {"text": "in time"}, rid=2)
    assert broker.reply() == {"id": 2, "ok": True, "result": "in time"}


def test_stopping_says_goodbye_to_the_broker(probe):
    ref, broker = probe
    host_of(ref).stop()
    assert broker.receive() == [env.ACTOR, env.BYE]


@pytest.fixture
def beating() -> Iterator[BrokerEnd]:
    """The broker's end of a ProbeActor that heartbeats every BEAT s."""
    folder = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))
    try:
        with hosted(folder, heartbeat=BEAT) as (_ref, broker):
            yield broker
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def heartbeats(broker: BrokerEnd, seconds: float, ping_every: float | None = None
               ) -> tuple[list[float], int]:
    """When the actor's heartbeats arrived over `seconds` (monotonic), and how many the
    broker sent meanwhile, one every `ping_every` s (None: the broker silent)."""
    arrived: list[float] = []
    pings = 0
    end = time.monotonic() + seconds
    next_ping = time.monotonic()
    while (now := time.monotonic()) < end:
        if ping_every is not None and now >= next_ping:
            broker.sock.send_multipart([broker.actor, env.ACTOR, env.HEARTBEAT])
            pings += 1
            next_ping = now + ping_every
        wake = min(end, next_ping) if ping_every is not None else end
        if broker.sock.poll(max(1, int((wake - now) * 1000))):
            _actor, *frames = broker.sock.recv_multipart()
            if frames == [env.ACTOR, env.HEARTBEAT]:
                arrived.append(time.monotonic())
    return arrived, pings


def test_an_actor_beats_as_the_broker_does(beating: BrokerEnd):
    """Each of the broker's heartbeats is answered at once (an idle actor wakes once a
    period, not twice), unless the actor's own left within half its interval: here the
    broker beats faster than the actor would alone, and the actor follows it."""
    broker = beating
    answered, pings = heartbeats(broker, 2.0, ping_every=BEAT * 0.75)
    time.sleep(BEAT * 0.6)  # a window, not a wait: its last beat ages past half a period
    broker.sock.send_multipart([broker.actor, env.ACTOR, env.HEARTBEAT])
    broker.sock.send_multipart([broker.actor, env.ACTOR, env.HEARTBEAT])
    twice, _ = heartbeats(broker, BEAT / 4)

    assert abs(len(answered) - pings) <= 1, (len(answered), pings)
    assert len(twice) == 1


def test_an_actor_the_broker_is_silent_to_beats_within_the_window_it_is_judged_by(
        beating: BrokerEnd):
    alone, _ = heartbeats(beating, 2.0)

    gaps = [b - a for a, b in itertools.pairwise(alone)]
    assert len(alone) >= 2.0 / (BEAT * HEARTBEAT_LIVENESS), alone
    assert max(gaps) < BEAT * HEARTBEAT_LIVENESS, gaps
