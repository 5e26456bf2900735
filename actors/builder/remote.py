"""ADD's remote sources, fetched as dockerd's classic builder fetches them: an HTTP(S)
GET (redirects followed), through the daemon's HTTP(S)_PROXY unless its NO_PROXY or a
loopback host (Go's ProxyFromEnvironment never proxies one) exempts the URL; the body
written, never unpacked, to a 0600 file named after the URL's path (else the
Content-Disposition's filename), its mtime the Last-Modified header's (else the epoch).

Every wait is bounded (connecting, and each read), the size by the caller's limit, and
a failure names the URL and why, leaving no file behind. dockerd downloads on every
build and then looks the step up in its cache: the sum a download returns is what the
step's cache key takes.
"""

from __future__ import annotations

import email.message
import email.utils
import grp
import hashlib
import ipaddress
import os
import posixpath
import pwd
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

import requests
from requests.utils import get_environ_proxies

TIMEOUT: Final = 30.0  # seconds to connect, and between two reads of the body (Go's dial)
CHUNK: Final = 64 << 10  # a read of the body (dockerd's progress counts in 32 kB reads)
PROGRESS_EVERY: Final = 512 << 10  # bytes between two progress messages, at most
PROGRESS_PAUSE: Final = 0.1  # seconds between two progress messages, at least
FILE_MODE: Final = 0o600
UNNAMED: Final = "__unnamed__"  # dockerd's name for a download it cannot name
USER_AGENT: Final = "pouch-builder"


class RemoteError(Exception):
    """A download that failed; the message names the URL and the reason."""


@dataclass(frozen=True)
class Download:
    """A fetched file: `path` in a folder of its own; `name` "" when neither the URL nor
    the answer names it."""

    url: str
    path: Path
    name: str
    size: int
    mtime: int
    digest: str  # the cache's sum of it (`tarsum`)


def is_url(source: str) -> bool:
    """What dockerd takes for a remote source (urlutil.IsURL): http and https only."""
    return source.startswith(("http://", "https://"))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxies_for(url: str) -> dict[str, str]:
    """requests' proxies for `url`: none for a loopback host, else the environment's
    HTTP(S)_PROXY less its NO_PROXY."""
    if _is_loopback(urlsplit(url).hostname or ""):
        return {}
    return dict(get_environ_proxies(url))


def file_name(url: str, disposition: str = "") -> str:
    """The name dockerd gives a download: the last part of the URL's path, else the
    Content-Disposition's filename, else "" (none)."""
    path = unquote(urlsplit(url).path)
    if path and not path.endswith("/"):
        name = posixpath.basename(path)
        if name not in ("", ".", ".."):
            return name
    if disposition:
        header = email.message.Message()
        header["Content-Disposition"] = disposition
        given = header.get_param("filename", header="Content-Disposition")
        if isinstance(given, str) and given and not given.endswith("/"):
            name = posixpath.basename(given)
            if name not in ("", ".", ".."):
                return name
    return ""


def modified(header: str) -> int:
    """Last-Modified as seconds since the epoch; 0 (the epoch, as dockerd's Chtimes
    makes Go's zero time) when it is absent, does not parse or comes before it."""
    if not header:
        return 0
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return 0
    return max(0, int(when.timestamp()))


def tarsum(path: Path, name: str) -> str:
    """A download's sum as dockerd's remote source takes it (and shows it in history:
    "ADD <hex> in /dest"): the sha256 of the tarsum v1 header of the file as it lies
    (its name, mode, owner, size: never its mtime), then of its content."""
    info = path.stat()
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = ""
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = ""
    fields = (("name", name), ("mode", str(info.st_mode)), ("uid", str(info.st_uid)),
              ("gid", str(info.st_gid)), ("size", str(info.st_size)), ("typeflag", "0"),
              ("linkname", ""), ("uname", user), ("gname", group), ("devmajor", "0"),
              ("devminor", "0"))
    digest = hashlib.sha256("".join(key + value for key, value in fields)
                            .encode("utf-8", "surrogateescape"))
    with path.open("rb") as data:
        while chunk := data.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def progress_text(current: int, total: int) -> str:
    """The bar dockerd's JSON progress carries (a 50-wide bar and the sizes, as Go's
    JSONProgress.String draws it for a 200-column terminal)."""
    if total <= 0:
        return f"{human_size(current):>8}"
    half = min(int(current / total * 100) // 2, 50)
    bar = f"[{'=' * half}>{' ' * (50 - half)}] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def human_size(size: float) -> str:
    """go-units' HumanSize: decimal units, four significant digits ("32.77kB")."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    index = 0
    while size >= 1000 and index < len(units) - 1:
        size /= 1000
        index += 1
    return f"{size:.4g}{units[index]}"


def _reason(error: requests.RequestException, timeout: float) -> str:
    """The cause inside requests' and urllib3's wrapping, in the words Go's ends with:
    "connection refused"."""
    text = str(error)
    if isinstance(error, requests.Timeout) or "timed out" in text.lower():
        return f"no answer within {timeout:g} s"
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(\[SSL[^\]]*\][^'\")]*)",
                    r"(Connection broken: [^'\")]*)"):
        match = re.search(pattern, text)
        if match:
            reason = match.group(1).strip().rstrip(",")
            return reason[:1].lower() + reason[1:]
    return text or type(error).__name__


def _failed(url: str, via: str, error: requests.RequestException, timeout: float) -> RemoteError:
    """As Go's client words a GET that failed: 'Get "<url>": <why>', a refused
    connection with the address it dialed (the proxy's, through one)."""
    reason = _reason(error, timeout)
    if reason == "connection refused":
        dialed = urlsplit(via or url)
        port = dialed.port or (443 if dialed.scheme == "https" else 80)
        host = dialed.hostname or ""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        reason = f"dial tcp {address}: connect: connection refused"
    if via:
        reason = f"proxyconnect tcp: {reason}"
    return RemoteError(f'Get "{url}": {reason}')


def _status_error(url: str, response: requests.Response) -> RemoteError:
    """As dockerd words an answer of 400 or more: the status, then the body (a short
    part of it)."""
    message = f"failed to GET {url} with status {response.status_code} {response.reason}"
    try:
        body = response.raw.read(1024, decode_content=True)
    except (requests.RequestException, OSError, ValueError):
        body = b""
    text = body.decode(errors="replace").strip()
    return RemoteError(f"{message}: {text}" if text else message)


def fetch(url: str, folder: Path, limit: int, *, timeout: float = TIMEOUT,
          check: Callable[[], None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> Download:
    """GET `url` into a file of `folder`, removed again if the download fails.
    `limit`: the bytes it may have; `progress(current, total)` is told how far it got
    (total -1: unknown), as dockerd tells it: now and then, not at the end; `check()`,
    called between reads, raises to stop it (a cancelled build). Errors: RemoteError
    (naming the URL), what `check` raises."""
    try:
        through = proxies_for(url)
    except ValueError as exc:  # a URL that does not parse: "http://[::1"
        raise RemoteError(f"failed to GET {url}: {exc}") from None
    via = through.get(urlsplit(url).scheme, "")
    session = requests.Session()
    session.trust_env = False  # proxies are chosen above; no .netrc, no env CA bundle
    try:
        try:
            response = session.get(url, stream=True, timeout=(timeout, timeout),
                                   proxies=through, allow_redirects=True,
                                   headers={"User-Agent": USER_AGENT,
                                            "Accept-Encoding": "gzip"})
        except requests.RequestException as exc:
            raise _failed(url, via, exc, timeout) from None
        with response:
            if response.status_code >= 400:
                raise _status_error(url, response)
            name = file_name(url, response.headers.get("Content-Disposition", ""))
            path = folder / (name or UNNAMED)
            try:
                size = _save(url, response, path, limit, check, progress)
                digest = tarsum(path, path.name)
            except requests.RequestException as exc:
                path.unlink(missing_ok=True)
                raise _failed(url, via, exc, timeout) from None
            except OSError as exc:  # the disk: full, or gone
                path.unlink(missing_ok=True)
                raise RemoteError(f"failed to GET {url}: writing it: "
                                  f"{exc.strerror or exc}") from None
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            mtime = modified(response.headers.get("Last-Modified", ""))
            os.utime(path, (mtime, mtime))
            return Download(url, path, name, size, mtime, digest)
    finally:
        session.close()


def _save(url: str, response: requests.Response, path: Path, limit: int,
          check: Callable[[], None] | None,
          progress: Callable[[int, int], None] | None) -> int:
    """The body into a new file at `path`; its size."""
    # A length says what is sent, not what comes out of a Content-Encoding.
    length = response.headers.get("Content-Length") or ""
    total = int(length) if length.isdigit() and not response.headers.get(
        "Content-Encoding") else -1
    if total > limit:
        raise RemoteError(f"failed to GET {url}: {total} bytes, more than the {limit} a "
                          "build may add")
    size = told = 0
    # As dockerd's progress reader: past every 1% or 512 kB, whichever comes first, ten
    # times a second at most.
    every = min(PROGRESS_EVERY, total // 100) if total > 0 else PROGRESS_EVERY
    told_at = time.monotonic() - PROGRESS_PAUSE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        for chunk in response.iter_content(CHUNK):
            if check is not None:
                check()
            size += len(chunk)
            if size > limit:
                raise RemoteError(f"failed to GET {url}: more than the {limit} bytes a "
                                  "build may add")
            out.write(chunk)
            if progress is not None and size - told > every \
                    and time.monotonic() - told_at >= PROGRESS_PAUSE:
                told, told_at = size, time.monotonic()
                progress(size, total)
    return size
