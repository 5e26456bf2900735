"""The gateway worker's request threads: each job wakes one thread, the last one idle.

concurrent.futures.ThreadPoolExecutor, which gunicorn's gthread uses, wakes
its threads through one shared queue: a job wakes a thread that, on taking
it, wakes another that finds nothing and sleeps again (CPython's SimpleQueue
hands its lock on), and a job that comes before the last thread counted
itself idle starts a new thread, so one client's requests go round every
thread in turn, each cold in the CPU cache. Each of those wake-ups is a
context switch and a turn of the GIL, on the path of every request (see
bench/request_floor.py). Here an idle thread waits on a lock of its own and
a job is handed to the thread that went idle last.

It serves what gunicorn asks of an executor: submit (a Future, with its done
callbacks run on the thread that ran the job) and shutdown.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Idle:
    """A thread waiting for its next job (None: stop)."""

    __slots__ = ("job", "wake")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class HandOff:
    def __init__(self, max_threads: int, name: str = "request") -> None:
        self._max = max_threads
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []      # the last to go idle at the end
        self._waiting: deque[_Job] = deque()  # jobs for which no thread was free
        self._threads = 0
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        job = (future, fn, args)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new jobs after shutdown")
            if self._idle:
                idle = self._idle.pop()
                idle.job = job
                idle.wake.release()
                return future
            if self._threads >= self._max:
                self._waiting.append(job)
                return future
            self._threads += 1
            number = self._threads
        threading.Thread(target=self._serve, args=(job,), name=f"{self._name}-{number}").start()
        return future

    def idle(self) -> bool:
        """Whether a thread waits for a job (a hint: another may take it meanwhile)."""
        return bool(self._idle)

    def shutdown(self, wait: bool = True) -> None:
        """No more jobs; threads finish the one they run (and those waiting), then end."""
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, []
        for each in idle:
            each.job = None
            each.wake.release()

    def _serve(self, job: _Job | None) -> None:
        idle = _Idle()
        while job is not None:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, job
            job = self._next(idle)

    def _next(self, idle: _Idle) -> _Job | None:
        with self._lock:
            if self._waiting:
                return self._waiting.popleft()
            if self._shutdown:
                self._threads -= 1
                return None
            self._idle.append(idle)
        idle.wake.acquire()
        job, idle.job = idle.job, None
        if job is None:
            with self._lock:
                self._threads -= 1
        return job
