"""Sending a container's log to a client: `docker logs`, the output an attach asked for
with `logs`, and what a stream that an actor's death cut missed meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pouch.actors.container.iohub import Consumer
from pouch.actors.container.jsonlog import LogView, Selection
from pouch.actors.timefmt import parse_timestamp


def log_window(opts: dict[str, Any], resumed_at: float = 0.0) -> Selection:
    """The entries a logs request picks (its `stdout`, `stderr`, `since`, `until` and
    `tail`): if `resumed_at`, a request taken up after an actor's death cut it then, so
    whatever of them was logged since. Raises ValueError for a time that does not parse."""
    since, until = (parse_timestamp(opts[key]) if opts[key] else 0.0 for key in ("since", "until"))
    tail = -1 if opts["tail"] in ("all", "") else int(opts["tail"])
    if resumed_at:
        since, tail = max(since, resumed_at), -1
    return Selection(opts["stdout"], opts["stderr"], since, until, tail)


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
