"""Turn what aiosmtplib raises into what the email job understands.

The job fails an email at once on :class:`~ravepilot_core.errors.MailRejected` and retries with
backoff on anything else, so the one decision made here is which is which: an SMTP reply of 5xx
is the server saying "never" (RFC 5321 §4.2.1), everything else (4xx, refused or dropped
connections, timeouts, TLS trouble) may heal by itself. Both carry the server's own words,
because the message ends up on the submission where an operator reads it.
"""

from __future__ import annotations

import ssl

from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectResponseError,
    SMTPDataError,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from ravepilot_core.errors import BackendError, MailRejected
from ravepilot_smtp.settings import SMTPSettings

__all__ = ["describe_failure", "is_dropped_connection", "summary"]

#: The reply a server sends when it closes the session (idle too long, shutting down).
SERVICE_CLOSING = 421


def is_dropped_connection(exc: BaseException) -> bool:
    """Whether ``exc`` means the server had closed the session before we spoke.

    On a connection taken from the pool this is the expected end of an idle session, not a
    failure of the message: the mailer reconnects and sends again once.
    """
    if isinstance(exc, SMTPServerDisconnected):
        return True
    return isinstance(exc, SMTPResponseException) and exc.code == SERVICE_CLOSING


def summary(exc: BaseException) -> str:
    """``exc`` in a few words: the server's reply (``421 4.4.2 closing``), or the error."""
    if isinstance(exc, SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return str(exc) or type(exc).__name__


def _refused_what(exc: SMTPResponseException, settings: SMTPSettings) -> str:
    if isinstance(exc, SMTPAuthenticationError):
        return f"the login of {settings.username!r}"
    if isinstance(exc, SMTPSenderRefused):
        return f"the sender {exc.sender}"
    if isinstance(exc, SMTPRecipientRefused):
        return f"the recipient {exc.recipient}"
    if isinstance(exc, SMTPDataError):
        return "the message"
    if isinstance(exc, SMTPHeloError):
        return "our greeting (EHLO)"
    if isinstance(exc, SMTPConnectResponseError):
        return "the connection"
    return "a command"


def _hint(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                "; the server's certificate is not trusted: if it comes from a private CA, "
                "add ca_file=/path/to/ca.pem to the smtp:// URL"
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, SMTPTimeoutError):
        return "; raise timeout= in the smtp:// URL if the server is just slow"
    return ""


def describe_failure(exc: SMTPException | OSError, settings: SMTPSettings) -> Exception:
    """Return the exception that ``send`` raises for ``exc``, with the server's words.

    Args:
        exc: What aiosmtplib (or the socket under it) raised.
        settings: The mailer's settings, to name the server.

    Returns:
        :class:`~ravepilot_core.errors.MailRejected` for a permanent refusal (a 5xx reply),
        else :class:`~ravepilot_core.errors.BackendError` (the job retries).
    """
    server = f"the SMTP server {settings.address}"
    refusal: SMTPResponseException | None = None
    if isinstance(exc, SMTPRecipientsRefused) and exc.recipients:
        refusal = exc.recipients[0]  # we send to one recipient at a time
    elif isinstance(exc, SMTPResponseException):
        refusal = exc
    if refusal is not None:
        what = _refused_what(refusal, settings)
        reply = summary(refusal)
        if refusal.code >= 500:
            return MailRejected(f"{server} refused {what}: {reply}")
        return BackendError(f"{server} deferred {what} (temporary): {reply}")
    return BackendError(f"could not send through {server}: {summary(exc)}{_hint(exc)}")
