"""containerd's tasks service: a container's running processes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from google.protobuf import any_pb2

from pouch.actors.containerd.conn import DEFAULT_TIMEOUT, Service
from pouch.actors.containerd.types import mount_message, rfc3339
from pouch.proto.containerd.api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from pouch.proto.containerd.api.types.task import task_pb2

# How containerd names a process spec (the `process` section of an OCI spec) in an Any.
PROCESS_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/Process"


# How containerd's clients wrap a runtime-spec LinuxResources (JSON) for a task update.
RESOURCES_TYPE_URL: Final = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


class TaskState(NamedTuple):
    pid: int
    status: str  # "CREATED", "RUNNING", "STOPPED", "PAUSED", "PAUSING" or "UNKNOWN"
    exit_status: int


class Exit(NamedTuple):
    exit_status: int
    exited_at: str  # RFC 3339 with nanoseconds, as Docker shows FinishedAt


def _task_state(process: Any) -> TaskState:
    return TaskState(int(process.pid), task_pb2.Status.Name(process.status), process.exit_status)


class Tasks(Service):
    """Calls name the container; `exec_id` picks one of its exec'd processes."""

    stub = tasks_pb2_grpc.TasksStub

    def create(
        self,
        container_id: str,
        rootfs: Iterable[Mapping[str, Any]],
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> int:
        """Create the container's init process (not started yet); returns its pid.

        stdin/stdout/stderr are FIFO paths (or the shim's file:// and binary://
        URIs). All empty: no IO; but the runc shim fails on an empty stdout or
        stderr when the other is set.
        """
        request = tasks_pb2.CreateTaskRequest(
            container_id=container_id,
            rootfs=[mount_message(mount) for mount in rootfs],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
        )
        return int(self._conn.call(self._stub.Create, request, timeout).pid)

    def start(
        self, container_id: str, exec_id: str = "", timeout: float | None = DEFAULT_TIMEOUT
    ) -> int:
        request = tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        return int(self._conn.call(self._stub.Start, request, timeout).pid)

    def kill(
        self,
        container_id: str,
        signal: int,
        all: bool = False,
        exec_id: str = "",
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Signal the task's process (`all`: every process of the container)."""
        request = tasks_pb2.KillRequest(
            container_id=container_id, exec_id=exec_id, signal=signal, all=all
        )
        self._conn.call(self._stub.Kill, request, timeout)

    def resize_pty(self, container_id: str, width: int, height: int, exec_id: str = "",
                   timeout: float | None = DEFAULT_TIMEOUT) -> None:
        request = tasks_pb2.ResizePtyRequest(container_id=container_id, exec_id=exec_id,
                                             width=width, height=height)
        self._conn.call(self._stub.ResizePty, request, timeout)

    def pause(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Freeze every process of the task (the cgroup freezer)."""
        request = tasks_pb2.PauseTaskRequest(container_id=container_id)
        self._conn.call(self._stub.Pause, request, timeout)

    def resume(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Thaw a paused task."""
        request = tasks_pb2.ResumeTaskRequest(container_id=container_id)
        self._conn.call(self._stub.Resume, request, timeout)

    def update(self, container_id: str, resources: Mapping[str, Any],
               timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Change a live task's cgroup limits: `resources` is an OCI LinuxResources
        document (memory, cpu, pids, ...), as the runc shim hands it to `runc update`."""
        request = tasks_pb2.UpdateTaskRequest(
            container_id=container_id,
            resources=any_pb2.Any(type_url=RESOURCES_TYPE_URL,
                                  value=json.dumps(resources).encode()))
        self._conn.call(self._stub.Update, request, timeout)

    def close_stdin(
        self, container_id: str, exec_id: str = "", timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """Close the process's stdin: the shim holds the FIFO open until told so."""
        request = tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=True)
        self._conn.call(self._stub.CloseIO, request, timeout)

    def exec(
        self,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Add a process to the container's running task (not started yet: see start).

        `process` is an OCI process spec; stdin/stdout/stderr are FIFO paths, as for create.
        """
        spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=json.dumps(process).encode())
        request = tasks_pb2.ExecProcessRequest(
            container_id=container_id, exec_id=exec_id, spec=spec, stdin=stdin,
            stdout=stdout, stderr=stderr, terminal=terminal)
        self._conn.call(self._stub.Exec, request, timeout)

    def delete_process(self, container_id: str, exec_id: str,
                       timeout: float | None = DEFAULT_TIMEOUT) -> Exit:
        """Forget an exec'd process that has exited; returns how it exited. The shim
        answers once it has copied all the process's output."""
        request = tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
        response = self._conn.call(self._stub.DeleteProcess, request, timeout)
        return Exit(int(response.exit_status), rfc3339(response.exited_at))

    def delete(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT) -> Exit:
        """Delete a stopped task; returns how it exited."""
        request = tasks_pb2.DeleteTaskRequest(container_id=container_id)
        response = self._conn.call(self._stub.Delete, request, timeout, idempotent=True)
        return Exit(int(response.exit_status), rfc3339(response.exited_at))

    def get(self, container_id: str, timeout: float | None = DEFAULT_TIMEOUT,
            exec_id: str = "") -> TaskState | None:
        """The task's init process, or the exec'd process `exec_id`; None if there is none."""
        request = tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
        response = self._conn.find(self._stub.Get, request, timeout)
        return None if response is None else _task_state(response.process)

    def list(self, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, TaskState]:
        """Every task of the namespace, by container id."""
        response = self._conn.call(self._stub.List, tasks_pb2.ListTasksRequest(), timeout)
        return {process.id: _task_state(process) for process in response.tasks}

    def wait(self, container_id: str, exec_id: str = "", timeout: float | None = None) -> Exit:
        """Block until the process exits (no deadline unless `timeout` is given)."""
        request = tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id)
        response = self._conn.call(self._stub.Wait, request, timeout)
        return Exit(int(response.exit_status), rfc3339(response.exited_at))
