#!/usr/bin/env bash
# Set up what pouch needs on Debian 12, as root: apt packages, a venv in .venv with
# the package and its pinned dependencies, and containerd's gRPC stubs.
# Idempotent: a second run installs nothing. Usage: deploy/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

# zstd: `docker save` of an image whose layers are zstd-compressed decompresses them.
APT_PACKAGES=(containerd runc iptables busybox-static tini ca-certificates zstd
              containernetworking-plugins)
PYTHON=${PYTHON:-python3}
extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  # The tests verify the systemd units (systemd-analyze), drive a terminal (script),
  # tell their stories with the docker CLI, which Debian ships in docker.io, and pull
  # from registries of their own (docker-registry, each on a free loopback port).
  APT_PACKAGES+=(systemd bsdutils docker.io docker-registry)
fi

# docker.io's postinst would start its dockerd, which takes over the host's iptables
# and /var/run/docker.sock: invoke-rc.d and deb-systemd-invoke ask policy-rc.d first,
# and 101 means "not now". A policy-rc.d already there is put back afterwards.
POLICY_RC=/usr/sbin/policy-rc.d
forbid_service_starts() {
  if [ -e "$POLICY_RC" ]; then mv "$POLICY_RC" "$POLICY_RC.pouch-saved"; fi
  printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
  chmod 755 "$POLICY_RC"
  trap allow_service_starts EXIT
}
allow_service_starts() {
  rm -f "$POLICY_RC"
  if [ -e "$POLICY_RC.pouch-saved" ]; then mv "$POLICY_RC.pouch-saved" "$POLICY_RC"; fi
  trap - EXIT
}

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
  forbid_service_starts
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  allow_service_starts
  # Nor at the next boot: a registry on :5000 for anyone is no part of a test setup.
  if [[ " ${missing[*]} " == *" docker-registry "* ]]; then
    systemctl disable docker-registry.service >/dev/null 2>&1 || true
  fi
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
