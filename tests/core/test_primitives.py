"""Ids, secrets, URL policy, event catalog, contact normalisation and backend discovery."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import email_validator
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ravepilot_core import ConfigurationError, InvalidRequest
from ravepilot_core.crypto import Keyring, hash_secret, new_api_key, new_webhook_secret
from ravepilot_core.events import EVENT_TYPES, validate_event_selection
from ravepilot_core.ids import new_id
from ravepilot_core.invitations import _plain_address, normalise_email, normalise_phone
from ravepilot_core.urlpolicy import check_webhook_url, is_public_address

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_ids_are_prefixed_and_sort_by_creation_time() -> None:
    ids = [new_id("sub", T0 + timedelta(milliseconds=i // 3)) for i in range(30)]
    assert all(i.startswith("sub_") and len(i) == 30 for i in ids)
    assert ids == sorted(ids), "same-millisecond ids must still increase"
    assert len(set(ids)) == 30


def test_api_keys_and_webhook_secrets_have_enough_randomness() -> None:
    key = new_api_key()
    assert key.startswith("rp_live_")
    assert len(base64.urlsafe_b64decode(key.removeprefix("rp_live_") + "=")) == 32
    secret = new_webhook_secret()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert hash_secret(key) != key and len(hash_secret(key)) == 64


def test_keyring_encrypts_and_refuses_a_changed_secret_key() -> None:
    keyring = Keyring("a" * 40)
    sealed = keyring.encrypt("whsec_abc")
    assert "whsec_abc" not in sealed
    assert sealed != keyring.encrypt("whsec_abc"), "a fresh nonce every time"
    assert keyring.decrypt(sealed) == "whsec_abc"
    with pytest.raises(ConfigurationError, match="RAVEPILOT_SECRET_KEY changed"):
        Keyring("b" * 40).decrypt(sealed)
    with pytest.raises(ConfigurationError, match="at least 32"):
        Keyring("short")


def test_responses_kept_for_replay_are_sealed_with_their_own_key() -> None:
    keyring = Keyring("a" * 40)
    body = b'{"secret": "whsec_abc"}'
    sealed = keyring.seal_response(body)
    assert b"whsec_abc" not in sealed
    assert keyring.open_response(sealed) == body
    with pytest.raises(ConfigurationError):
        keyring.decrypt(sealed.decode())  # a different purpose, a different key


def test_invite_tokens_are_stable_per_submission_and_key() -> None:
    keyring = Keyring("a" * 40)
    assert keyring.invite_token("sub_1") == keyring.invite_token("sub_1")
    assert keyring.invite_token("sub_1") != keyring.invite_token("sub_2")
    assert Keyring("b" * 40).invite_token("sub_1") != keyring.invite_token("sub_1")


def test_links_already_sent_keep_working_across_versions() -> None:
    # Invite links sit in customers' inboxes and signed media URLs in pages: the derivations
    # must never change for the same server secret. These values were made by RavePilot 0.1.
    keyring = Keyring("a" * 40)
    assert keyring.invite_token("sub_1") == "5qasjeWsYxFLkqK2amPuSCfSbK-X5AvVTCCqmHap4eM"
    assert keyring.media_signature("clips/x.mp4", 1700000000, "video/mp4") == (
        "b18c8d0e6d8fb1a0e47831c8d8692e03a0a6db3148df4d6bbf5516dd11e24128"
    )


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.anyio
async def test_webhook_url_is_checked_on_every_resolved_address() -> None:
    async def resolver(host: str) -> list[str]:
        return {
            "ok.example.com": ["93.184.216.34"],
            "mixed.example.com": ["93.184.216.34", "10.0.0.1"],
        }[host]

    url = "https://ok.example.com/hook"
    assert await check_webhook_url(url, resolver=resolver, allow_private=False) == url
    with pytest.raises(InvalidRequest, match=r"10\.0\.0\.1"):
        await check_webhook_url(
            "https://mixed.example.com/", resolver=resolver, allow_private=False
        )
    with pytest.raises(InvalidRequest, match="https"):
        await check_webhook_url("http://ok.example.com/", resolver=resolver, allow_private=False)
    assert await check_webhook_url("http://127.0.0.1:9/x", resolver=resolver, allow_private=True)


def test_event_selection() -> None:
    assert len(EVENT_TYPES) == 11
    assert validate_event_selection(["*"]) == ("*",)
    assert validate_event_selection(["clip.approved", "clip.approved"]) == ("clip.approved",)
    with pytest.raises(InvalidRequest, match=r"'clip\.deleted'"):
        validate_event_selection(["clip.deleted"])
    with pytest.raises(InvalidRequest, match="alone"):
        validate_event_selection(["*", "clip.approved"])
    with pytest.raises(InvalidRequest, match="empty"):
        validate_event_selection([])


@pytest.mark.parametrize("raw", ["(415) 555-0132", "415.555.0132", "+1 415 555 0132", "4155550132"])
def test_north_american_phone_numbers_become_e164(raw: str) -> None:
    assert normalise_phone(raw) == "+14155550132"


@pytest.mark.parametrize("raw", ["555-0132", "+44 20 7946 0958", "(015) 555-0132", "call me", ""])
def test_other_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="10-digit North American"):
        normalise_phone(raw)


def test_emails_are_validated_and_lowercased() -> None:
    assert normalise_email("  Marjorie@ACME.com ") == "marjorie@acme.com"
    with pytest.raises(InvalidRequest, match="customer_email"):
        normalise_email("marjorie at acme")


@pytest.mark.parametrize(
    "raw",
    [
        "jane@localhost.local",  # special-use domains
        "jane@intranet.test",
        "jane@1.2.3.arpa",
        "jane@xn--a.com",  # Punycode that is not valid IDNA
        "jane@ab--cd.com",  # an R-LDH label that is not Punycode
        "jane@example",
        "jane..doe@example.com",
        f"jane@{'e' * 64}.com",
        "jane@-example.com",
    ],
)
def test_addresses_email_validator_refuses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="is not a valid email address"):
        normalise_email(raw)


def test_plain_addresses_skip_email_validator_and_others_do_not() -> None:
    # The fast path must carry the common case, or it buys nothing.
    assert _plain_address("Jane.Doe+vip@Mail.Example-Shop.CO.uk") == (
        "jane.doe+vip@mail.example-shop.co.uk"
    )
    assert normalise_email(" O'Brien@Example.com ") == "o'brien@example.com"
    for address in ('"jane doe"@example.com', "jané@example.com", "jane@bücher.de"):
        assert _plain_address(address) is None
    assert normalise_email("Jané@Bücher.de") == "jané@bücher.de"


_LOCAL_CHARS = "aZ09.!#$%&'*+/=?^_`{|}~-\"@ (),:;<>[]é\u212a"
_LABEL_CHARS = "aZ09-_.éİ"
_TLDS = [
    "com",
    "COM",
    "co.uk",
    "c0m",
    "x",
    "test",
    "local",
    "localhost",
    "arpa",
    "onion",
    "invalid",
    "xn--p1ai",
    "museum",
    "a1",
    "com.",
    "",
]


@st.composite
def _addresses(draw: st.DrawFn) -> str:
    local = draw(st.text(_LOCAL_CHARS, min_size=0, max_size=70))
    labels = draw(st.lists(st.text(_LABEL_CHARS, min_size=0, max_size=66), max_size=4))
    domain = ".".join([*labels, draw(st.sampled_from(_TLDS))])
    return f"{local}@{domain}"


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_addresses(), st.text(max_size=80)))
@example("jane@ab--cd.com")
@example("jane@xn--zca.com")  # valid, but email-validator normalises it to jane@ß.com
@example("jane@localhost.local")
@example(f"{'j' * 64}@{'e' * 63}.{'f' * 63}.{'g' * 63}.{'h' * 57}.com")
def test_the_fast_path_agrees_with_email_validator(address: str) -> None:
    plain = _plain_address(address)
    if plain is None:
        return  # email-validator decides, so there is nothing to disagree about
    checked = email_validator.validate_email(address, check_deliverability=False)
    assert checked.normalized.lower() == plain
