#!/usr/bin/env bash
# Install everything from nothing, then lint and run the whole test suite.
# No sound card, GPIO, systemd or internet needed: the tests use libasound's file
# plugin, gpiozero mock pins, a real NOTIFY_SOCKET and the local Live API emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/lint-imports pyproject.toml
.venv/bin/python -m pytest -q "$@"
