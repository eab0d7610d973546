"""S3's failures as RavePilot's: a :class:`~ravepilot_core.errors.BackendError` saying what failed.

obstore's messages run over many lines (with a debug dump of the request); the error keeps the
first line and S3's own error code and message (``NoSuchBucket: The specified bucket does not
exist``), which is what an operator needs to fix the bucket, the credentials or the endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from obstore.exceptions import BaseError as ObstoreError

from ravepilot_core.errors import BackendError

__all__ = ["backend_errors", "reason"]

_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


@contextmanager
def backend_errors(action: str, *, not_ours: Sequence[BaseException] = ()) -> Iterator[None]:
    """Turn obstore's failures into BackendError (safe to retry), saying what was being done.

    Exceptions in ``not_ours`` (raised by the caller's chunks, passed on by obstore) pass as
    they are: a client that went away is not a failing S3.
    """
    try:
        yield
    except (ObstoreError, OSError) as exc:
        if any(exc is other for other in not_ours):
            raise
        raise BackendError(f"S3 failed to {action}: {reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    """The first line of obstore's (long, multi-line) message, with S3's error code if any."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.partition(": <?xml")[0][:300]
    code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
    if code:
        line += f" ({code.group(1)}{': ' + message.group(1) if message else ''})"
    return line
