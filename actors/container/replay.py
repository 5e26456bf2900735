"""Sending a container's log to a client: `docker logs`, the output an attach asked for
with `logs`, and what a stream that an actor's death cut missed meanwhile, also after
its container was removed (from the log kept beside its tomb, pouch.actors.container.meta)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pouch.actors.container import record as rec
from pouch.actors.container.iohub import Consumer
from pouch.actors.container.jsonlog import LogView, Selection
from pouch.actors.host import Reply
from pouch.actors.timefmt import parse_timestamp
from pouch.proto.stream import StreamSession


def log_window(opts: dict[str, Any], resumed_at: float = 0.0) -> Selection:
    """The entries a logs request picks (its `stdout`, `stderr`, `since`, `until` and
    `tail`): if `resumed_at`, a request taken up after an actor's death cut it then, so
    whatever of them was logged since. Raises ValueError for a time that does not parse."""
    since, until = (parse_timestamp(opts[key]) if opts[key] else 0.0 for key in ("since", "until"))
    tail = -1 if opts["tail"] in ("all", "") else int(opts["tail"])
    if resumed_at:
        since, tail = max(since, resumed_at), -1
    return Selection(opts["stdout"], opts["stderr"], since, until, tail)


def attach_window(opts: dict[str, Any], session: StreamSession) -> Selection:
    """The logged output an attach sends before it follows live: all of it with `logs`;
    if handed over again after an actor's death, what was logged since the cut (since
    the attach began, if it had not begun)."""
    since = session.resumed_at or (0.0 if opts["logs"] else session.began_at)
    return Selection(opts["stdout"], opts["stderr"], since)


def replay(consumer: Consumer, log: LogView, selection: Selection, name: str,
           then: Callable[[], None] | None = None) -> None:
    """On a thread of its own (`name`): send the client what `selection` picks of `log`,
    then call `then` (which takes the client over: it follows live) or end the stream."""
    def run() -> None:
        session = consumer.session
        try:
            session.settle()
            for entry in selection.pick(log.entries()):
                if not session.write(entry.stream, consumer.line(entry)):
                    return
            if then is None:
                session.end()
            else:
                then()
        except OSError as exc:
            session.fail(f"Error grabbing logs: {exc}")
        finally:
            log.close()

    threading.Thread(target=run, name=name, daemon=True).start()


def after_removal(tomb: dict[str, Any], session: StreamSession, reply: Reply, method: str,
                  opts: dict[str, Any]) -> None:
    """Answer a stream handed over again after an actor's restart, for a container removed
    meanwhile (`tomb`), and end it: a wait gets the exit status; an attach (without
    stdin: it follows live) or a `logs -f` what was logged since the cut (since the
    attach began, if it had not; all of it, if it asked for the log), with `opts` as
    the container actor's method has them."""
    reply.send(None)
    if not session.start(multiplexed=method != "wait" and not tomb.get("Tty")):
        return
    if method == "wait":
        session.write_json(rec.wait_answer(tomb["ExitCode"], ""))  # a removal's: no error
        session.end()
        return
    if not tomb.get("Log"):
        session.end()
        return
    if method == "logs":
        consumer = Consumer(session, stdout=opts["stdout"], stderr=opts["stderr"], lines=True,
                            timestamps=opts["timestamps"])
        selection = log_window(opts, session.resumed_at)
    else:
        consumer = Consumer(session, stdout=opts["stdout"], stderr=opts["stderr"])
        selection = attach_window(opts, session)
    replay(consumer, LogView(Path(tomb["Log"])), selection, "logs-removed")
