#!/usr/bin/env bash
# Install everything from nothing, then lint and run the whole test suite.
# No sound card, GPIO or systemd needed, and no internet beyond the package registries: the
# tests use libasound's file plugin, gpiozero mock pins, a real NOTIFY_SOCKET, the local Live
# API emulator and a real Home Assistant on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/lint-imports pyproject.toml
# A real Home Assistant for tests/homeassistant, in its own venv cached by version (about a
# minute the first time; the test fixture would do it too, this shows its time on its own).
.venv/bin/python -m tests.support.home_assistant
.venv/bin/python -m pytest -q "$@"
