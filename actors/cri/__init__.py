"""The CRI actor: Kubernetes runtime.v1 over gRPC, translated into messages to the other actors."""
