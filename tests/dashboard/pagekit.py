"""Helpers shared by the browser tests and the dashboard benchmarks (no pytest here).

Real processes on free 127.0.0.1 ports, Debian's Chromium with the flags this machine needs, and
readers of what plotly actually holds in the page.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = os.environ.get("CGGM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def dom_id(**parts: str) -> str:
    """A Dash pattern id as it appears in the DOM (JSON, keys sorted), as a CSS selector."""
    return f"[id='{json.dumps(parts, sort_keys=True, separators=(',', ':'))}']"


def graph_selector(graph: str) -> str:
    """The dcc.Graph whose pattern id has name `graph`, whatever its type ("graph", "run-graph", …)."""
    return f"""[id*='"name":{json.dumps(graph)}'][id$='graph"}}']"""


def plotly_data(page: Any, graph: str, expr: str = "gd.data") -> Any:
    """Evaluate `expr` (with `gd`: the graph's plotly div) in the page; None before plotly has drawn.

    The graph is scrolled into view first, as a user would look at it: panels far down the page
    are drawn only when they come near.
    """
    return page.evaluate(
        f"""(sel) => {{ const el = document.querySelector(sel);
                      if (el) el.scrollIntoView({{block: 'nearest'}});
                      const gd = el && el.querySelector('.js-plotly-plot');
                      return gd && gd.data ? ({expr}) : null; }}""",
        graph_selector(graph),
    )


def trace_lengths(page: Any, graph: str) -> list[int]:
    """Number of points in each trace of a graph, read from plotly's own data in the page."""
    return plotly_data(page, graph, "gd.data.map(t => (t.x || []).length)") or []


def wait_for(predicate: Any, timeout_s: float = 30.0, what: str = "condition", interval_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy and return it; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
