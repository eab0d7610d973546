"""The one exception tree of RavePilot.

Every error the core raises on purpose derives from :class:`RavePilotError`. Each carries the HTTP
status a server should answer with and a snake_case ``code``, so a framework adapter maps errors
without knowing every subclass::

    RavePilotError                    (500 internal)
    ├── InvalidRequest                (400 invalid_request)  what to fix is in the message
    │   └── InvalidSignature          (400 invalid_signature) a webhook failed verification
    ├── AuthenticationFailed          (401 unauthenticated)  missing/malformed/unknown/revoked key
    ├── PermissionDenied              (403 missing_scope)    valid key without the needed scope
    ├── LinkExpired                   (403 link_expired)     a signed playback URL ran out
    ├── NotFound                      (404 not_found)        absent in *your* workspace
    │   └── MediaNotFound             (404 media_not_found)  no such object in the media store
    ├── Conflict                      (409 conflict)         clashes with the current state
    │   └── IdempotencyConflict       (409 idempotency_conflict)
    ├── PayloadTooLarge               (413 payload_too_large)
    ├── UnsupportedMediaType          (415 unsupported_media_type)  not a video we can take
    ├── MediaProcessingError          (422 media_processing_failed) ffmpeg & co. could not
    ├── RateLimited                   (429 rate_limited)     carries ``retry_after`` seconds
    ├── ConfigurationError            (500 configuration_error)  bad settings at start-up
    │   └── BackendNotFound           (500 backend_not_found)    no plugin for a URL scheme
    ├── BackendError                  (503 backend_unavailable)  a backend failed; safe to retry
    └── JobAbandoned                  (500 job_abandoned)  a background job that must not retry
        └── MailRejected              (500 mail_rejected)  the mail server refused for good (5xx)
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BackendError",
    "BackendNotFound",
    "ConfigurationError",
    "Conflict",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidSignature",
    "JobAbandoned",
    "LinkExpired",
    "MailRejected",
    "MediaNotFound",
    "MediaProcessingError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RavePilotError",
    "UnsupportedMediaType",
]


class RavePilotError(Exception):
    """Base of every deliberate RavePilot error."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RavePilotError):
    """The input is invalid; the message says what to fix."""

    status = 400
    code = "invalid_request"


class InvalidSignature(InvalidRequest):
    """A received webhook's signature is missing, malformed, wrong or outside the tolerance.

    Raised by :mod:`ravepilot_core.signing`'s verifiers; a receiver answers 400 and drops it.
    """

    code = "invalid_signature"


class AuthenticationFailed(RavePilotError):
    """The API key is missing, malformed, unknown or revoked."""

    status = 401
    code = "unauthenticated"


class PermissionDenied(RavePilotError):
    """The API key is valid but lacks the scope the operation requires."""

    status = 403
    code = "missing_scope"


class LinkExpired(RavePilotError):
    """A signed, expiring URL (playback) is past its time; the message says how to get another."""

    status = 403
    code = "link_expired"


class NotFound(RavePilotError):
    """The resource does not exist in the caller's workspace."""

    status = 404
    code = "not_found"


class MediaNotFound(NotFound):
    """A media store holds no object under the key asked for."""

    code = "media_not_found"


class Conflict(RavePilotError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class IdempotencyConflict(Conflict):
    """An ``Idempotency-Key`` was reused with another body, or is still in flight."""

    code = "idempotency_conflict"


class PayloadTooLarge(RavePilotError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RavePilotError):
    """An upload is not a video (or audio) format RavePilot accepts; the message names them."""

    status = 415
    code = "unsupported_media_type"


class MediaProcessingError(RavePilotError):
    """A clip or render could not be processed (corrupt, silent, too short, a tool failed).

    The message says why in words a user can act on; a failed clip or render shows it.
    """

    status = 422
    code = "media_processing_failed"


class RateLimited(RavePilotError):
    """Too many requests; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(RavePilotError):
    """The settings are unusable; raised at start-up, never per request."""

    code = "configuration_error"


class BackendNotFound(ConfigurationError):
    """No installed plugin serves the URL scheme that was asked for."""

    code = "backend_not_found"


class BackendError(RavePilotError):
    """A backend (storage, mailer) failed; the operation is safe to retry."""

    status = 503
    code = "backend_unavailable"


class JobAbandoned(RavePilotError):
    """A background job cannot succeed by retrying (its subject is gone); it fails at once."""

    code = "job_abandoned"


class MailRejected(JobAbandoned):
    """The mail server refused the message for good (an SMTP 5xx); resending cannot help.

    A mailer raises it with the server's reason; the email job then fails at once and the reason
    is shown on the submission. Any other exception from a mailer means "try again later".
    """

    code = "mail_rejected"
