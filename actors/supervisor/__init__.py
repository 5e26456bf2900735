"""pouchd's supervisor, and the entry of each of its roles (see .main).

Every pouchd process enters through this package before anything imports grpc, so
this is where their gRPC is set up. grpcio's default client core (EventEngine) hands
each call's answer between its own threads: against containerd, about ten context
switches per unary call and 1.2-1.5x the CPU of the same call polled by the calling
thread, as its earlier core (iomgr) does it, with two (bench/grpc_client.py). The
container actor makes a dozen containerd calls per container, and on a node's few
cores those switches slow the runc and containerd work of a start too. A
GRPC_EXPERIMENTS of the user's own is left as it is.
"""

import os

os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")
