"""Webhook signatures: signing each delivery, and verifying one as a receiver would.

Every delivery carries two signatures over the same raw body, so receivers can use whichever
verifier they already have:

- ``X-RavePilot-Signature: t=<unix>,v1=<hex>`` with ``v1 = HMAC-SHA256(secret, t + "." + body)``,
  keyed by the UTF-8 bytes of the whole ``whsec_…`` string. This is Stripe's scheme, so the seed's
  snippets and ``stripe.WebhookSignature.verify_header`` accept it.
- The Standard Webhooks headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
  v1,<base64>``, keyed by the base64-decoded part of the secret after ``whsec_`` and signing
  ``id + "." + t + "." + body``.

While a secret is being rotated the endpoint has two valid secrets, and each header carries one
signature per secret (newest first); a receiver holding either secret accepts the delivery.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from ravepilot_core.crypto import WEBHOOK_SECRET_PREFIX
from ravepilot_core.errors import InvalidSignature

__all__ = [
    "DEFAULT_TOLERANCE",
    "Signer",
    "verify_signature",
    "verify_standard_webhook",
]

DEFAULT_TOLERANCE: timedelta = timedelta(minutes=5)

_SIGNATURE_HEADER = "X-RavePilot-Signature"


def _standard_webhooks_key(secret: str) -> bytes:
    """Return the HMAC key Standard Webhooks derives from a ``whsec_`` secret.

    Raises:
        ValueError: The secret is not ``whsec_`` followed by non-empty, valid base64.
    """
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        # The message quotes none of the secret: it may end up in a log.
        raise ValueError(f"a webhook secret must start with {WEBHOOK_SECRET_PREFIX!r}")
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        # validate=True: a lenient decode would silently drop stray characters and sign with a
        # key the receiver (who decodes what it was shown) does not have.
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(
            f"the part of a webhook secret after {WEBHOOK_SECRET_PREFIX!r} must be base64 "
            f"(as new_webhook_secret() makes it): {exc}"
        ) from None
    if not key:
        raise ValueError(f"a webhook secret has no key material after {WEBHOOK_SECRET_PREFIX!r}")
    return key


class Signer:
    """Signs deliveries for one endpoint with its valid secrets (newest first).

    Both key forms are derived once here, so :meth:`headers` does only the HMACs. The keys live
    in slots that the default ``repr`` does not show.

    Example:
        >>> from ravepilot_core.crypto import new_webhook_secret
        >>> signer = Signer([new_webhook_secret()])
        >>> headers = signer.headers(
        ...     delivery_id="dlv_1", event_type="clip.approved", body=b"{}", timestamp=1700000000
        ... )
        >>> headers["X-RavePilot-Signature"].startswith("t=1700000000,v1=")
        True
    """

    __slots__ = ("_ravepilot_keys", "_standard_keys")

    def __init__(self, secrets: Sequence[str]) -> None:
        # A bare str is a Sequence[str] too; signing with its characters would be a silent bug.
        if isinstance(secrets, str):
            raise TypeError("Signer takes a sequence of secrets, not one secret string")
        if not secrets:
            raise ValueError("a Signer needs at least one webhook secret")
        self._standard_keys = tuple(_standard_webhooks_key(secret) for secret in secrets)
        self._ravepilot_keys = tuple(secret.encode() for secret in secrets)

    def headers(
        self, *, delivery_id: str, event_type: str, body: bytes, timestamp: int
    ) -> dict[str, str]:
        """Return the event, delivery-id and signature headers for one delivery attempt.

        Args:
            delivery_id: The delivery's id (the same on every retry); also the ``webhook-id``.
            event_type: The event name, e.g. ``clip.approved``.
            body: The exact bytes that will be sent as the request body.
            timestamp: The signing time in Unix seconds. Sign each attempt, retries included,
                when it is sent: receivers reject a timestamp older than their tolerance.

        Returns:
            ``X-RavePilot-Event``, ``X-RavePilot-Delivery``, ``X-RavePilot-Signature``,
            ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.
        """
        unix = str(timestamp)
        # The Standard Webhooks message is the RavePilot one with "<id>." in front, so the body
        # is copied into a signed message twice per call, not once per secret and scheme.
        ravepilot_message = unix.encode() + b"." + body
        standard_message = delivery_id.encode() + b"." + ravepilot_message
        ravepilot_signatures = ",".join(
            [
                "v1=" + hmac.digest(key, ravepilot_message, "sha256").hex()
                for key in self._ravepilot_keys
            ]
        )
        standard_signatures = " ".join(
            [
                "v1,"
                + b2a_base64(hmac.digest(key, standard_message, "sha256"), newline=False).decode()
                for key in self._standard_keys
            ]
        )
        return {
            "X-RavePilot-Event": event_type,
            "X-RavePilot-Delivery": delivery_id,
            _SIGNATURE_HEADER: "t=" + unix + "," + ravepilot_signatures,
            "webhook-id": delivery_id,
            "webhook-timestamp": unix,
            "webhook-signature": standard_signatures,
        }


def _parse_unix_seconds(text: str, header: str) -> int:
    """Return a header's Unix timestamp, accepting only plain ASCII digits."""
    # int() alone would also take " 17", "+17", "1_7" and non-ASCII digits.
    if not (text.isascii() and text.isdigit()):
        raise InvalidSignature(f"malformed {header} header: timestamp {text!r} is not Unix seconds")
    return int(text)


def _check_freshness(
    timestamp: int, tolerance: timedelta, now: datetime | None, header: str
) -> datetime:
    """Return the signing time, or raise if it is further than ``tolerance`` from ``now``."""
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    # Comparing plain seconds first means an absurd timestamp cannot overflow datetime.
    age = now.timestamp() - timestamp
    limit = tolerance.total_seconds()
    if age > limit:
        raise InvalidSignature(
            f"{header} timestamp is too old: signed {age:.0f} s ago, the tolerance is "
            f"{limit:.0f} s (a replay, or a clock that is off)"
        )
    if -age > limit:
        raise InvalidSignature(
            f"{header} timestamp is too far in the future: {-age:.0f} s ahead, the tolerance is "
            f"{limit:.0f} s (check the receiver's clock)"
        )
    return datetime.fromtimestamp(timestamp, UTC)


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> datetime:
    """Check an ``X-RavePilot-Signature`` header against the raw request body.

    Any one ``v1=`` matching is enough (during a rotation there is one per valid secret);
    schemes other than ``v1`` are ignored so that new ones can be added later.

    Args:
        body: The raw request body, exactly as received (not re-serialised JSON).
        header: The ``X-RavePilot-Signature`` value; empty when the header was missing.
        secret: The endpoint's ``whsec_…`` secret.
        tolerance: How far the signing time may be from ``now``, either way.
        now: The current time (timezone-aware); defaults to the current UTC time.

    Returns:
        The time the delivery was signed (UTC).

    Raises:
        InvalidSignature: The header is missing or malformed, no ``v1=`` matches, or the
            timestamp is outside the tolerance; the message says which.
        ValueError: ``secret`` is empty or ``now`` is naive (a bug in the caller, not the request).
    """
    if not secret:
        raise ValueError("the webhook secret is empty; pass the endpoint's whsec_ secret")
    if not header.strip():
        raise InvalidSignature(f"missing {_SIGNATURE_HEADER} header")
    timestamps: list[str] = []
    candidates: list[str] = []
    for item in header.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals or not name or not value:
            raise InvalidSignature(
                f"malformed {_SIGNATURE_HEADER} header: expected t=<unix>,v1=<hex>, "
                f"got item {item!r}"
            )
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            candidates.append(value)
    if not timestamps:
        raise InvalidSignature(f"{_SIGNATURE_HEADER} header has no t=<unix> timestamp")
    if len(timestamps) > 1:
        raise InvalidSignature(f"malformed {_SIGNATURE_HEADER} header: more than one t=")
    if not candidates:
        raise InvalidSignature(f"{_SIGNATURE_HEADER} header has no v1= signature")
    timestamp = _parse_unix_seconds(timestamps[0], _SIGNATURE_HEADER)

    expected = hmac.digest(secret.encode(), timestamps[0].encode() + b"." + body, "sha256")
    expected_hex = expected.hex().encode()
    # Bytes, because compare_digest raises TypeError on a str with non-ASCII characters.
    if not any(hmac.compare_digest(expected_hex, value.encode()) for value in candidates):
        raise InvalidSignature(
            f"no v1= signature in {_SIGNATURE_HEADER} matches this body and secret "
            "(was the body re-serialised, or is the secret an old one?)"
        )
    return _check_freshness(timestamp, tolerance, now, _SIGNATURE_HEADER)


def verify_standard_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: timedelta = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> str:
    """Check the Standard Webhooks headers (``webhook-id``, ``-timestamp``, ``-signature``).

    Args:
        body: The raw request body, exactly as received.
        headers: The request headers; names are matched case-insensitively.
        secret: The endpoint's ``whsec_…`` secret.
        tolerance: How far the signing time may be from ``now``, either way.
        now: The current time (timezone-aware); defaults to the current UTC time.

    Returns:
        The ``webhook-id``: the delivery id, the same on every retry (use it for idempotency).

    Raises:
        InvalidSignature: A header is missing or malformed, no ``v1,`` signature matches, or
            the timestamp is outside the tolerance; the message says which.
        ValueError: ``secret`` is not ``whsec_`` + base64, or ``now`` is naive.
    """
    key = _standard_webhooks_key(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lowered.get(name, "").strip()
        if not value:
            raise InvalidSignature(f"missing {name} header")
        values[name] = value
    delivery_id = values["webhook-id"]
    unix = values["webhook-timestamp"]
    timestamp = _parse_unix_seconds(unix, "webhook-timestamp")

    candidates: list[bytes] = []
    # The spec separates signatures with one space; split() also tolerates a doubled one.
    for item in values["webhook-signature"].split():
        version, comma, encoded = item.partition(",")
        if not comma or not version or not encoded:
            raise InvalidSignature(
                f"malformed webhook-signature header: expected v1,<base64>, got {item!r}"
            )
        if version != "v1":
            continue  # e.g. v1a (asymmetric): not ours to check
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            raise InvalidSignature(
                f"malformed webhook-signature header: {encoded!r} is not base64"
            ) from None
    if not candidates:
        raise InvalidSignature("webhook-signature header has no v1, signature")

    message = delivery_id.encode() + b"." + unix.encode() + b"." + body
    expected = hmac.digest(key, message, "sha256")
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise InvalidSignature(
            "no v1 signature in webhook-signature matches this body, id, timestamp and secret"
        )
    _check_freshness(timestamp, tolerance, now, "webhook-timestamp")
    return delivery_id
