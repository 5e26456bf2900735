"""The meta store: one folder per container under <home>/containers, as pouchd keeps it.

    containers/<id>/meta.json     the record (what inspect shows)
    containers/<id>/hostname, hosts, resolv.conf   bind-mounted into the container
    containers/<id>/json.log      its output, in the json-file format

and one file per container removed within TOMB_KEPT seconds (its tomb):

    removed-containers/<id>.json  its name, exit status and the once-tokens of the calls
                                  that created, started and removed it (tombs.py)
    removed-containers/<id>.log   its json.log (and rotated files, .log.N), kept LOG_KEPT
                                  seconds: an attach or `logs -f` that an actor's death
                                  cut is handed over again, maybe after the removal
                                  (`docker run --rm`), and sends what was logged since

A removed container's folder is moved to removed-folders/<id> (one rename, so that the
removal need not wait for its files to be deleted) and deleted there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pouch.actors.container import etcfiles
from pouch.actors.container import record as rec
from pouch.actors.container.jsonlog import rotated_files
from pouch.actors.container.networking import is_user_network
from pouch.actors.fsutil import atomic_write, atomic_write_json

log = logging.getLogger("pouch.container")
FILES = ("hostname", "hosts", "resolv.conf", "json.log")
ID = re.compile(r"[0-9a-f]{64}")
# Long enough for any retry of a cut call (their deadlines are a minute at most).
TOMB_KEPT = 600.0
TOMB_KEYS = {"Name", "ExitCode", "Tokens", "At"}
# Longer than the gateway waits for a restarted actor to take a cut stream (a minute).
LOG_KEPT = 90.0
NO_DNS = etcfiles.Dns()  # the host's resolv.conf, as it is
LOCALHOST_HOSTS = ("127.0.0.1\tlocalhost\n"
                   "::1\tlocalhost ip6-localhost ip6-loopback\n"
                   "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                   "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


class MetaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tombs = root.with_name("removed-containers")
        root.mkdir(parents=True, exist_ok=True)
        # A create's files are synced at once (the disk commits them together), and a
        # save may go on while its worker prepares what follows it.
        self._writers = ThreadPoolExecutor(len(FILES) - 1, "meta-write")
        # Removed containers' folders, moved out of the way until their files are deleted
        # (a long json.log takes a while): by a thread of their own, or the next restore.
        self._gone = root.with_name("removed-folders")
        self._deleter = ThreadPoolExecutor(1, "meta-delete")

    def folder(self, cid: str) -> Path:
        return self.root / cid

    def paths(self, cid: str) -> dict[str, str]:
        return {name: str(self.folder(cid) / name) for name in FILES}

    def make_folder(self, cid: str) -> None:
        """A new container's folder, before anything else of it exists (see sweep).
        Errors: OSError."""
        self.folder(cid).mkdir(mode=0o700)

    def create(self, cid: str, hostname: str, network_mode: str,
               dns: etcfiles.Dns = NO_DNS, extra_hosts: str = "") -> Callable[[], None]:
        """The files a new container sees as /etc/hostname, hosts (with the
        `extra_hosts` lines) and resolv.conf, in its folder (make_folder), written on
        helper threads meanwhile: the function it returns waits for them (call it before
        they are read or written again, and before the container's meta.json is saved).
        Errors: OSError, from that function too."""
        folder = self.folder(cid)
        host_network = network_mode == "host"
        if host_network:
            hostname = socket.gethostname()
            hosts = (_read_host_file("/etc/hosts") or LOCALHOST_HOSTS) + extra_hosts
        else:
            # Its own address follows, by the network actor (none: no line, as dockerd's).
            hosts = LOCALHOST_HOSTS + extra_hosts
        resolv = etcfiles.resolv_conf(_read_host_file("/etc/resolv.conf"), dns, host_network,
                                      embedded=is_user_network(network_mode))
        # Their renames become durable with meta.json's, whose save syncs this folder;
        # a folder without meta.json is a create that never finished (load_all).
        writes = [self._writers.submit(atomic_write, folder / name, text.encode(),
                                       sync_dir=False)
                  for name, text in (("hostname", f"{hostname}\n"), ("hosts", hosts),
                                     ("resolv.conf", resolv))]
        (folder / "json.log").touch(mode=0o640)

        def written() -> None:
            for write in writes:
                write.result()
        return written

    def unembed_dns(self, cid: str, dns: etcfiles.Dns) -> None:
        """Its resolv.conf without the embedded DNS server, which create gave it for a
        network that turned out to be the default bridge (named by its ID)."""
        atomic_write(self.folder(cid) / "resolv.conf", etcfiles.resolv_conf(
            _read_host_file("/etc/resolv.conf"), dns, False).encode())

    def save(self, record: dict[str, Any]) -> str:
        """Write the record; the JSON written, whose json.loads is a copy of the record
        (cheaper than a deep copy, and what a restore reads)."""
        data = json.dumps(record, separators=(",", ":"))
        self._write(record["Id"], data)
        return data

    def save_soon(self, record: dict[str, Any], sync_dir: bool = True
                  ) -> tuple[str, Future[None]]:
        """save(), its write made on a helper thread while the caller goes on (it waits
        for the write before its next save of the same record: the later one must land
        last); the record is serialized now, so the caller may change it meanwhile.
        `sync_dir=False`: the new record is on disk, but after a crash of the machine
        meta.json may still be the one before (for a record either of which will do)."""
        data = json.dumps(record, separators=(",", ":"))
        return data, self._writers.submit(self._write, record["Id"], data, sync_dir)

    def _write(self, cid: str, data: str, sync_dir: bool = True) -> None:
        atomic_write(self.folder(cid) / "meta.json", data.encode(), sync_dir=sync_dir)

    def load_all(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The containers' records, and the IDs of creates that never finished (their
        folders removed here; what else they began is the caller's to release)."""
        records, interrupted = [], []
        # What the last run removed and had no time to delete.
        self._deleter.submit(shutil.rmtree, self._gone, ignore_errors=True)
        for folder in sorted(self.root.iterdir()):
            meta = folder / "meta.json"
            if not meta.is_file():
                if folder.is_dir() and ID.fullmatch(folder.name):
                    # meta.json is written last: this is a create that never finished.
                    log.warning("removing %s, left by an interrupted create", folder)
                    shutil.rmtree(folder, ignore_errors=True)
                    interrupted.append(folder.name)
                continue
            try:
                records.append(json.loads(meta.read_text()))
            except (OSError, ValueError) as exc:
                log.error("cannot read %s: %s; leaving it", meta, exc)
        return records, interrupted

    def ids(self) -> set[str]:
        """Every container this store has a folder for: one is made before a create asks
        containerd for anything, and removed after a removal is done with it."""
        return {folder.name for folder in self.root.iterdir() if ID.fullmatch(folder.name)}

    def remove(self, cid: str) -> None:
        """The container's folder gone from its place at once; its files are deleted
        meanwhile."""
        folder = self.folder(cid)
        try:
            self._gone.mkdir(exist_ok=True)
            moved = self._gone / cid
            folder.rename(moved)
        except OSError:  # nothing to move, or a folder of that name is there already
            shutil.rmtree(folder, ignore_errors=True)
            return
        self._deleter.submit(shutil.rmtree, moved, ignore_errors=True)

    def bury(self, cid: str, record: dict[str, Any]) -> dict[str, Any]:
        """Keep what a removed container leaves to know (its tomb, returned), and its log
        if that is in its folder (a CRI container's is not ours to move); before its
        folder goes."""
        log_path = Path(record.get("LogPath") or "")
        kept = self._tombs / f"{cid}.log" if log_path.parent == self.folder(cid) else None
        tomb = rec.tomb(record, kept)
        self._tombs.mkdir(exist_ok=True)
        # Only this process's death need be outlived: the callers die with the machine.
        atomic_write_json(self._tombs / f"{cid}.json", tomb, durable=False)
        if kept is not None:
            for path in [*rotated_files(log_path), log_path]:
                with contextlib.suppress(FileNotFoundError):
                    path.rename(kept.with_name(kept.name + path.name[len(log_path.name):]))
        return tomb

    def tombs(self) -> dict[str, dict[str, Any]]:
        """The tombs of containers removed within TOMB_KEPT s, by ID, oldest first; older
        ones are dropped."""
        found: dict[str, dict[str, Any]] = {}
        if not self._tombs.is_dir():
            return found
        now = time.time()
        for path in self._tombs.glob("*.log*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_ctime < now - LOG_KEPT:  # the removal's rename set it
                    path.unlink()
        oldest = now - TOMB_KEPT
        for path in self._tombs.glob("*.json"):
            try:
                if path.stat().st_mtime < oldest:
                    path.unlink()
                elif ID.fullmatch(path.stem):
                    tomb = json.loads(path.read_text())
                    if not tomb.keys() >= TOMB_KEYS:
                        raise ValueError("not a tomb")
                    found[path.stem] = tomb
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("dropping the tomb %s: %s", path, exc)
                path.unlink(missing_ok=True)
        return dict(sorted(found.items(), key=lambda item: item[1]["At"]))


def _read_host_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
