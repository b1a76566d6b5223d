"""`cggm serve`, `cggm worker`, `cggm up`: the stack's subcommands (parsers + command functions).

`serve` imports the backend inside the command (cggm_core never imports it at module level);
`up` starts the backend and one local worker as child processes and stops both on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .settings import SettingError

DEFAULT_HOST = "127.0.0.1"  # never 0.0.0.0 by default: the API has no auth unless a token is set
DEFAULT_PORT = 8000
STACK_COMMANDS = ("serve", "worker", "up")


def add_stack_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the backend (API + run store)", description="Run the backend.")
    _add_server_args(s)
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    w = sub.add_parser(
        "worker", help="train queued jobs from a backend", description="Train queued jobs from a backend."
    )
    w.add_argument(
        "--server", default=os.environ.get("CGGM_SERVER", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"), help="backend URL"
    )
    _add_worker_args(w)
    w.add_argument("--once", action="store_true", help="run one job (waiting for it if the queue is empty), then exit")
    w.add_argument("--name", default="", help="worker name recorded on its runs (default <host>-<pid>)")
    w.add_argument("--heartbeat-s", type=float, default=2.0, help="seconds between heartbeats")
    w.add_argument("--poll-s", type=float, default=1.0, help="seconds between claims while the queue is empty")
    w.add_argument("--out-dir", help="keep config, metrics.jsonl and checkpoint of each run under OUT_DIR/run-<id>")
    w.add_argument("--spool-dir", help="where points wait while the backend is unreachable (default: a temp folder)")
    w.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    u = sub.add_parser(
        "up",
        help="start the backend, the dashboard and local workers",
        description="Start the backend, the dashboard and N local workers; Ctrl-C stops them all.",
    )
    _add_server_args(u, port_flags=("--api-port", "--port"))
    _add_worker_args(u)
    u.add_argument("--ui-port", type=int, default=8050, help="dashboard port (0 = no dashboard)")
    u.add_argument("--workers", type=int, default=1, help="local workers (default 1; 0 = none)")


def _add_server_args(p: argparse.ArgumentParser, port_flags: tuple[str, ...] = ("--port",)) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    p.add_argument(*port_flags, dest="port", type=int, default=DEFAULT_PORT, help="API port to bind")
    p.add_argument("--db", help="database URL (default sqlite file <data-dir>/cggm.db; or postgresql+psycopg://...)")
    p.add_argument("--data-dir", help="folder of the default SQLite file (default ./data or $CGGM_DATA_DIR)")
    p.add_argument(
        "--token", default=os.environ.get("CGGM_TOKEN"), help="bearer token required on writes ($CGGM_TOKEN)"
    )
    p.add_argument("--heartbeat-timeout-s", type=float, help="a run silent this long becomes lost (default 30)")


def _add_worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda:K")
    if not any(a.dest == "token" for a in p._actions):
        p.add_argument(
            "--token", default=os.environ.get("CGGM_TOKEN"), help="bearer token of the backend ($CGGM_TOKEN)"
        )


def run_stack_command(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "worker":
        return cmd_worker(args)
    if args.command == "up":
        return cmd_up(args)
    raise SettingError(f"unknown command {args.command!r}; allowed: train, {', '.join(STACK_COMMANDS)}")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from backend.app import create_app
        from backend.settings import Settings
    except ImportError as e:
        raise SettingError(f"serve needs the server extra ({e}); install it with: pip install '.[server]'") from None
    overrides: dict[str, Any] = {}
    if args.db:
        overrides["db_url"] = args.db
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.token:
        overrides["token"] = args.token
    if args.heartbeat_timeout_s is not None:
        overrides["heartbeat_timeout_s"] = args.heartbeat_timeout_s
    try:
        settings = Settings(**overrides)
    except ValueError as e:  # pydantic's ValidationError names the field and the bound
        raise SettingError(f"serve: {e}".replace("\n", "; ")) from None
    app = create_app(settings)
    print(
        f"cggm: backend on http://{args.host}:{args.port} (API docs at /docs), database {settings.database_url()}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .trainer import pick_device
    from .worker import WorkerOptions, run_worker

    if args.heartbeat_s <= 0 or args.poll_s <= 0:
        raise SettingError("--heartbeat-s and --poll-s must be positive numbers of seconds")
    try:
        pick_device(args.device)
    except (ValueError, RuntimeError) as e:
        raise SettingError(f"--device: {e}") from None
    options = WorkerOptions(
        server=args.server,
        device=args.device,
        name=args.name,
        token=args.token,
        once=args.once,
        heartbeat_s=args.heartbeat_s,
        poll_s=args.poll_s,
        out_dir=Path(args.out_dir) if args.out_dir else None,
        spool_dir=Path(args.spool_dir) if args.spool_dir else None,
        progress=not args.no_progress,
    )
    return run_worker(options)


def cmd_up(args: argparse.Namespace) -> int:
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    serve_cmd = [sys.executable, "-m", "cggm_core", "serve", "--host", args.host, "--port", str(args.port)]
    for flag, value in (
        ("--db", args.db),
        ("--data-dir", args.data_dir),
        ("--heartbeat-timeout-s", args.heartbeat_timeout_s),
    ):
        if value is not None:
            serve_cmd += [flag, str(value)]
    if args.workers < 0 or not 0 <= args.ui_port <= 65535:
        raise SettingError("--workers must be >= 0 and --ui-port in 0..65535")
    env = dict(os.environ)
    if args.token:
        env["CGGM_TOKEN"] = args.token
    # Own process groups: a Ctrl-C in the terminal reaches only `up`, which then stops the workers
    # first (so they can report their runs as stopped), then the dashboard, the backend last.
    # Python leaves SIGINT ignored when started in the background by a shell; Ctrl-C must stop us.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    backend = subprocess.Popen(serve_cmd, env=env, start_new_session=True)
    workers: list[subprocess.Popen[bytes]] = []
    dashboard: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(url, backend, timeout_s=120.0)
        for i in range(args.workers):
            cmd = [sys.executable, "-m", "cggm_core", "worker", "--server", url, "--device", args.device]
            workers.append(subprocess.Popen([*cmd, "--name", f"local-{i}"], env=env, start_new_session=True))
        ui = ""
        if args.ui_port:
            ui_cmd = [sys.executable, "-m", "dashboard.cli", "--host", args.host, "--port", str(args.ui_port)]
            dashboard = subprocess.Popen([*ui_cmd, "--api", url], env=env, start_new_session=True)
            ui = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.ui_port}"
        print(
            f"cggm: dashboard {ui or '(off)'}  |  API {url} (docs {url}/docs)  |  {args.workers} worker(s); "
            "Ctrl-C stops everything",
            file=sys.stderr,
            flush=True,
        )
        procs = [backend, *workers] + ([dashboard] if dashboard else [])
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return 1  # one of them exited on its own
    except KeyboardInterrupt:
        return 0
    finally:
        stops = [(w, 60.0) for w in workers] + [(dashboard, 5.0), (backend, 15.0)]
        for proc, _ in stops:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, grace_s in stops:
            if proc is not None and proc.poll() is None:
                try:
                    proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SettingError(f"the backend exited with code {proc.returncode} before answering at {url}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SettingError(f"the backend did not answer at {url} within {timeout_s:g} s")
