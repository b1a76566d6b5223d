"""`cggm` console script: subcommands train, sync (and serve, worker, up, dashboard).

Errors in arguments print one line naming what is allowed and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .cli_stack import STACK_COMMANDS, add_stack_parsers, run_stack_command
from .data.files import DataFormatError, DataPathError
from .presets import PRESETS
from .settings import SettingError

if TYPE_CHECKING:
    from .config import JobConfig
    from .remote import RemoteRun

DEFAULT_SERVER = "http://127.0.0.1:8000"


class ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ArgError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cggm", description="CGGM Monitor: balanced multimodal training you can watch.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    t = sub.add_parser("train", help="train one job locally", description="Train one job locally.")
    t.add_argument("--dataset", help="dataset name (see --list)")
    t.add_argument("--method", help="method name (see --list)")
    t.add_argument(
        "--preset",
        help=f"an official recipe: a paper data set's or a method's ({', '.join(PRESETS)}; see --list); "
        "--set and the flags below override it",
    )
    t.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by its name; repeatable",
    )
    t.add_argument("--epochs", type=int, help="trainer setting 'epochs'")
    t.add_argument("--seed", type=int, help="trainer setting 'seed'")
    t.add_argument("--log-every", type=int, help="trainer setting 'log_every' (1 logs every step)")
    t.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda:K")
    t.add_argument("--out", help="output folder (default runs/<dataset>-<method>-<seed>)")
    t.add_argument("--resume", help="checkpoint.pt to continue from (its config is used; --epochs may extend it)")
    t.add_argument("--config", help="a JSON file holding a flat job config (flags override it)")
    t.add_argument("--list", action="store_true", help="print every dataset and method with its settings")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_train_server_args(t)
    y = sub.add_parser(
        "sync",
        help="resend the metric points earlier processes left in their spools",
        description="Resend every spool left for a backend (points it could not take while it was down) and "
        "report the run ends kept beside them.",
    )
    y.add_argument("--server", default=os.environ.get("CGGM_SERVER", DEFAULT_SERVER), help="backend URL")
    y.add_argument("--token", default=os.environ.get("CGGM_TOKEN"), help="the backend's bearer token ($CGGM_TOKEN)")
    y.add_argument("--spool-dir", help="the spool folder (default: $CGGM_SPOOL_DIR or the per-user cache folder)")
    y.add_argument(
        "--retry-s", type=float, default=60.0, help="how long to keep trying a spool while the backend does not answer"
    )
    add_stack_parsers(sub)
    try:  # imported here, never at module level: a GPU node may install the core alone
        from dashboard.cli import add_parser as add_dashboard_parser
    except ImportError:
        pass
    else:
        add_dashboard_parser(sub)
    return parser


def add_train_server_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("--server", help="also log this run to a backend (as an external run), e.g. http://127.0.0.1:8000")
    t.add_argument("--run-name", help="name of the run on the backend (with --server)")
    t.add_argument("--token", default=os.environ.get("CGGM_TOKEN"), help="the backend's bearer token ($CGGM_TOKEN)")
    t.add_argument(
        "--retry-s",
        type=float,
        default=300.0,
        help="with --server: how long the end of the run keeps trying while the backend is unreachable "
        "(what is left stays in the spool for `cggm sync`)",
    )


def open_remote_run(args: argparse.Namespace, job: JobConfig) -> RemoteRun | None:
    """With --server: an external run, streamed to, heartbeating (a Stop in the dashboard stops
    training), ended with the summary or the error (cggm_core.remote)."""
    if not args.server:
        return None
    from .remote import BackendError, RemoteRun, sync_in_background

    if args.retry_s < 0:
        raise SettingError(f"--retry-s must be >= 0 seconds; got {args.retry_s:g}")
    try:
        remote = RemoteRun.create(args.server, job.flat(), name=args.run_name, token=args.token, retry_s=args.retry_s)
    except BackendError as e:
        raise SettingError(f"--server: {e}") from None
    print(f"cggm: logging to {remote.url}", file=sys.stderr)
    sync_in_background(args.server, args.token)  # what earlier runs left for this server
    return remote


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def train_config(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if args.config:
        raw.update(json.loads(Path(args.config).read_text()))
    if args.dataset:
        raw["dataset"] = args.dataset
    if args.method:
        raw["method"] = args.method
    if args.preset:
        raw["preset"] = args.preset
    raw.update(parse_sets(args.sets))
    for flag, key in (("epochs", "epochs"), ("seed", "seed"), ("log_every", "log_every")):
        value = getattr(args, flag)
        if value is not None:
            raw[key] = value
    return raw


def cmd_train(args: argparse.Namespace) -> int:
    from . import config as cfg
    from .trainer import Trainer, pick_device

    if args.list:
        print(cfg.format_catalog())
        return 0
    if args.resume:
        import torch

        ckpt = torch.load(args.resume, map_location="cpu", weights_only=False)
        raw = dict(ckpt["config"])
        if args.epochs is not None:
            raw["epochs"] = args.epochs
        out = Path(args.out) if args.out else Path(args.resume).parent
    else:
        raw = train_config(args)
        out = None
    job = cfg.resolve(raw)
    try:
        device = pick_device(args.device)
    except (ValueError, RuntimeError) as e:
        raise SettingError(f"--device: {e}") from None
    if device.type == "cpu" and "CGGM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)  # measured: 2 threads are no faster on small models and collapse under load
    if out is None:
        out = Path(args.out) if args.out else Path("runs") / f"{job.dataset}-{job.method}-{job.trainer.seed}"
    remote = open_remote_run(args, job)
    with remote if remote is not None else contextlib.nullcontext():
        trainer = Trainer(
            job,
            out,
            str(device),
            sink=remote.sink if remote else None,
            progress=not args.no_progress,
            should_stop=remote.should_stop if remote else None,
        )
        trainer.setup(resume=args.resume)
        result = trainer.fit()
        if remote is not None:
            remote.finish(result.status, {**result.summary, "logged_points": result.logged_points})
    s = result.summary
    metric = s["metric"]
    line = f"{result.status}: test {metric} {s['test'].get(f'test/{metric}', float('nan')):.4f}"
    for key, value in s["probe"].items():
        line += f", {key} {value:.4f}"
    print(line)
    print(f"wrote {out}/config.json, metrics.jsonl, summary.json, checkpoint.pt")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Resend what earlier processes left for a server; 0 when nothing is left, 1 otherwise."""
    import logging

    from .remote import BackendClient, sync_spools

    if args.retry_s < 0:
        raise SettingError(f"--retry-s must be >= 0 seconds; got {args.retry_s:g}")
    client = BackendClient(args.server, args.token)
    try:
        if not client.healthy():
            raise SettingError(f"sync: cannot reach {args.server} (GET /api/health failed); nothing was sent")
    finally:
        client.close()
    logging.basicConfig(level=logging.WARNING, format="cggm: %(message)s", stream=sys.stderr)
    results = sync_spools(args.server, args.token, args.spool_dir, retry_s=args.retry_s)
    if not results:
        print(f"cggm: nothing left to send to {args.server}")
        return 0
    complete = True
    for r in results:
        if r.report is not None:
            print(r.report.line())
            complete &= r.report.left_in_spool == 0
        elif r.busy:
            print(f"run {r.run_id}: {r.path} is in use by a running process; skipped")
            complete = False
        elif r.ended is not None:
            print(f"run {r.run_id}: reported as {r.ended}")
        else:
            print(f"run {r.run_id}: its end in {r.path} could not be reported; kept for the next sync")
            complete = False
    return 0 if complete else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train":
            if not args.list and not args.resume and (args.dataset is None and not args.config):
                raise ArgError("train: --dataset is required (see cggm train --list)")
            return cmd_train(args)
        if args.command == "sync":
            return cmd_sync(args)
        if args.command in STACK_COMMANDS:
            return run_stack_command(args)
        if args.command == "dashboard":
            return int(args.func(args))
    except (ArgError, SettingError) as e:
        print(f"cggm: error: {e}", file=sys.stderr)
        return 2
    except (DataFormatError, DataPathError) as e:  # the user's data files: one line naming the file
        print(f"cggm: error: {e}", file=sys.stderr)
        return 1
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
