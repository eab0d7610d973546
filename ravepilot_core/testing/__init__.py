"""Test doubles and contract suites: in-memory backends, a frozen clock, the backend contracts.

Everything here imports without pytest except the contract suites (:class:`StorageContract`,
:class:`MailerContract`, :class:`MediaStoreContract`, :class:`RendererContract`,
:class:`TranscriberContract`), which are loaded on first use (they are pytest test classes)::

    from ravepilot_core.testing import FrozenClock, StorageContract, open_memory_storage

    class TestMyStorage(StorageContract):  # in a plugin's own test suite
        @pytest.fixture
        async def storage(self, tmp_path): ...
"""

from __future__ import annotations

import importlib
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
    from ravepilot_core.testing.renderer_contract import RendererContract
    from ravepilot_core.testing.transcriber_contract import TranscriberContract

__all__ = [
    "FrozenClock",
    "MailerContract",
    "MediaStoreContract",
    "MemoryMailer",
    "MemoryMediaStore",
    "MemoryStorage",
    "RendererContract",
    "StorageContract",
    "TranscriberContract",
    "open_memory_mailer",
    "open_memory_media",
    "open_memory_storage",
]


# Each contract suite by name, and the module it is in.
_CONTRACTS = {
    "MailerContract": "ravepilot_core.testing.mailer_contract",
    "MediaStoreContract": "ravepilot_core.testing.media_contract",
    "RendererContract": "ravepilot_core.testing.renderer_contract",
    "StorageContract": "ravepilot_core.testing.contract",
    "TranscriberContract": "ravepilot_core.testing.transcriber_contract",
}
_CONTRACT_MODULES = (*_CONTRACTS.values(), "ravepilot_core.testing.delivery_contract")


def __getattr__(name: str) -> Any:
    # The contract suites import pytest, which an app using the memory backends may not have.
    module = _CONTRACTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not any(loaded in sys.modules for loaded in _CONTRACT_MODULES):
        import pytest

        # Plain asserts in the suites then show both sides when a backend fails one.
        pytest.register_assert_rewrite(*_CONTRACT_MODULES)
    return getattr(importlib.import_module(module), name)
