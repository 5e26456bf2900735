"""A 32-bit x86 program written byte by byte (no i386 toolchain or image is at hand):
it writes a text with write(2) and exits 0, both through `int 0x80`, the i386 ABI's
system calls, which a seccomp filter sees under SCMP_ARCH_X86."""

from __future__ import annotations

import struct

_BASE = 0x08048000  # where i386 programs are loaded, by custom
_ELF_HEADER, _PROGRAM_HEADER = 52, 32


def program(text: bytes) -> bytes:
    """A static ELF32 executable that prints `text`."""
    code_at = _ELF_HEADER + _PROGRAM_HEADER
    code_length = 31
    text_at = _BASE + code_at + code_length
    code = b"".join((
        b"\xb8", struct.pack("<I", 4),          # mov eax, 4: write
        b"\xbb", struct.pack("<I", 1),          # mov ebx, 1: to stdout
        b"\xb9", struct.pack("<I", text_at),    # mov ecx, the text
        b"\xba", struct.pack("<I", len(text)),  # mov edx, its length
        b"\xcd\x80",                            # int 0x80
        b"\xb8", struct.pack("<I", 1),          # mov eax, 1: exit
        b"\x31\xdb",                            # xor ebx, ebx: with 0
        b"\xcd\x80"))
    assert len(code) == code_length
    size = code_at + code_length + len(text)
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)  # 32-bit, little-endian, version 1
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, _BASE + code_at,
                                 _ELF_HEADER, 0, 0, _ELF_HEADER, _PROGRAM_HEADER, 1, 0, 0, 0)
    # One loadable segment, read and execute, holding the whole file.
    segment = struct.pack("<IIIIIIII", 1, 0, _BASE, _BASE, size, size, 5, 0x1000)
    return header + segment + code + text
