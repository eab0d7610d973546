"""Test doubles and contract suites: in-memory backends, a frozen clock, the backend contracts.

Everything here imports without pytest except :class:`StorageContract`, :class:`MailerContract`
and :class:`MediaStoreContract`, which are loaded on first use (they are pytest test classes)::

    from ravepilot_core.testing import FrozenClock, StorageContract, open_memory_storage

    class TestMyStorage(StorageContract):  # in a plugin's own test suite
        @pytest.fixture
        async def storage(self, tmp_path): ...
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ravepilot_core.testing.clock import FrozenClock
from ravepilot_core.testing.memory import (
    MemoryMailer,
    MemoryStorage,
    open_memory_mailer,
    open_memory_storage,
)
from ravepilot_core.testing.memory_media import MemoryMediaStore, open_memory_media

if TYPE_CHECKING:
    from ravepilot_core.testing.contract import StorageContract
    from ravepilot_core.testing.mailer_contract import MailerContract
    from ravepilot_core.testing.media_contract import MediaStoreContract

__all__ = [
    "FrozenClock",
    "MailerContract",
    "MediaStoreContract",
    "MemoryMailer",
    "MemoryMediaStore",
    "MemoryStorage",
    "StorageContract",
    "open_memory_mailer",
    "open_memory_media",
    "open_memory_storage",
]


_CONTRACT_MODULES = (
    "ravepilot_core.testing.contract",
    "ravepilot_core.testing.delivery_contract",
    "ravepilot_core.testing.mailer_contract",
    "ravepilot_core.testing.media_contract",
)


def __getattr__(name: str) -> Any:
    # The contract suites import pytest, which an app using the memory backends may not have.
    if name in ("StorageContract", "MailerContract", "MediaStoreContract"):
        if not any(module in sys.modules for module in _CONTRACT_MODULES):
            import pytest

            # Plain asserts in the suites then show both sides when a backend fails one.
            pytest.register_assert_rewrite(*_CONTRACT_MODULES)
        if name == "MailerContract":
            from ravepilot_core.testing.mailer_contract import MailerContract

            return MailerContract
        if name == "MediaStoreContract":
            from ravepilot_core.testing.media_contract import MediaStoreContract

            return MediaStoreContract
        from ravepilot_core.testing.contract import StorageContract

        return StorageContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
