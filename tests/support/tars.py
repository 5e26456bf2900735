"""Small tar archives made in memory, for tests that send or load them."""

from __future__ import annotations

import io
import tarfile


def tar_of(files: dict[str, bytes], gzip: bool = False) -> bytes:
    """A tar of regular files (name -> content), in order; gzipped if asked."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gzip else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
