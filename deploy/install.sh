#!/usr/bin/env bash
# Set up what pouch needs on Debian 12, as root: apt packages, a venv in .venv with
# the package and its pinned dependencies, and containerd's gRPC stubs.
# Idempotent: a second run installs nothing. Usage: deploy/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(containerd runc iptables busybox-static ca-certificates)
PYTHON=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # The tests verify the systemd units (systemd-analyze) and drive a terminal (script).
  APT_PACKAGES+=(systemd bsdutils)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ! "$PYTHON" -c "import venv, ensurepip" 2>/dev/null; then
  missing+=(python3-venv)
fi
# proto/generate.py fetches containerd's .proto files with apt-get download: it needs package lists.
if [ ${#missing[@]} -gt 0 ] || ! apt-cache show golang-github-containerd-containerd-dev >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.pouch-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
if [ ! -f proto/containerd/api/services/tasks/v1/tasks_pb2.py ] || [ proto/generate.py -nt proto/containerd/__init__.py ]; then
  .venv/bin/python proto/generate.py
fi
