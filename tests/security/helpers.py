"""Shared pieces for the security tests: a broker's files (TLS, config), credentials dirs."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from edgevoice.security.device_secrets import hash_secret

# Cheap scrypt for tests that enrol many devices (the stored parameters travel with the hash).
FAST = {"n": 2**10, "r": 8, "p": 1}
GEMINI_KEY = "AIzaSy-test-gemini-key-0123456789abcdef"


@dataclass
class BrokerFiles:
    """A broker configuration on disk with its TLS material, and the CA a device trusts."""

    directory: Path
    config: Path
    ca_file: Path
    secrets: dict[str, str] = field(default_factory=dict)


def write_broker_files(
    directory: Path,
    *,
    devices: dict[str, dict[str, Any]] | None = None,
    gemini_base_url: str | None = None,
    gemini_ca_file: Path | None = None,
    extra: str = "",
) -> BrokerFiles:
    """``devices``: id -> {"secret": ..., "revoked": bool}. Port 0: any free port."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(directory / "broker.key"))
    cert.cert_chain_pems[0].write_to_path(str(directory / "broker.crt"))
    ca_file = directory / "broker-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    lines = [
        "# token broker for the tests",
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        'tls_cert_file = "broker.crt"   # relative to this file',
        'tls_key_file = "broker.key"',
        "",
        "[live]",
        'model = "gemini-2.5-flash-native-audio-preview-12-2025"',
        "",
        "[gemini]",
    ]
    if gemini_base_url:
        lines.append(f'base_url = "{gemini_base_url}"')
    if gemini_ca_file:
        lines.append(f'ca_file = "{gemini_ca_file}"')
    lines.append(extra)
    files = BrokerFiles(directory, directory / "token-broker.toml", ca_file)
    for device_id, spec in (devices or {}).items():
        secret = spec["secret"]
        files.secrets[device_id] = secret
        lines += [
            "",
            "[[devices]]",
            f'id = "{device_id}"',
            f'secret_hash = "{hash_secret(secret, **FAST)}"',
            f"revoked = {'true' if spec.get('revoked') else 'false'}",
        ]
    files.config.write_text("\n".join(lines) + "\n")
    return files


def credentials_dir(directory: Path, **secrets: str) -> Path:
    """A $CREDENTIALS_DIRECTORY with each secret in a mode-600 file (name: key with _ -> -)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # noqa: PTH101
    for name, value in secrets.items():
        path = directory / name.replace("_", "-")
        path.write_text(value + "\n")
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return directory
