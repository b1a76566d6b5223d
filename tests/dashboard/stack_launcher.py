"""Run one of the stack's real subcommands (`serve`, `worker`) in a child process for browser tests.

Uses `cggm_core.cli_stack` directly, so the tests run the same command functions as
`cggm serve` / `cggm worker` whether or not `cggm_core/cli.py` has registered them yet.
"""

from __future__ import annotations

import argparse
import sys

from cggm_core import cli_stack

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="cggm")
    cli_stack.add_stack_parsers(parser.add_subparsers(dest="command"))
    sys.exit(cli_stack.run_stack_command(parser.parse_args(sys.argv[1:])))
