#!/usr/bin/env bash
# Install (or upgrade, or remove) the EdgeVoice service on Raspberry Pi OS (Debian 13
# "trixie", the current one, or Debian 12 "bookworm") or another Debian-based board.
#
#   sudo scripts/install.sh                      # prompts for the Gemini API key
#   sudo scripts/install.sh < keyfile            # reads the key from standard input
#   sudo scripts/install.sh --uninstall          # keeps /etc/edgevoice and the state
#
# What it does, from the checkout it lives in:
#   - apt-get installs what pyalsaaudio and systemd-python build against
#   - the audio and gpio system groups the unit runs in, if missing (plain Debian and
#     other boards have no gpio group)
#   - a virtual environment in /opt/edgevoice/venv with this project installed
#   - /etc/systemd/system/edgevoice.service (replaced on every run)
#   - /etc/edgevoice/edgevoice.toml from config/edgevoice.toml (never overwritten)
#   - /etc/edgevoice/credentials/gemini-api-key, mode 0600, owned by root
#   - systemctl daemon-reload, enable, and (re)start
# Running it again upgrades in place: the venv is reused, the config and key are kept.
#
# The key is read with the shell's own `read` and written with its own `printf`, so it
# never appears in a process's arguments or environment, and it is never echoed.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [OPTIONS]

Options:
  --uninstall        remove the service, the venv and /opt/edgevoice; keep the
                     configuration (/etc/edgevoice) and the state (/var/lib/edgevoice)
  --replace-key      ask for a new API key even if one is installed
  --no-key           do not ask for the API key (install it later by running again)
  --root DIR         install below DIR instead of / (a scratch root for testing;
                     implies --no-packages and --no-systemctl)
  --no-packages      do not install Debian packages
  --no-systemctl     do not reload, enable or start the service
  --python PATH      interpreter for the virtual environment (default: /usr/bin/python3)
  --pip-args ARGS    extra arguments for pip install, e.g. "--index-url URL" for a mirror
  -h, --help         show this help
EOF
}

say() { printf 'edgevoice install: %s\n' "$*"; }
warn() { printf 'edgevoice install: warning: %s\n' "$*" >&2; }
die() { printf 'edgevoice install: error: %s\n' "$*" >&2; exit 1; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(dirname "$script_dir")

root=""
uninstall=0
packages=1
use_systemctl=1
key_mode=ask   # ask | replace | skip
python=/usr/bin/python3
pip_args=""

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) uninstall=1 ;;
    --replace-key) key_mode=replace ;;
    --no-key) key_mode=skip ;;
    --root)
      [ $# -ge 2 ] || die "--root needs a directory"
      root=$2; shift ;;
    --root=*) root=${1#--root=} ;;
    --no-packages) packages=0 ;;
    --no-systemctl) use_systemctl=0 ;;
    --python)
      [ $# -ge 2 ] || die "--python needs a path"
      python=$2; shift ;;
    --python=*) python=${1#--python=} ;;
    --pip-args)
      [ $# -ge 2 ] || die "--pip-args needs a value"
      pip_args=$2; shift ;;
    --pip-args=*) pip_args=${1#--pip-args=} ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root is not a directory"
  root=$(cd "$root" && pwd)
  packages=0
  use_systemctl=0
elif [ "$(id -u)" -ne 0 ]; then
  die "run as root: sudo $0"
fi

opt_dir="$root/opt/edgevoice"
venv="$opt_dir/venv"
unit_path="$root/etc/systemd/system/edgevoice.service"
config_dir="$root/etc/edgevoice"
config_path="$config_dir/edgevoice.toml"
credentials_dir="$config_dir/credentials"
key_path="$credentials_dir/gemini-api-key"
state_dir="$root/var/lib/edgevoice"

systemctl_do() {
  if [ "$use_systemctl" -eq 1 ]; then
    systemctl "$@"
  fi
}

# Whether systemd runs this system (sd_booted()): not in a chroot, e.g. while building an
# SD card image, where the unit can be installed and enabled but not started.
systemd_running() { [ -d /run/systemd/system ]; }

# -- uninstall ---------------------------------------------------------------------------

if [ "$uninstall" -eq 1 ]; then
  if [ "$use_systemctl" -eq 1 ] && systemctl list-unit-files edgevoice.service >/dev/null 2>&1; then
    if systemd_running; then
      systemctl disable --now edgevoice.service || warn "could not stop the service"
    else
      systemctl disable edgevoice.service || warn "could not disable the service"
    fi
  fi
  rm -f "$unit_path"
  if systemd_running; then
    systemctl_do daemon-reload
  fi
  rm -rf "$opt_dir"
  say "removed the service and $opt_dir"
  say "kept the configuration in $config_dir and the state in $state_dir (remove them by hand if you wish)"
  exit 0
fi

# -- checks before changing anything -----------------------------------------------------

[ -f "$source_dir/pyproject.toml" ] || die "$source_dir is not an EdgeVoice checkout (no pyproject.toml)"
[ -f "$source_dir/systemd/edgevoice.service" ] || die "missing $source_dir/systemd/edgevoice.service"
[ -f "$source_dir/config/edgevoice.toml" ] || die "missing $source_dir/config/edgevoice.toml"

# -- the API key (asked first, so a long install does not wait on the prompt) --------------

key=""
read_key() {
  if [ -t 0 ]; then
    printf 'Gemini API key (input hidden): ' >&2
    IFS= read -rs key || true
    printf '\n' >&2
  else
    IFS= read -r key || true   # first line of standard input
  fi
  # Trim surrounding whitespace (a pasted key often brings a newline or spaces).
  key=${key#"${key%%[![:space:]]*}"}
  key=${key%"${key##*[![:space:]]}"}
  case "$key" in
    "") die "no API key given (type it at the prompt, or pipe it: install.sh < keyfile)" ;;
    *[[:space:]]*|*[![:print:]]*) die "the API key contains spaces or control characters" ;;
  esac
}

case "$key_mode" in
  replace) read_key ;;
  ask)
    if [ -s "$key_path" ]; then
      say "keeping the installed API key ($key_path); use --replace-key to change it"
      if [ ! -t 0 ]; then
        # A key piped in on a re-run means "use this key" (docs: bad key -> re-run).
        IFS= read -r key || true
        if [ -n "${key//[[:space:]]/}" ]; then
          key_mode=replace
          key=${key#"${key%%[![:space:]]*}"}
          key=${key%"${key##*[![:space:]]}"}
          case "$key" in
            *[[:space:]]*|*[![:print:]]*) die "the API key contains spaces or control characters" ;;
          esac
          say "replacing it with the key from standard input"
        fi
      fi
    else
      read_key
    fi
    ;;
  skip) ;;
esac

# -- Debian packages ---------------------------------------------------------------------

if [ "$packages" -eq 1 ]; then
  debs=(
    python3 python3-venv python3-dev gcc pkg-config
    libasound2-dev alsa-utils              # pyalsaaudio (and libasound); arecord/aplay for checks
    libsystemd-dev                         # systemd-python
  )
  # gpiozero's GPIO backend (Pi 5 included); packaged by Raspberry Pi OS (not plain Debian).
  if apt-cache show python3-lgpio >/dev/null 2>&1; then
    debs+=(python3-lgpio)
  elif [ "$(uname -m)" = aarch64 ] && apt-cache show liblgpio-dev >/dev/null 2>&1; then
    # lgpio comes from PyPI then; where it has no wheel for this Python, pip builds it,
    # which needs swig and the system's liblgpio. Plain Debian 13 has neither lgpio
    # package: there lgpio is skipped with a warning (see docs/raspberry-pi.md).
    debs+=(swig liblgpio-dev)
  fi
  say "installing Debian packages: ${debs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}"
fi

# -- groups -------------------------------------------------------------------------------

# The unit runs in the audio and gpio groups (SupplementaryGroups=), and systemd refuses
# to start it (status 216/GROUP) if either is missing. Raspberry Pi OS has both, and its
# udev rules give /dev/gpiochip* to gpio; plain Debian and other boards have no gpio
# group: an empty system group lets the unit start (GPIO then needs a udev rule there).
if [ -z "$root" ]; then
  for group in audio gpio; do
    if ! getent group "$group" >/dev/null; then
      groupadd --system "$group"
      say "created the system group $group (the service runs in it)"
    fi
  done
fi

# -- virtual environment -----------------------------------------------------------------

mkdir -p "$opt_dir"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "upgrading the virtual environment in $venv"
else
  [ -x "$python" ] || die "$python not found (install python3, or pass --python PATH)"
  rm -rf "$venv"
  say "creating a virtual environment in $venv"
  # System site packages: Raspberry Pi OS ships lgpio (GPIO on the Pi 5) as python3-lgpio.
  "$python" -m venv --system-site-packages "$venv"
fi
extra_pip_args=()
if [ -n "$pip_args" ]; then
  read -r -a extra_pip_args <<<"$pip_args"
fi
say "installing EdgeVoice from $source_dir"
"$venv/bin/python" -m pip install --quiet --upgrade "${extra_pip_args[@]}" "$source_dir"
if ! "$venv/bin/python" -c 'import lgpio' >/dev/null 2>&1; then
  case "$(uname -m)" in
    aarch64)
      say "installing lgpio for GPIO access"
      "$venv/bin/python" -m pip install --quiet "${extra_pip_args[@]}" "lgpio>=0.2.2" \
        || warn "lgpio could not be installed: a Raspberry Pi's button will not work (on Raspberry Pi OS: apt-get install python3-lgpio, then run this script again; other boards need another gpiozero pin factory)"
      ;;
    arm*) warn "lgpio is missing: apt-get install python3-lgpio, then run this script again" ;;
    *) ;;  # not a Raspberry Pi: gpiozero will use whatever pin factory is configured
  esac
fi

# -- unit, configuration, key ------------------------------------------------------------

install -d -m 0755 "$(dirname "$unit_path")"
install -m 0644 "$source_dir/systemd/edgevoice.service" "$unit_path"
say "installed $unit_path"

install -d -m 0755 "$config_dir"
if [ -e "$config_path" ]; then
  say "keeping the existing configuration $config_path"
else
  install -m 0644 "$source_dir/config/edgevoice.toml" "$config_path"
  say "installed the example configuration $config_path (edit it, then: systemctl restart edgevoice)"
fi

install -d -m 0700 "$credentials_dir"
if [ "$key_mode" = replace ] || { [ "$key_mode" = ask ] && [ -n "$key" ]; }; then
  tmp_key="$credentials_dir/.gemini-api-key.new"
  (
    umask 077
    printf '%s\n' "$key" >"$tmp_key"
  )
  key=""
  chmod 0600 "$tmp_key"
  if [ "$(id -u)" -eq 0 ]; then
    chown root:root "$tmp_key"
  fi
  mv -f "$tmp_key" "$key_path"
  say "installed the API key in $key_path (mode 0600)"
elif [ ! -s "$key_path" ]; then
  warn "no API key installed: the service will not start until you run this script again with the key"
fi

# -- start -------------------------------------------------------------------------------

if [ "$use_systemctl" -eq 1 ] && ! systemd_running; then
  systemctl enable edgevoice.service >/dev/null
  say "systemd is not running here (a chroot?): the service is enabled and starts at the next boot"
elif [ "$use_systemctl" -eq 1 ]; then
  systemctl daemon-reload
  systemctl enable edgevoice.service >/dev/null
  if [ -s "$key_path" ]; then
    systemctl restart edgevoice.service
    say "started: follow it with  journalctl -u edgevoice -f"
  fi
else
  say "not touching systemd (--no-systemctl or --root)"
fi
say "done"
