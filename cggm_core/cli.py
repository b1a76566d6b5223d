"""`cggm` console script: subcommands train, sync (and serve, worker, up, dashboard).

Errors in arguments print one line naming what is allowed and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
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
    t.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="train on N local processes (gloo on the CPU, NCCL on CUDA: one GPU each); batch_size stays the "
        "global batch. Under torchrun leave it out: the ranks come from torchrun's environment",
    )
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
    training), ended with the summary or the error (cggm_core.remote). In a process group whose
    parent created or claimed the run ($CGGM_GROUP_RUN_ID), rank 0 streams to that run."""
    if not args.server:
        return None
    from .group import ENV_HEARTBEAT_S, ENV_RUN_ID, rank_should_stop
    from .remote import BackendClient, BackendError, RemoteRun, sync_in_background

    if args.retry_s < 0:
        raise SettingError(f"--retry-s must be >= 0 seconds; got {args.retry_s:g}")
    attach = os.environ.get(ENV_RUN_ID)
    if attach:
        heartbeat_s = float(os.environ.get(ENV_HEARTBEAT_S, "2.0"))
        client = BackendClient(args.server, args.token)
        return RemoteRun(
            client,
            int(attach),
            heartbeat_s=heartbeat_s,
            retry_s=args.retry_s,
            also_stop=rank_should_stop,
            owns_client=True,
        )
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


def load_train_job(args: argparse.Namespace) -> tuple[JobConfig, Path | None]:
    """The job `cggm train` runs (from a checkpoint with --resume) and the --out it implies there."""
    from . import config as cfg

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
    return cfg.resolve(raw), out


def cmd_train(args: argparse.Namespace) -> int:
    from . import config as cfg
    from .distributed import env_world

    if args.list:
        print(cfg.format_catalog())
        return 0
    if args.nproc_per_node < 1:
        raise SettingError(f"--nproc-per-node must be >= 1; got {args.nproc_per_node}")
    if args.nproc_per_node > 1:
        if env_world() > 1:
            raise SettingError("--nproc-per-node: this process is already a rank of a group (WORLD_SIZE is set)")
        return cmd_train_group(args)
    return cmd_train_rank(args)


def cmd_train_rank(args: argparse.Namespace) -> int:
    """One process of `cggm train`: the whole job, or one rank of it (torchrun, --nproc-per-node)."""
    from .distributed import from_env, rank_device
    from .group import group_dir, rank_should_stop, write_rank_error
    from .trainer import Trainer, pick_device

    job, out = load_train_job(args)
    try:
        device = pick_device(rank_device(args.device))
    except (ValueError, RuntimeError) as e:
        raise SettingError(f"--device: {e}") from None
    if device.type == "cpu" and "CGGM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)  # measured: 2 threads are no faster on small models and collapse under load
    if out is None:
        out = Path(args.out) if args.out else Path("runs") / f"{job.dataset}-{job.method}-{job.trainer.seed}"
    try:
        dist = from_env(device)
        _RANK_PROCESS[0] = dist.enabled
    except ValueError as e:
        raise SettingError(f"distributed: {e}") from None
    in_group = group_dir() is not None  # a parent watches the ranks and reports failures
    remote = open_remote_run(args, job) if dist.is_main else None  # rank 0 alone creates and logs the run
    stops = [f for f in (remote.should_stop if remote else None, rank_should_stop if in_group else None) if f]
    try:
        trainer = Trainer(
            job,
            out,
            str(device),
            sink=remote.sink if remote else None,
            progress=not args.no_progress,
            should_stop=(lambda: any(f() for f in stops)) if stops else None,
            dist=dist,
        )
        trainer.setup(resume=args.resume)
        result = trainer.fit()
        if remote is not None:
            remote.finish(result.status, {**result.summary, "logged_points": result.logged_points})
    except BaseException as e:
        write_rank_error(e)
        if remote is not None:
            # In a group the parent reports the failure with its root cause (which rank, why).
            remote.abandon() if in_group else remote.fail(e)
        dist.close(ok=False)
        raise
    dist.close()
    if not dist.is_main:
        return 0
    s = result.summary
    metric = s["metric"]
    line = f"{result.status}: test {metric} {s['test'].get(f'test/{metric}', float('nan')):.4f}"
    for key, value in s["probe"].items():
        line += f", {key} {value:.4f}"
    print(line)
    print(f"wrote {out}/config.json, metrics.jsonl, summary.json, checkpoint.pt")
    return 0


def _raise_keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """argv without --nproc-per-node N (or --nproc-per-node=N): what each rank is started with."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc-per-node":
            skip = True
        elif not a.startswith("--nproc-per-node="):
            out.append(a)
    return out


def cmd_train_group(args: argparse.Namespace) -> int:
    """`cggm train --nproc-per-node N`: N ranks of this command on this machine, watched together.

    With --server the run is created here and rank 0 streams to it; a rank that fails or is killed
    fails the run with its error (cggm_core/group.py); Ctrl-C stops the run at the next step (a
    second one kills the ranks)."""
    from .group import ENV_RUN_ID, ProcessGroupJob, train_argv

    job, _ = load_train_job(args)  # checked here, before any rank starts
    env = dict(os.environ)
    client = None
    run_id: int | None = None
    if args.server:
        from .remote import BackendClient, BackendError

        if args.retry_s < 0:
            raise SettingError(f"--retry-s must be >= 0 seconds; got {args.retry_s:g}")
        client = BackendClient(args.server, args.token)
        try:
            run_id = int(client.create_run(job.flat(), name=args.run_name)["id"])
        except BackendError as e:
            client.close()
            raise SettingError(f"--server: {e}") from None
        with contextlib.suppress(Exception):
            client.heartbeat(run_id)  # from now on the backend declares the run lost if nobody beats
        env[ENV_RUN_ID] = str(run_id)
        print(f"cggm: logging to {client.server}/api/runs/{run_id}", file=sys.stderr)
    if args.device in ("auto", "cuda"):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if 0 < gpus < args.nproc_per_node:  # each rank takes cuda:LOCAL_RANK
            raise SettingError(f"--nproc-per-node {args.nproc_per_node}: only {gpus} GPU(s) visible; use --device cpu")
    group = ProcessGroupJob(train_argv(strip_nproc(args.argv)), args.nproc_per_node, env=env)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # SIGTERM stops the run as Ctrl-C does
    group.start()
    try:
        while True:
            try:
                outcome = group.wait()
                break
            except KeyboardInterrupt:
                if group.stop_asked:
                    raise
                print("cggm: stopping at the next step (Ctrl-C again kills the ranks)", file=sys.stderr)
                group.ask_stop()
    except BaseException:
        group.kill()  # never leave ranks behind without a watcher
        raise
    finally:
        group.cleanup()
    if outcome.ok:
        if client is not None:
            client.close()
        return 0
    print(f"cggm: error: {outcome.error}", file=sys.stderr)
    if client is not None and run_id is not None:
        client.finish(run_id, "failed", None, outcome.error, retry_s=args.retry_s)
        client.close()
    return 1


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
        args.argv = list(sys.argv[1:] if argv is None else argv)[1:]  # after the subcommand's name
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


# True in a process that is one rank of a distributed job (set by `cggm train` once the group is up).
_RANK_PROCESS = [False]


def entry() -> None:
    try:
        code = main()
    except BaseException:
        if not _RANK_PROCESS[0]:
            raise
        import traceback

        traceback.print_exc()
        code = 1
    if _RANK_PROCESS[0]:
        # A rank leaves without C++ static destructors: at interpreter exit torch's gloo state was
        # seen to end a rank that had finished cleanly in std::terminate ("terminate called without
        # an active exception", SIGABRT) about once in ten 2-process runs on a loaded machine. Every
        # file, sink and the process group are closed by then.
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
