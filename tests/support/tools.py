"""The programs the tests drive. A missing one fails the test, naming what to install:
a suite that skips its clients is green on a machine that tests nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NoReturn

import pytest


def missing(program: str | Path, package: str) -> NoReturn:
    pytest.fail(f"{program} is not installed: `make install-test` (deploy/install.sh --test) "
                f"installs it, from the Debian package {package}", pytrace=False)


def require(program: str, package: str) -> str:
    """The path of `program` on PATH; fails the test if it is not installed."""
    return shutil.which(program) or missing(program, package)


def require_file(path: Path, package: str) -> Path:
    """`path`, a program the tests run by its full path; fails the test if it is absent."""
    return path if path.exists() else missing(path, package)
