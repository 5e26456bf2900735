"""The labels pouchd gives the host in /info, as pouchd does: `node_ip` (the first
address `hostname -i` gives) and `SN` (`dmidecode -s system-serial-number`), after
the labels of `--label`.

Either may be missing (no dmidecode, not root, a VM without a serial, a hostname that
does not resolve): that label is left out, and said once, at debug.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence

log = logging.getLogger("pouch.system")

# argv, timeout -> stdout. Raises OSError, subprocess.SubprocessError when it fails.
Runner = Callable[[Sequence[str], float], str]
TIMEOUT = 2.0  # s, each command
# What firmware says when there is no serial number.
NO_SERIAL = frozenset(("", "0", "none", "not specified", "not present", "not available",
                       "to be filled by o.e.m.", "default string", "system serial number"))


def run_command(argv: Sequence[str], timeout: float) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=True, stdin=subprocess.DEVNULL).stdout


def node_ip(run: Runner = run_command, timeout: float = TIMEOUT) -> str | None:
    """The host's first address as `hostname -i` gives it; None when it gives none."""
    out = _ask(run, ["hostname", "-i"], timeout)
    addresses = out.split() if out is not None else []
    if not addresses:
        if out is not None:
            log.debug("no node_ip label: hostname -i gave no address")
        return None
    return addresses[0]


def serial_number(run: Runner = run_command, timeout: float = TIMEOUT) -> str | None:
    """The system's serial number as dmidecode reads it; None when there is none."""
    out = _ask(run, ["dmidecode", "-s", "system-serial-number"], timeout)
    if out is None:
        return None
    # dmidecode explains itself in lines starting with '#' ("# No SMBIOS nor DMI ...").
    lines = [line.strip() for line in out.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines or lines[0].lower() in NO_SERIAL:
        log.debug("no SN label: dmidecode gives no serial number")
        return None
    return lines[0]


def system_labels(run: Runner = run_command, timeout: float = TIMEOUT) -> list[str]:
    """["node_ip=...", "SN=..."], leaving out what cannot be read."""
    labels = []
    if (address := node_ip(run, timeout)) is not None:
        labels.append(f"node_ip={address}")
    if (serial := serial_number(run, timeout)) is not None:
        labels.append(f"SN={serial}")
    return labels


def merge(configured: Sequence[str], system: Sequence[str]) -> list[str]:
    """The labels /info lists: `--label`'s, then the system's whose key they lack."""
    keys = {label.partition("=")[0] for label in configured}
    return [*configured, *(label for label in system if label.partition("=")[0] not in keys)]


def _ask(run: Runner, argv: list[str], timeout: float) -> str | None:
    try:
        return run(argv, timeout)
    except subprocess.TimeoutExpired:
        log.debug("no %s label: %s took more than %g s", _label(argv), " ".join(argv), timeout)
    except subprocess.CalledProcessError as exc:
        log.debug("no %s label: %s exited %d: %s", _label(argv), " ".join(argv),
                  exc.returncode, (exc.stderr or "").strip())
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("no %s label: %s: %s", _label(argv), " ".join(argv), exc)
    return None


def _label(argv: list[str]) -> str:
    return "SN" if argv[0] == "dmidecode" else "node_ip"
