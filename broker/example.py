"""Run a container through pouch's ZeroMQ API, without HTTP: what a program on this
machine that speaks to the broker does (README, "ZeroMQ clients").

    python -m pouch.broker.example [--broker ipc:///var/run/pouch/broker.sock] \\
        busybox echo hello

It lists the containers, creates one, follows the events until it dies, reads its exit
code and removes it. Every call goes through the typed stubs (`pouch.proto.stubs`),
whose methods, arguments and errors are the actors' own declarations (proto/REFERENCE.md).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from pouch.broker.client import Client
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls


def run(calls: Calls, image: str, command: list[str]) -> int:
    """Run `command` in a new container of `image`; its exit code."""
    print(f"{len(calls.container.list(all=True))} containers before")
    since = time.time()
    cid = calls.container.create(name="", config={"Image": image, "Cmd": command})["Id"]
    # Subscribed before the start, from its `since`: the death cannot be missed.
    with contextlib.closing(calls.system.events(
            since=since, filters={"container": [cid], "event": ["die"]})) as deaths:
        calls.container.start(id=cid)
        died = next(deaths)
    code = int(died["Actor"]["Attributes"]["exitCode"])
    print(f"container {cid[:12]} exited with {code}")
    calls.container.remove(id=cid)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=DaemonConfig().broker_endpoint,
                        help="the broker's client endpoint (default: pouchd's)")
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    client = Client(opts.broker)
    try:
        return run(Calls(client), opts.image, opts.command)
    except PouchError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
