"""The build cache, keyed as the classic builder keys it: the parent image, the step
as it was run (its instruction text, expanded, and the config it runs with) and, for
COPY and ADD, the content of what is copied. A key leads to the image the step made.

Kept in one small JSON file under the builder's home folder, written atomically, so
that it outlives the daemon's restarts. An entry whose image is gone is dropped when
it is found so (the image actor is the truth on images). A key may lead to several
images (the same step built again with --no-cache, or while `cachefrom` ruled the
first out): the newest comes first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Final

MAX_PER_KEY: Final = 8


def cache_key(parent: str, step: str, config: dict[str, Any], content: str = "") -> str:
    """The key of a step on `parent` (an image ID, "" for scratch)."""
    text = json.dumps([parent, step, config, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class BuildCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list[str]] = {}
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = {}
        if isinstance(loaded, dict):
            self._entries = {k: [i for i in v if isinstance(i, str)]
                             for k, v in loaded.items() if isinstance(v, list)}

    def get(self, key: str) -> list[str]:
        """The images a step's key leads to, newest first."""
        with self._lock:
            return list(self._entries.get(key, []))

    def put(self, key: str, image_id: str) -> None:
        with self._lock:
            kept = [i for i in self._entries.get(key, []) if i != image_id]
            self._entries[key] = [image_id, *kept][:MAX_PER_KEY]
            self._write()

    def drop(self, key: str, image_id: str) -> None:
        with self._lock:
            kept = [i for i in self._entries.get(key, []) if i != image_id]
            if kept != self._entries.get(key, []):
                if kept:
                    self._entries[key] = kept
                else:
                    del self._entries[key]
                self._write()

    def clear(self) -> list[str]:
        """Drop every entry; the images they named."""
        with self._lock:
            images = sorted({i for ids in self._entries.values() for i in ids})
            self._entries = {}
            self._write()
            return images

    def images(self) -> set[str]:
        with self._lock:
            return {i for ids in self._entries.values() for i in ids}

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".cache-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self._entries, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
