#!/usr/bin/env bash
# Installs the system tools the project needs, only those missing: ffmpeg (video decoding and the
# benchmark reference), buf (proto lint), promtool (metrics lint), kubectl (manifest rendering).
set -euo pipefail
apt_pkgs=()
command -v ffmpeg >/dev/null || apt_pkgs+=(ffmpeg)
command -v promtool >/dev/null || apt_pkgs+=(prometheus)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "sysdeps: missing ${apt_pkgs[*]}; run as root or install them: apt-get install ${apt_pkgs[*]}" >&2
    exit 1
  fi
  echo "sysdeps: installing ${apt_pkgs[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
if ! command -v buf >/dev/null; then
  echo "sysdeps: installing @bufbuild/buf from npm" >&2
  npm install -g --silent @bufbuild/buf >/dev/null
fi
