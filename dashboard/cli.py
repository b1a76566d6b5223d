"""`cggm dashboard`: serve the Dash app. Registered by cggm_core/cli.py via `add_parser` / `run`.

Imported only inside the subcommand, so `cggm_core` never imports `dashboard` at module level.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "dashboard", help="serve the web dashboard", description="Serve the web dashboard (Dash) for a backend."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument(
        "--api",
        default=os.environ.get("CGGM_API", "http://127.0.0.1:8000"),
        help="backend URL (default $CGGM_API or http://127.0.0.1:8000)",
    )
    p.add_argument(
        "--poll-ms", type=int, default=1000, help="live-update interval of run pages in ms (default 1000, min 100)"
    )
    p.add_argument(
        "--token", default=os.environ.get("CGGM_TOKEN"), help="bearer token for writes (default $CGGM_TOKEN)"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .app import create_app  # dash and plotly load only when the dashboard is served

    if not 1 <= args.port <= 65535:
        raise SystemExit(f"--port {args.port}: expected 1..65535")
    app = create_app(args.api, poll_interval_ms=args.poll_ms, token=args.token)
    print(f"dashboard on http://{args.host}:{args.port} (backend {args.api})", flush=True)
    serve(app.server, args.host, args.port)
    return 0


# Threads serve Dash's callbacks side by side: a page's first render, its ticks, the health poll
# and other pages. A tick waits on the backend, not the CPU, so more threads than cores is right.
SERVER_THREADS = 16


def serve(wsgi_app: Any, host: str, port: int) -> None:
    """A production WSGI server (waitress), not Flask's development server that `Dash.run` uses."""
    import logging

    from waitress import create_server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    create_server(wsgi_app, host=host, port=port, threads=SERVER_THREADS).run()


def main(argv: list[str] | None = None) -> int:
    """`python -m dashboard.cli --api URL`: the same command without the `cggm` front end."""
    parser = argparse.ArgumentParser(prog="cggm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["dashboard", *(argv if argv is not None else __import__("sys").argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
