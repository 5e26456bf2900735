"""runtime.v1 ImageService: images as messages to the image actor."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import grpc
from cri_api.v1 import api_pb2 as cri
from cri_api.v1 import api_pb2_grpc

from pouch.actors.cri.errors import answered
from pouch.actors.image import reference
from pouch.proto.config import DaemonConfig
from pouch.proto.envelope import PouchError
from pouch.proto.stubs import Calls


def registry_auth(auth: cri.AuthConfig) -> str:
    """CRI's AuthConfig as Docker's X-Registry-Auth (base64url JSON); "" if none."""
    fields: dict[str, str] = {}
    if auth.auth and not auth.username:
        user, _, password = base64.b64decode(auth.auth).decode().partition(":")
        fields.update(username=user, password=password)
    if auth.username:
        fields.update(username=auth.username, password=auth.password)
    if auth.identity_token:
        fields["identitytoken"] = auth.identity_token
    if auth.registry_token:
        fields["registrytoken"] = auth.registry_token
    if auth.server_address:
        fields["serveraddress"] = auth.server_address
    if not fields:
        return ""
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()


def full_names(doc: Mapping[str, Any], default_registry: str) -> tuple[list[str], list[str]]:
    """An image's tags and digests (Docker's short names) as containerd's CRI names them,
    in full ("docker.io/library/busybox:latest"): what a kubelet shows of a pod."""
    def full(names: Any) -> list[str]:
        return [reference.parse(n, default_registry, default_tag=None).full()
                for n in names or () if "<none>" not in n]
    return full(doc.get("RepoTags")), full(doc.get("RepoDigests"))


def image_of(doc: Mapping[str, Any], default_registry: str) -> cri.Image:
    """An image (inspect document or list summary) as CRI's Image."""
    config = doc.get("Config") or {}
    user = str(config.get("User") or "")
    tags, digests = full_names(doc, default_registry)
    image = cri.Image(id=doc["Id"], repo_tags=tags, repo_digests=digests,
                      size=int(doc.get("Size") or 0))
    name, _, _group = user.partition(":")
    if name.isdigit():
        image.uid.value = int(name)
    elif name:
        image.username = name
    return image


class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, calls: Calls, config: DaemonConfig) -> None:
        self.calls = calls
        self.config = config

    @answered
    def ListImages(self, request: cri.ListImagesRequest, context: grpc.ServicerContext,
                   ) -> cri.ListImagesResponse:
        wanted = request.filter.image.image
        if wanted:
            try:
                return cri.ListImagesResponse(images=[image_of(
                    self.calls.image.inspect(name=wanted), self.config.default_registry)])
            except PouchError as error:
                if error.code == "not_found":
                    return cri.ListImagesResponse()
                raise
        summaries = self.calls.image.list(all=False)
        return cri.ListImagesResponse(images=[image_of(s, self.config.default_registry)
                                              for s in summaries])

    @answered
    def ImageStatus(self, request: cri.ImageStatusRequest, context: grpc.ServicerContext,
                    ) -> cri.ImageStatusResponse:
        try:
            doc = self.calls.image.inspect(name=request.image.image)
        except PouchError as error:
            if error.code == "not_found":
                return cri.ImageStatusResponse()  # CRI: no image, no error
            raise
        response = cri.ImageStatusResponse(image=image_of(doc, self.config.default_registry))
        if request.verbose:
            config = doc.get("Config") or {}
            response.info["info"] = json.dumps({
                "id": doc["Id"], "chainID": (doc.get("RootFS") or {}).get("Layers", [""])[-1:],
                "imageSpec": {"created": doc.get("Created"), "architecture":
                              doc.get("Architecture"), "os": doc.get("Os"),
                              "config": config, "rootfs": doc.get("RootFS")}})
        return response

    @answered
    def PullImage(self, request: cri.PullImageRequest, context: grpc.ServicerContext,
                  ) -> cri.PullImageResponse:
        name = request.image.image
        if not name:
            raise PouchError("invalid", "PullImage needs an image")
        auth = registry_auth(request.auth)
        stream = self.calls.image.pull(image=name, auth=auth) if auth else \
            self.calls.image.pull(image=name)
        try:
            for _progress in stream:
                if not context.is_active():
                    break
        finally:
            stream.close()
        doc = self.calls.image.inspect(name=name)
        return cri.PullImageResponse(image_ref=doc["Id"])

    @answered
    def RemoveImage(self, request: cri.RemoveImageRequest, context: grpc.ServicerContext,
                    ) -> cri.RemoveImageResponse:
        try:
            doc = self.calls.image.inspect(name=request.image.image)
        except PouchError as error:
            if error.code == "not_found":
                return cri.RemoveImageResponse()  # CRI: removing what is gone succeeds
            raise
        try:
            # As containerd's CRI: the image goes with every name it has.
            self.calls.image.remove(name=doc["Id"], force=True)
        except PouchError as error:
            if error.code != "not_found":
                raise
        return cri.RemoveImageResponse()

    @answered
    def ImageFsInfo(self, request: cri.ImageFsInfoRequest, context: grpc.ServicerContext,
                    ) -> cri.ImageFsInfoResponse:
        usage = self.calls.image.disk_usage()
        root = self.config.home_dir / "containerd"
        inodes = 0
        for _folder, dirs, files in os.walk(root / "io.containerd.content.v1.content"):
            inodes += len(dirs) + len(files)
        fs = cri.FilesystemUsage(timestamp=time.time_ns(),
                                 fs_id=cri.FilesystemIdentifier(mountpoint=str(root)))
        fs.used_bytes.value = int(usage["LayersSize"])
        fs.inodes_used.value = inodes
        return cri.ImageFsInfoResponse(image_filesystems=[fs])
