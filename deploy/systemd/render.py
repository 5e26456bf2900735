#!/usr/bin/env python3
"""Write pouch's systemd units for a checkout, with its paths, where systemd reads them.

    deploy/systemd/render.py [--root CHECKOUT] [--dest DIR]

The units beside this script run /opt/pouch/.venv/bin/pouchd, so they are right
as they are for a checkout at /opt/pouch. For a checkout elsewhere this writes
copies that name it instead (by default the checkout this script is in), drop-in
folders included, to DIR (default /etc/systemd/system). Standard library only:
any python3 runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent.parent
# The install root the units in this folder are written for.
PLACEHOLDER = "/opt/pouch"
UNIT_SUFFIXES = (".service", ".socket", ".target")
DROP_IN_SUFFIX = ".conf"
DEFAULT_DEST = Path("/etc/systemd/system")


def unit_files(folder: Path = HERE) -> list[Path]:
    """The units and their drop-ins under `folder`, relative to it, in a stable order."""
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in UNIT_SUFFIXES]
    found += [p for p in folder.glob("*.d/*" + DROP_IN_SUFFIX) if p.is_file()]
    return sorted(p.relative_to(folder) for p in found)


def check_root(root: Path) -> None:
    """Raise ValueError unless the units can name `root` as it is."""
    # systemd splits ExecStart= on spaces and expands % and $ in it.
    if any(c.isspace() or c in "%$\\\"'" for c in str(root)):
        raise ValueError(f"{root}: systemd units cannot name a path with spaces, quotes, "
                         "'%', '$' or '\\' unescaped; use a checkout path without them")
    pouchd = root / ".venv" / "bin" / "pouchd"
    if not os.access(pouchd, os.X_OK):
        raise ValueError(f"{pouchd} does not exist: run `make install` in {root} first")


def render(text: str, root: Path) -> str:
    """A unit's text with the install root replaced by `root`."""
    return text.replace(PLACEHOLDER + "/", f"{root}/")


def write_units(dest: Path, root: Path, source: Path = HERE) -> list[Path]:
    """Render every unit under `source` into `dest`; the paths written."""
    check_root(root)
    written = []
    for relative in unit_files(source):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(render((source / relative).read_text(), root))
        os.replace(tmp, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=CHECKOUT,
                        help=f"the checkout whose .venv/bin/pouchd the units run "
                             f"(default {CHECKOUT})")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"where to write the units (default {DEFAULT_DEST})")
    opts = parser.parse_args(argv)
    try:
        written = write_units(opts.dest, opts.root.absolute())
    except ValueError as exc:
        parser.error(str(exc))
    for path in written:
        print(path)
    if opts.dest == DEFAULT_DEST:
        print("now: systemctl daemon-reload && systemctl enable --now pouch.target",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
