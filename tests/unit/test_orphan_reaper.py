"""pouchd's supervisor reaps the orphans it adopts when SIGCHLD says a child exited
(pouch.actors.supervisor.launch): however fast children exit, and wherever the signal
interrupts its main thread, none is left a zombie and the handler never blocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILDREN = 300
WITHIN = 30.0

# Run in a process of its own: it forks, and sets a handler for SIGCHLD.
SCRIPT = textwrap.dedent(f"""
    import os, signal, threading
    from pouch.actors.supervisor.launch import Launcher
    from pouch.bench.procfs import children_of
    from pouch.tests.support.wait import wait_for

    launcher = Launcher()
    signal.signal(signal.SIGCHLD, lambda _s, _f: launcher.child_exited())
    threading.Thread(target=launcher.reap_orphans, args=(threading.Event(),),
                     daemon=True).start()
    for _ in range({CHILDREN}):
        if os.fork() == 0:
            os._exit(0)
        # The main thread is in the handler's code too when the next signal comes.
        for _ in range(20):
            launcher.child_exited()
    wait_for(lambda: not children_of(os.getpid()), 10, "every child reaped")
    print("all reaped")
""")


def test_orphans_exiting_in_a_burst_are_all_reaped_and_the_handler_never_blocks():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=WITHIN)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "all reaped"
