"""`cggm serve`, `cggm worker`, `cggm up`: the stack's subcommands (parsers + command functions).

`serve` imports the backend inside the command (cggm_core never imports it at module level);
`up` starts the backend, the dashboard and local workers as child processes, watches them
(cggm_core/supervisor.py: which one died and why, restart or stop everything) and stops them all
on Ctrl-C. `serve`, `up` and `dashboard` refuse to listen beyond this machine without a token
unless told so with --insecure-no-token (cggm_core/exposure.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .exposure import INSECURE_ENV, INSECURE_FLAG, env_flag, exposure_error, exposure_warning
from .settings import SettingError
from .supervisor import ChildSpec, RestartPolicy, StackFailed, Supervisor

DEFAULT_HOST = "127.0.0.1"  # never 0.0.0.0 by default: the API has no auth unless a token is set
DEFAULT_PORT = 8000
STACK_COMMANDS = ("serve", "worker", "up")
ACCESS_LOG_CHOICES = ("errors", "all", "off")


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
    w.add_argument(
        "--spool-dir",
        help="root of the per-server spools where points wait while the backend is unreachable "
        "(default $CGGM_SPOOL_DIR, else ~/.cache/cggm/spool)",
    )
    w.add_argument(
        "--retry-s",
        type=float,
        default=None,
        help="how long ending a run keeps retrying while the backend is away (default 300); "
        "what is left stays in the spool for `cggm sync`",
    )
    w.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    w.add_argument(
        "--gpus",
        help="the GPUs this worker owns, e.g. 0,1,2,3: shared out in slots of --gpus-per-job, each slot training "
        "its own job at the same time (NCCL across the slot's GPUs)",
    )
    w.add_argument(
        "--gpus-per-job",
        "--procs-per-job",
        dest="procs_per_job",
        type=int,
        default=1,
        metavar="K",
        help="processes (ranks) per job: with --gpus, K GPUs per job; without, K processes on --device "
        "(gloo on the CPU). 1 (the default, without --gpus) trains in the worker's own process",
    )

    u = sub.add_parser(
        "up",
        help="start the backend, the dashboard and local workers",
        description=(
            "Start the backend, the dashboard and N local workers; Ctrl-C stops them all. A process that "
            "dies is named with its exit code or signal and its last lines, and restarted after a back-off; "
            "one that dies more than --max-restarts times within a minute stops everything (exit 1)."
        ),
    )
    _add_server_args(u, port_flags=("--api-port", "--port"))
    _add_worker_args(u)
    u.add_argument("--ui-port", type=int, default=8050, help="dashboard port (0 = no dashboard)")
    u.add_argument("--workers", type=int, default=1, help="local workers (default 1; 0 = none)")
    u.add_argument(
        "--max-restarts",
        type=int,
        default=3,
        help="restarts of one process allowed within 60 s before everything stops (default 3; 0 = never restart)",
    )
    u.add_argument("--log-dir", help="each process's output, one file per process (default <db-dir>/logs)")


def _add_server_args(p: argparse.ArgumentParser, port_flags: tuple[str, ...] = ("--port",)) -> None:
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    p.add_argument(*port_flags, dest="port", type=int, default=DEFAULT_PORT, help="API port to bind")
    p.add_argument("--db", help="database URL (default sqlite file <db-dir>/cggm.db; or postgresql+psycopg://...)")
    p.add_argument("--db-dir", help="folder of the default SQLite file (default ./data or $CGGM_DB_DIR)")
    # The old name, before $CGGM_DATA_DIR became the workers' data root (the user's data sets).
    p.add_argument("--data-dir", dest="db_dir", help=argparse.SUPPRESS)
    p.add_argument(
        "--token", default=os.environ.get("CGGM_TOKEN"), help="bearer token required on writes ($CGGM_TOKEN)"
    )
    p.add_argument(
        "--token-reads",
        action="store_true",
        default=env_flag("CGGM_TOKEN_READS"),
        help="require the token on reads too, not only on writes ($CGGM_TOKEN_READS=1)",
    )
    p.add_argument(
        INSECURE_FLAG,
        action="store_true",
        default=env_flag(INSECURE_ENV),
        help=f"allow a non-loopback --host without a token, on purpose (${INSECURE_ENV}=1)",
    )
    p.add_argument(
        "--access-log",
        choices=ACCESS_LOG_CHOICES,
        default="errors",
        help="the backend's request log: errors (4xx/5xx only, the default), all, or off",
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


def _check_exposure(command: str, args: argparse.Namespace, token: str | None, token_reads: bool) -> None:
    problem = exposure_error(command, args.host, token, args.insecure_no_token)
    if problem:
        raise SettingError(problem)
    if token_reads and not token:
        raise SettingError("--token-reads needs a token: set CGGM_TOKEN (or --token)")


class _ErrorsOnly(logging.Filter):
    """uvicorn's access log without the lines of successful requests: workers claim once a second
    and send a heartbeat every 2 s, the dashboard polls every second; only failures are news."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        status = args[4] if isinstance(args, tuple) and len(args) == 5 else None  # (client, method, path, http, status)
        return not isinstance(status, int) or status >= 400


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
    if args.db_dir:
        overrides["db_dir"] = Path(args.db_dir)
    if args.token:
        overrides["token"] = args.token
    if args.token_reads:
        overrides["token_reads"] = True
    if args.heartbeat_timeout_s is not None:
        overrides["heartbeat_timeout_s"] = args.heartbeat_timeout_s
    try:
        settings = Settings(**overrides)
    except ValueError as e:  # pydantic's ValidationError names the field and the bound
        raise SettingError(f"serve: {e}".replace("\n", "; ")) from None
    _check_exposure("serve", args, settings.token, settings.token_reads)
    app = create_app(settings)
    print(
        f"cggm: backend on http://{args.host}:{args.port} (API docs at /docs), database {settings.database_url()}",
        file=sys.stderr,
    )
    warning = exposure_warning("serve", args.host, settings.token, settings.token_reads)
    if warning:
        print(f"cggm: {warning}", file=sys.stderr)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log != "off"
    )
    if args.access_log == "errors":  # after Config, which sets up uvicorn's loggers
        logging.getLogger("uvicorn.access").addFilter(_ErrorsOnly())
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and re-raises it; no traceback
        return 130
    return 0 if server.started else 3  # 3: uvicorn's code for "could not start" (e.g. the port is taken)


def cmd_worker(args: argparse.Namespace) -> int:
    from .trainer import pick_device
    from .worker import WorkerOptions, run_worker

    if args.heartbeat_s <= 0 or args.poll_s <= 0:
        raise SettingError("--heartbeat-s and --poll-s must be positive numbers of seconds")
    gpus = _parse_gpus(args.gpus) if args.gpus else None
    try:
        if gpus is not None:
            import torch

            visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if max(gpus) >= visible:
                raise SettingError(f"--gpus {args.gpus}: this machine shows {visible} CUDA GPU(s)")
        else:
            pick_device(args.device)
        from .worker import make_slots

        make_slots(gpus, args.procs_per_job)
    except (ValueError, RuntimeError) as e:
        raise SettingError(f"--device: {e}" if gpus is None else str(e)) from None
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
        gpus=gpus,
        procs_per_job=args.procs_per_job,
    )
    if args.retry_s is not None:
        if args.retry_s < 0:
            raise SettingError("--retry-s must be a number of seconds >= 0")
        options.finish_retry_s = args.retry_s
    return run_worker(options)


def _parse_gpus(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SettingError(f"--gpus {text!r}: expected GPU indices separated by commas, e.g. 0,1,2,3") from None


def cmd_up(args: argparse.Namespace) -> int:
    if args.workers < 0 or not 0 <= args.ui_port <= 65535 or args.max_restarts < 0:
        raise SettingError("--workers and --max-restarts must be >= 0 and --ui-port in 0..65535")
    _check_exposure("up", args, args.token, args.token_reads)
    local = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # where we reach what we bind
    url = f"http://{local}:{args.port}"
    serve_cmd = [sys.executable, "-m", "cggm_core", "serve", "--host", args.host, "--port", str(args.port)]
    serve_cmd += ["--access-log", args.access_log]
    for flag, value in (
        ("--db", args.db),
        ("--db-dir", args.db_dir),
        ("--heartbeat-timeout-s", args.heartbeat_timeout_s),
    ):
        if value is not None:
            serve_cmd += [flag, str(value)]
    flags = [INSECURE_FLAG] if args.insecure_no_token else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # children's lines reach the console as they are printed
    if args.token:
        env["CGGM_TOKEN"] = args.token
    db_dir = Path(args.db_dir or os.environ.get("CGGM_DB_DIR") or "data")
    supervisor = Supervisor(
        Path(args.log_dir) if args.log_dir else db_dir / "logs",
        env,
        RestartPolicy(max_restarts=args.max_restarts),
        say=lambda message: print(f"cggm: {message}", file=sys.stderr, flush=True),
        console=sys.stderr.buffer,
    )
    backend = supervisor.add(
        ChildSpec(
            "backend",
            [*serve_cmd, *flags, *(["--token-reads"] if args.token_reads else [])],
            ready_url=f"{url}/api/health",
        )
    )
    # Workers under `up` print no progress bar: several bars garble one terminal and fill the logs
    # with carriage returns; the dashboard shows each run's progress.
    worker_cmd = [sys.executable, "-m", "cggm_core", "worker", "--server", url, "--device", args.device]
    workers = [
        supervisor.add(
            ChildSpec(
                f"worker local-{i}",
                [*worker_cmd, "--name", f"local-{i}", "--no-progress"],
            )
        )
        for i in range(args.workers)
    ]
    ui = f"http://{local}:{args.ui_port}" if args.ui_port else ""
    ui_cmd = [sys.executable, "-m", "dashboard.cli", "--host", args.host, "--port", str(args.ui_port), "--api", url]
    ui_spec = ChildSpec("dashboard", [*ui_cmd, "--access-log", args.access_log, *flags], f"{ui}/")
    dashboard = supervisor.add(ui_spec) if args.ui_port else None
    # Python leaves SIGINT ignored when started in the background by a shell; Ctrl-C must stop us.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    code = 0
    try:
        try:
            supervisor.start_and_wait_ready(backend)
        except StackFailed as e:
            raise SettingError(str(e)) from None
        for worker in workers:
            supervisor.start(worker)
        if dashboard is not None:
            supervisor.start(dashboard)
        print(
            f"cggm: dashboard {ui or '(off)'}  |  API {url} (docs {url}/docs)  |  {args.workers} worker(s); "
            "Ctrl-C stops everything",
            file=sys.stderr,
            flush=True,
        )
        supervisor.watch()
    except KeyboardInterrupt:
        code = 0
    except StackFailed as e:
        print(f"cggm: {e}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # Workers first (a stopped worker reports its run as stopped before it exits), then the
        # dashboard, the backend last. Without a backend a worker cannot report anything: do not
        # wait a minute for it.
        worker_grace_s = 60.0 if backend.alive() else 10.0
        groups = [(workers, worker_grace_s), ([dashboard] if dashboard else [], 5.0), ([backend], 15.0)]
        try:
            supervisor.stop_all(groups)
        except KeyboardInterrupt:  # a second Ctrl-C: stop_all killed what was left
            code = 130
    return code


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
