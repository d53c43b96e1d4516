#!/usr/bin/env bash
# Install what EdgeVoice needs on a fresh Debian 13 "trixie" or Debian 12 "bookworm"
# machine (or Raspberry Pi OS based on either): the Debian packages its Python libraries
# build against, the tools of the deploy tests, and a virtual environment in .venv with
# EdgeVoice and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

packages=(
  python3 python3-venv python3-dev gcc pkg-config
  libasound2-dev          # pyalsaaudio
  libsystemd-dev          # systemd-python
  espeak-ng               # the emulator's spoken replies (a tone without it)
  mosquitto               # MQTT backend tests
  systemd                 # systemd-analyze for the unit checks
  shellcheck              # install script lint
)
if [ "${EDGEVOICE_SKIP_APT:-0}" != 1 ]; then
  "${sudo_cmd[@]}" apt-get update -qq
  if [ "${EDGEVOICE_DEPLOY_TESTS:-}" != skip ]; then
    # The deploy tests (tests/deploy): Debian root filesystems booted with a real
    # systemd, and an arm64 one entered under qemu-user (qemu-user-static on both
    # releases; where it is gone, its successors qemu-user + qemu-user-binfmt).
    packages+=(debootstrap mmdebstrap arch-test systemd-container binfmt-support)
    if apt-cache show qemu-user-static >/dev/null 2>&1; then
      packages+=(qemu-user-static)
    else
      packages+=(qemu-user qemu-user-binfmt)
    fi
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The device, plus the tools that test it (emulator, simulator, benchmark) and the token
# broker, which are distributions of their own so that a device install carries none of them.
.venv/bin/python -m pip install -q -e ".[test]" -e ./testbed -e ./broker
