"""The broker's pieces without a network: secret hashing, the policy, the config file."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.config import ConfigError
from edgevoice.errors import UserError
from edgevoice.security.device_secrets import (
    DUMMY_HASH,
    fingerprint,
    generate_secret,
    hash_secret,
    parse_hash,
    verify_secret,
)
from edgevoice.security.settings import AuthSettings
from edgevoice_broker.config import add_device, load_broker_settings, set_revoked
from edgevoice_broker.policy import BrokerPolicy, TokenBucket
from edgevoice_broker.settings import BrokerSettings
from tests.security.helpers import FAST, write_broker_files

# -- secrets ------------------------------------------------------------------------------------


def test_a_secret_verifies_against_its_hash_and_nothing_else():
    secret = generate_secret()
    stored = hash_secret(secret, **FAST)
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret[:-1], stored)
    assert not verify_secret("", stored)
    assert secret not in stored
    assert not verify_secret(secret, DUMMY_HASH)


def test_secrets_are_long_random_and_hashes_salted():
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50 and all(re.fullmatch(r"[A-Za-z0-9_-]{43}", s) for s in secrets)
    secret = generate_secret()
    assert hash_secret(secret, **FAST) != hash_secret(secret, **FAST)


def test_the_default_cost_is_scrypt_n_16384():
    parsed = parse_hash(hash_secret("x"))
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.digest)) == (16384, 8, 1, 16, 32)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256$abc",
        # n not a power of two
        "scrypt$n=1000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$n=16384,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # short salt
        "scrypt$n=1048576,r=32,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_hashes_are_refused_and_verify_nothing(bad):
    with pytest.raises(ValueError):
        parse_hash(bad)
    assert not verify_secret("anything", bad)


def test_fingerprints_tell_tokens_apart_without_revealing_them():
    token = "auth_tokens/" + "ab" * 32
    assert fingerprint(token) == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert fingerprint(token) not in token


# -- policy -------------------------------------------------------------------------------------


def test_a_token_bucket_allows_a_burst_then_refills():
    bucket = TokenBucket(3, per_second=0.5, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(2.0)
    assert bucket.take(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0) == 0.0


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_a_bucket_never_grants_more_than_burst_plus_refill(steps):
    bucket = TokenBucket(5, per_second=1.0, now=0.0)
    now, granted = 0.0, 0
    for step in steps:
        now += step
        granted += bucket.take(now) == 0.0
    assert granted <= 5 + now * 1.0 + 1e-9


def policy_for(tmp_path: Path, **devices: dict) -> BrokerPolicy:
    files = write_broker_files(
        tmp_path,
        devices=devices,
        extra="[rate_limit]\nburst = 2\nper_minute = 6\nfailed_burst = 3\nfailed_per_minute = 60\n",
    )
    return BrokerPolicy(load_broker_settings(files.config).settings)


def test_the_policy_decides_who_gets_a_token(tmp_path):
    policy = policy_for(tmp_path, kitchen={"secret": "k"}, attic={"secret": "a", "revoked": True})
    assert policy.hash_for("nobody") == DUMMY_HASH and policy.hash_for("kitchen") != DUMMY_HASH
    assert policy.decide("kitchen", "10.0.0.2", True, 0.0) is None
    unknown = policy.decide("nobody", "10.0.0.2", True, 0.0)
    wrong = policy.decide("kitchen", "10.0.0.2", False, 0.0)
    revoked = policy.decide("attic", "10.0.0.2", True, 0.0)
    assert (unknown.status, wrong.status, revoked.status) == (401, 401, 403)
    assert unknown.message == wrong.message  # no hint which devices exist
    assert revoked.body() == {
        "error": {"code": 403, "status": "PERMISSION_DENIED", "message": "device attic is revoked"}
    }


def test_each_device_is_rate_limited_on_its_own(tmp_path):
    policy = policy_for(tmp_path, kitchen={"secret": "k"}, hall={"secret": "h"})
    assert policy.decide("kitchen", "a", True, 0.0) is None
    assert policy.decide("kitchen", "a", True, 0.0) is None
    limited = policy.decide("kitchen", "a", True, 0.0)
    assert limited.status == 429 and limited.retry_after_s == pytest.approx(10.0)
    assert policy.decide("hall", "a", True, 0.0) is None
    assert policy.decide("kitchen", "a", True, 10.0) is None


def test_a_client_that_keeps_failing_is_stopped_before_the_hash(tmp_path):
    policy = policy_for(tmp_path, kitchen={"secret": "k"})
    for _ in range(3):
        assert policy.admit("10.0.0.9", 0.0) is None
        policy.decide("kitchen", "10.0.0.9", False, 0.0)
    stopped = policy.admit("10.0.0.9", 0.0)
    assert stopped.status == 429 and stopped.retry_after_s == pytest.approx(1.0)
    assert policy.admit("10.0.0.10", 0.0) is None  # another address is not affected
    assert policy.admit("10.0.0.9", 1.0) is None


def test_revocation_by_reload_keeps_the_rate_limits(tmp_path):
    files = write_broker_files(tmp_path, devices={"kitchen": {"secret": "k"}})
    policy = BrokerPolicy(load_broker_settings(files.config).settings)
    assert policy.decide("kitchen", "a", True, 0.0) is None
    set_revoked(files.config, "kitchen")
    policy.update(load_broker_settings(files.config).settings)
    assert policy.decide("kitchen", "a", True, 1.0).status == 403


# -- the broker's file -----------------------------------------------------------------------------


def test_add_device_stores_only_a_hash_and_keeps_comments(tmp_path):
    files = write_broker_files(tmp_path)
    secret = add_device(files.config, "kitchen")
    text = files.config.read_text()
    assert secret not in text and "# token broker for the tests" in text
    device = load_broker_settings(files.config).settings.device("kitchen")
    assert device is not None and not device.revoked and verify_secret(secret, device.secret_hash)
    with pytest.raises(UserError, match="already enrolled"):
        add_device(files.config, "kitchen")
    with pytest.raises(UserError, match="device id"):
        add_device(files.config, "../etc")


def test_revoking_rewrites_one_device_and_keeps_the_rest(tmp_path):
    files = write_broker_files(tmp_path, devices={"kitchen": {"secret": "k"}, "hall": {"secret": "h"}})
    files.config.chmod(0o640)
    set_revoked(files.config, "kitchen")
    settings = load_broker_settings(files.config).settings
    assert settings.device("kitchen").revoked and not settings.device("hall").revoked
    assert files.config.stat().st_mode & 0o777 == 0o640
    set_revoked(files.config, "kitchen", False)
    assert not load_broker_settings(files.config).settings.device("kitchen").revoked
    with pytest.raises(UserError, match="not enrolled"):
        set_revoked(files.config, "garage")
    assert len(list(tmp_path.glob(".token-broker.toml.*"))) == 0  # no temporary file left


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[server]\nport = 1\n", "server.tls_cert_file is required"),
        ("[server]\ntls_cert_file='a'\ntls_key_file='b'\nbogus=1\n", "unknown key server.bogus"),
        (
            "[server]\ntls_cert_file='a'\ntls_key_file='b'\n[tokens]\nexpire_s=60\nnew_session_s=120\n",
            "new_session_s must not exceed expire_s",
        ),
        (
            "[server]\ntls_cert_file='a'\ntls_key_file='b'\n[[devices]]\nid='x'\nsecret_hash='nope'\n",
            "devices[0].secret_hash: is not a device secret hash",
        ),
        ("[server\n", "not valid TOML"),
    ],
)
def test_a_bad_broker_file_names_the_key(tmp_path, text, words):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_broker_settings(path)
    assert any(words in problem and str(path) in problem for problem in error.value.problems), error.value


def test_relative_tls_paths_are_relative_to_the_file(tmp_path):
    files = write_broker_files(tmp_path / "etc")
    server = load_broker_settings(files.config).settings.server
    assert server.tls_cert_file == tmp_path / "etc" / "broker.crt"


# -- the device's [auth] section -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"mode": "token_broker"}, 'broker_url\n  Value error, is required when mode = "token_broker"'),
        ({"mode": "token_broker", "broker_url": "https://h"}, "device_id\n  Value error, is required"),
        ({"broker_url": "http://h:8443"}, "must be an https:// URL"),
        ({"broker_url": "https://user:pw@h"}, "must not carry a user name or password"),
        ({"broker_url": "https://h/?key=1"}, "must not have a query"),
        ({"device_id": "kitchen/../x"}, "letters, digits"),
    ],
)
def test_the_auth_section_refuses_what_cannot_work(fields, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        AuthSettings(**fields)


def test_a_complete_auth_section_and_the_default():
    assert AuthSettings().mode == "api_key"
    auth = AuthSettings(mode="token_broker", broker_url="https://home.lan:8443/", device_id="kitchen")
    assert auth.broker_url == "https://home.lan:8443"


def test_broker_settings_refuse_duplicate_devices():
    data = tomllib.loads(
        "[server]\ntls_cert_file='a'\ntls_key_file='b'\n"
        + "".join(f"[[devices]]\nid='x'\nsecret_hash='{hash_secret('s', **FAST)}'\n" for _ in range(2))
    )
    with pytest.raises(ValueError, match="repeated: x"):
        BrokerSettings.model_validate(data)
