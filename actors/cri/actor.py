"""The CRI actor: Kubernetes' runtime.v1 (RuntimeService, ImageService) served with grpcio
on a unix socket (--listen-cri), started only with --enable-cri.

It owns no state beyond what it can rebuild: a pod is a pause container and a CRI
container a container of the container actor, what CRI knows of them in their
labels; a pod's CNI result is a file under the exec root. The gRPC server's
threads make the calls (the stubs' client pool is thread-safe); the actor's own
thread serves the broker (metrics, faults) and nothing waits on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2_grpc

from pouch.actors.cri.images import ImageService
from pouch.actors.cri.network import PodNetwork
from pouch.actors.cri.runtime import RuntimeService
from pouch.actors.cri.streaming import StreamServer
from pouch.actors.host import ActorBase, ActorContext
from pouch.broker.trust import umask

log = logging.getLogger("pouch.cri")
GRPC_THREADS = 16
MAX_MESSAGE = 16 * 1024 * 1024  # bytes, as containerd's CRI server allows


class CriActor(ActorBase):
    service = "cri"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self._server: grpc.Server | None = None
        self._stop_streams: Callable[[], None] | None = None
        self.network = PodNetwork(ctx.calls, ctx.config)

    def on_start(self) -> None:
        path = Path(self.ctx.config.listen_cri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.network.start()
        config = self.ctx.config
        streams = StreamServer(self.ctx.calls, handoff_dir=config.handoff_dir,
                               address=config.stream_server_address,
                               port=config.stream_server_port)
        self._stop_streams = streams.start()
        server = grpc.server(futures.ThreadPoolExecutor(GRPC_THREADS, "cri"), options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE)])
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(
            RuntimeService(self.ctx.calls, self.ctx.config, self.network, streams), server)
        api_pb2_grpc.add_ImageServiceServicer_to_server(
            ImageService(self.ctx.calls, self.ctx.config), server)
        with umask(0o177):  # root's alone from the moment it exists, as pouchd's socket
            server.add_insecure_port(f"unix://{path}")
            server.start()
        os.chmod(path, 0o600)
        self._server = server
        log.info("serving the CRI on %s", path)

    def on_stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=2).wait(3)
        if self._stop_streams is not None:
            self._stop_streams()
        with contextlib.suppress(FileNotFoundError):
            Path(self.ctx.config.listen_cri).unlink()
