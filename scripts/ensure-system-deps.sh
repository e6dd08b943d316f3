#!/usr/bin/env bash
# Installs the Debian packages the given commands come from, when they are missing.
# Usage: scripts/ensure-system-deps.sh redis-server [nginx chromium ...]
set -euo pipefail

declare -A PACKAGE_OF=(
  [redis-server]=redis-server
  [nginx]=nginx
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [siege]=siege
  [dockerd]=docker.io
  [docker-compose]=docker-compose
  [mmdebstrap]=mmdebstrap
  [iptables]=iptables
  [ip]=iproute2
)

missing=()
for command in "$@"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[$command]:-$command}")
done
# `python3 -m venv` needs Debian's python3-venv when python3 is the system one
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]}. Install them first:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed ${missing[*]}"
