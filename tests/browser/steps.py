"""What a customer does on the portal, one helper per action, each waiting on visible state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Recording waits: 3 s of countdown, up to max_seconds of recording, and a slow CI machine.
RECORD_TIMEOUT_MS = 30_000
UPLOAD_TIMEOUT_MS = 90_000


def current_step(page: Any) -> str:
    step: str = page.locator("main").get_attribute("data-current") or ""
    return step


def wait_for_step(page: Any, step: str, timeout: float = 20_000) -> None:
    """Wait until ``step`` is the visible step (and its heading is there)."""
    page.locator(f"main[data-current='{step}']").wait_for(timeout=timeout)
    page.locator(f"#step-{step} h2").wait_for(state="visible", timeout=timeout)


def open_portal(page: Any, link: str, **query: int) -> None:
    """Open the invite link (``query`` adds test hooks such as ``chunk_size``)."""
    suffix = "&".join(f"{name}={value}" for name, value in query.items())
    page.goto(f"{link}?{suffix}" if suffix else link)
    page.locator("main[data-ready='true']").wait_for()


def give_consent(page: Any) -> None:
    page.get_by_role("button", name="Get started").click()
    wait_for_step(page, "consent")
    page.get_by_label("I have read and agree to the text above.").check()
    page.get_by_role("button", name="Agree and continue").click()
    wait_for_step(page, "record")


def wait_for_camera(page: Any) -> None:
    page.get_by_role("button", name="Start recording").wait_for(state="visible")


def record(page: Any, stop_after_ms: int | None = None) -> None:
    """Record a take; stop it after ``stop_after_ms`` of recording, or let the limit stop it."""
    wait_for_camera(page)
    page.get_by_role("button", name="Start recording").click()
    stop = page.get_by_role("button", name="Stop recording")
    stop.wait_for(state="visible", timeout=RECORD_TIMEOUT_MS)
    if stop_after_ms is not None:
        page.wait_for_timeout(stop_after_ms)
        stop.click()
    page.get_by_role("button", name="Use this video").wait_for(
        state="visible", timeout=RECORD_TIMEOUT_MS
    )


def accept(page: Any) -> None:
    page.get_by_role("button", name="Use this video").click()


def upload_item(page: Any, script_key: str) -> Any:
    return page.locator(f"#upload-list li[data-script-key='{script_key}']")


def pending_takes(page: Any) -> list[dict[str, Any]]:
    """The takes the page keeps in IndexedDB (without their blobs)."""
    takes: list[dict[str, Any]] = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const request = indexedDB.open("ravepilot-portal");
            request.onerror = () => reject(request.error);
            request.onsuccess = () => {
                const db = request.result;
                if (!db.objectStoreNames.contains("takes")) { db.close(); resolve([]); return; }
                const all = db.transaction("takes").objectStore("takes").getAll();
                all.onsuccess = () => {
                    db.close();
                    const takes = all.result.map(({ blob, ...take }) => ({
                        ...take, blobSize: blob.size,
                    }));
                    resolve(takes);
                };
                all.onerror = () => reject(all.error);
            };
        })"""
    )
    return takes


def screenshot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)
