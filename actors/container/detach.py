"""Detach keys: the key sequence that ends an attach to a container's terminal and
leaves the container running (ctrl-p ctrl-q unless the client names its own), read
and watched for as dockerd does.

Pure: the IO hub feeds a client's input through an EscapeScanner and passes on
what it returns; the sequence itself never reaches the container.
"""

from __future__ import annotations

from typing import Final

from pouch.proto.envelope import invalid

DEFAULT_DETACH_KEYS: Final = b"\x10\x11"  # ctrl-p, ctrl-q
# What follows "ctrl-" for the control codes 0 to 31, as moby/term's ToBytes reads them.
_CONTROL: Final = "@abcdefghijklmnopqrstuvwxyz[\\]^_"
_DEL: Final = 127


def parse_detach_keys(text: str) -> bytes:
    """`ctrl-p,ctrl-q`, `ctrl-x,a`, `DEL`: the bytes the keys send, in order; "" means
    the default. Errors: invalid, in dockerd's words."""
    if not text:
        return DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in text.split(","):
        raw = key.encode()
        if len(raw) == 1:
            codes += raw
        elif len(key) == len("ctrl-x") and key.startswith("ctrl-") and key[-1] in _CONTROL:
            codes.append(_CONTROL.index(key[-1]))
        elif key == "DEL":
            codes.append(_DEL)
        else:
            raise invalid(f"Invalid detach keys ({text}) provided")
    return bytes(codes)


class EscapeScanner:
    """Watches a client's input for the detach keys. What may begin the sequence is held
    back until the next bytes tell: passed on if the sequence breaks off, swallowed if
    it completes."""

    def __init__(self, keys: bytes = DEFAULT_DETACH_KEYS) -> None:
        if not keys:
            raise ValueError("detach keys must not be empty")
        self.keys = keys
        self._held = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What of `data` goes on to the container, and whether the client typed the
        whole sequence (what follows it in `data` is dropped: the attach ends there)."""
        out = bytearray()
        for byte in data:
            self._held.append(byte)
            # The longest held suffix that still begins the sequence stays held.
            while self._held and not self.keys.startswith(self._held):
                out.append(self._held.pop(0))
            if len(self._held) == len(self.keys):
                self._held.clear()
                return bytes(out), True
        return bytes(out), False
