"""`cggm dashboard`: serve the Dash app. Registered by cggm_core/cli.py via `add_parser` / `run`.

Imported only inside the subcommand, so `cggm_core` never imports `dashboard` at module level.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cggm_core.exposure import INSECURE_ENV, INSECURE_FLAG, env_flag, exposure_error, exposure_warning
from cggm_core.settings import SettingError


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
    p.add_argument(
        INSECURE_FLAG,
        action="store_true",
        default=env_flag(INSECURE_ENV),
        help=f"allow a non-loopback --host without a token, on purpose (${INSECURE_ENV}=1)",
    )
    p.add_argument(
        "--access-log",
        choices=("errors", "all", "off"),
        default="errors",
        help="the request log: errors (4xx/5xx only, the default), all, or off",
    )
    p.set_defaults(func=run)
    return p


access_log = logging.getLogger("dashboard.access")


class AccessLog:
    """A request log for the WSGI app (waitress keeps none): every request, or only the failed ones
    (an open page calls back every second, so a line per success would drown the console)."""

    def __init__(self, app: Any, errors_only: bool) -> None:
        self.app = app
        self.errors_only = errors_only

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def logging_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0])
            if code >= 400 or not self.errors_only:
                path = environ.get("PATH_INFO", "")
                query = environ.get("QUERY_STRING")
                line = f"{environ.get('REQUEST_METHOD', '')} {path}{'?' + query if query else ''}"
                access_log.warning('%s "%s" %s', environ.get("REMOTE_ADDR", "-"), line, code)
            return start_response(status, headers, exc_info)

        return self.app(environ, logging_start_response)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise SettingError(f"--port {args.port}: expected 1..65535")
    problem = exposure_error("dashboard", args.host, args.token, args.insecure_no_token)
    if problem:
        raise SettingError(problem)
    from .app import create_app  # dash and plotly load only when the dashboard is served

    app = create_app(args.api, poll_interval_ms=args.poll_ms, token=args.token)
    print(f"dashboard on http://{args.host}:{args.port} (backend {args.api})", flush=True)
    warning = exposure_warning("dashboard", args.host, args.token)
    if warning:
        print(f"cggm: {warning}", file=sys.stderr, flush=True)
    wsgi: Any = app.server
    if args.access_log != "off":
        wsgi = AccessLog(wsgi, errors_only=args.access_log == "errors")
    serve(wsgi, args.host, args.port)
    return 0


# Threads serve Dash's callbacks side by side: a page's first render, its ticks, the health poll
# and other pages. A tick waits on the backend, not the CPU, so more threads than cores is right.
SERVER_THREADS = 16


def serve(wsgi_app: Any, host: str, port: int) -> None:
    """A production WSGI server (waitress), not Flask's development server that `Dash.run` uses."""
    from waitress import create_server

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    create_server(wsgi_app, host=host, port=port, threads=SERVER_THREADS).run()


def main(argv: list[str] | None = None) -> int:
    """`python -m dashboard.cli --api URL`: the same command without the `cggm` front end."""
    parser = argparse.ArgumentParser(prog="cggm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["dashboard", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(args.func(args))
    except SettingError as e:
        print(f"cggm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
