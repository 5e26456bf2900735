"""Generate Python stubs for containerd's gRPC API at install time.

The .proto files come from Debian's packages, of the same version as the
containerd daemon that is installed, so no third-party file is committed.
Their import paths (`github.com/containerd/containerd/...`) are rewritten
into `pouch/proto/...`, which makes protoc emit imports of
`pouch.proto.containerd...`: no bare top-level package is installed.

Usage: python proto/generate.py [--build-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = (
    "golang-github-containerd-containerd-dev",
    "golang-github-gogo-protobuf-dev",
    "golang-github-gogo-googleapis-dev",
)
GOCODE = Path("usr/share/gocode/src")
CONTAINERD = "github.com/containerd/containerd"
# (source file under GOCODE, staged file under the staging root)
WANTED_DIRS = ("api/services", "api/types", "api/events")
# Introspection and the ttrpc event service are not used, and introspection
# would drag in google.rpc.Status, which clashes with googleapis-common-protos.
SKIPPED = ("api/services/introspection/", "api/services/ttrpc/")
EXTRA = ("runtime/v2/runc/options/oci.proto", "protobuf/plugin/fieldpath.proto")
REWRITES = (
    (f'"{CONTAINERD}/', '"pouch/proto/containerd/'),
    ('"gogoproto/gogo.proto"', '"pouch/proto/gogoproto/gogo.proto"'),
)


def debian_version(package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def fetch_debs(build: Path) -> Path:
    """Download and unpack the three -dev packages; returns the unpacked root."""
    debs, root = build / "debs", build / "root"
    debs.mkdir(parents=True, exist_ok=True)
    # The API must be the daemon's own: pin the -dev package to containerd's version.
    pins = {PACKAGES[0]: debian_version("containerd")}
    for package in PACKAGES:
        if not any(debs.glob(f"{package}_*.deb")):
            spec = f"{package}={pins[package]}" if pins.get(package) else package
            subprocess.run(["apt-get", "download", spec], cwd=debs, check=True)
    if root.exists():
        shutil.rmtree(root)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / GOCODE


def wanted(gocode: Path) -> list[tuple[Path, str]]:
    base = gocode / CONTAINERD
    found: list[tuple[Path, str]] = []
    for folder in WANTED_DIRS:
        for src in sorted((base / folder).rglob("*.proto")):
            rel = src.relative_to(base).as_posix()
            if not rel.startswith(SKIPPED):
                found.append((src, f"pouch/proto/containerd/{rel}"))
    found += [(base / rel, f"pouch/proto/containerd/{rel}") for rel in EXTRA]
    found.append((gocode / "github.com/gogo/protobuf/gogoproto/gogo.proto",
                  "pouch/proto/gogoproto/gogo.proto"))
    return found


def stage(files: list[tuple[Path, str]], staging: Path) -> list[str]:
    if staging.exists():
        shutil.rmtree(staging)
    for src, rel in files:
        text = src.read_text()
        # Python's generator has no use for weak imports; plain ones resolve the options.
        text = re.sub(r"^import weak ", "import ", text, flags=re.M)
        for old, new in REWRITES:
            text = text.replace(old, new)
        dst = staging / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
    return [rel for _, rel in files]


def compile_protos(staging: Path, names: list[str], out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{staging}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}", *names]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on containerd's .proto files")


def install(generated: Path) -> None:
    """Move pouch/proto/<tree> from the build output into this folder, as packages."""
    for tree in ("containerd", "gogoproto"):
        dst = HERE / tree
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(generated / "pouch/proto" / tree, dst)
        for folder in [dst, *[p for p in dst.rglob("*") if p.is_dir()]]:
            (folder / "__init__.py").touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=HERE.parent / "build" / "proto")
    opts = parser.parse_args(argv)
    build = opts.build_dir.resolve()
    gocode = fetch_debs(build)
    staging, out = build / "staging", build / "out"
    names = stage(wanted(gocode), staging)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    compile_protos(staging, names, out)
    install(out)
    print(f"containerd stubs: {len(names)} files into {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
