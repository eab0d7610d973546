"""The benchmark server: the RavePilot app plus a no-op baseline route, served like ``serve``.

``build_app(settings)`` is ``create_app(settings)`` (worker on, exactly as in production) with one
extra route registered on the same instance after construction, so the app code is untouched:

    GET /bench/noop  ->  200 {"ok":true}  (no auth, no storage: Litestar routing + JSON encoding)

Run as a script it serves that app the way ``ravepilot serve`` does with one worker:
``uvicorn.run(app, host=..., port=...)`` with uvicorn's defaults (httptools and uvloop when
installed, access log on), after the same logging setup as the CLI. ``benchmarks/api.py`` starts it
in a subprocess; you can also run it by hand:

    python benchmarks/noop_app.py --data-dir /tmp/rp-bench --port 8765
    RAVEPILOT_DATABASE_URL='postgresql://...?search_path=s' python benchmarks/noop_app.py ...

The data dir and ``RAVEPILOT_DATABASE_URL`` (unset: SQLite in the data dir) are all it reads.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from litestar import Litestar, get

from ravepilot_core import Settings
from ravepilot_server.app import create_app
from ravepilot_server.process import tune_for_serving

__all__ = ["NOOP_PATH", "build_app", "noop"]

NOOP_PATH = "/bench/noop"


@get(NOOP_PATH, include_in_schema=False)
async def noop() -> dict[str, bool]:
    """The baseline: what every request costs before RavePilot does any work."""
    return {"ok": True}


def build_app(settings: Settings, *, run_worker: bool = True) -> Litestar:
    """``create_app(settings)`` with the no-op route added to the same app instance."""
    app = create_app(settings, run_worker=run_worker)
    app.register(noop)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-worker", action="store_true", help="do not run the job worker")
    parser.add_argument(
        "--no-access-log", action="store_true", help="uvicorn access_log=False (serve keeps it on)"
    )
    args = parser.parse_args()

    import uvicorn

    # What `ravepilot` (cli.main) sets up before `serve` runs.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("piccolo").setLevel(logging.WARNING)
    tune_for_serving()  # what `serve` does next

    # Only the data dir and the database are configured: the embedded defaults (SQLite, outbox
    # mailer) are the point, so the other RAVEPILOT_* variables are deliberately not read.
    # benchmarks/api.py sets RAVEPILOT_DATABASE_URL for --database postgres, and only then.
    settings = Settings(
        data_dir=args.data_dir, database_url=os.environ.get("RAVEPILOT_DATABASE_URL") or None
    )
    app = build_app(settings, run_worker=not args.no_worker)
    uvicorn.run(app, host=args.host, port=args.port, access_log=not args.no_access_log)


if __name__ == "__main__":
    main()
