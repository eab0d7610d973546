"""Test doubles and contract suites: in-memory backends, a frozen clock, the Storage contract.

Everything here imports without pytest except :class:`StorageContract`, which is loaded on first
use (it is a pytest test class)::

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

if TYPE_CHECKING:
    from ravepilot_core.testing.contract import StorageContract

__all__ = [
    "FrozenClock",
    "MemoryMailer",
    "MemoryStorage",
    "StorageContract",
    "open_memory_mailer",
    "open_memory_storage",
]


def __getattr__(name: str) -> Any:
    # The contract suite imports pytest, which an app using the memory backends may not have.
    if name == "StorageContract":
        if "ravepilot_core.testing.contract" not in sys.modules:
            import pytest

            # Plain asserts in the suite then show both sides when a backend fails one.
            pytest.register_assert_rewrite(
                "ravepilot_core.testing.contract", "ravepilot_core.testing.delivery_contract"
            )
        from ravepilot_core.testing.contract import StorageContract

        return StorageContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
