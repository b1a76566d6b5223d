"""`cggm dashboard`: serve the Dash app. Registered by cggm_core/cli.py via `add_parser` / `run`.

Imported only inside the subcommand, so `cggm_core` never imports `dashboard` at module level.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

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


_STATUS = re.compile(r"(\d{3})")


class _ErrorsOnly(logging.Filter):
    """Werkzeug's request lines without the successful ones: an open page calls back every second."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 3):  # (request line, status, size): a request
            return True
        status = _STATUS.search(str(args[1]))  # the status may be wrapped in colour codes
        return status is None or int(status.group(1)) >= 400


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
    requests = logging.getLogger("werkzeug")
    if args.access_log == "off":
        requests.setLevel(logging.WARNING)
    elif args.access_log == "errors":
        requests.addFilter(_ErrorsOnly())
    app.run(host=args.host, port=args.port, debug=False)
    return 0


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
