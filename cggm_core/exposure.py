"""Who can reach a server we start: `serve`, `up` and `dashboard` refuse to listen beyond this
machine without a token unless told so on purpose (`--insecure-no-token`), and then warn.

Only the standard library: the dashboard imports this without importing torch.
"""

from __future__ import annotations

import ipaddress
import os
import socket

INSECURE_FLAG = "--insecure-no-token"
INSECURE_ENV = "CGGM_INSECURE_NO_TOKEN"  # the same, for containers: docker-compose.yml sets it


def env_flag(name: str) -> bool:
    """A yes/no environment variable: 1, true or yes (any case) mean yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address (127.0.0.0/8, ::1).

    `0.0.0.0`, `::` and "" mean every interface; an unresolvable name counts as not loopback.
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def exposure_error(command: str, host: str, token: str | None, insecure: bool) -> str | None:
    """The one-line refusal for a non-loopback host without a token, or None when it may start."""
    if token or insecure or is_loopback(host):
        return None
    return (
        f"{command} --host {host} listens beyond this machine and no token is set, so anyone who reaches "
        f"the port could start, stop and delete runs; set CGGM_TOKEN (or --token), or pass {INSECURE_FLAG} "
        f"({INSECURE_ENV}=1) to serve without one on purpose"
    )


def exposure_warning(command: str, host: str, token: str | None, token_reads: bool = False) -> str | None:
    """The start-up warning for a server that listens beyond this machine, or None when there is
    nothing to say (loopback, or a backend that needs its token on reads and writes)."""
    if is_loopback(host):
        return None
    if not token:
        return (
            f"warning: {command} listens on {host} with no token ({INSECURE_FLAG} or {INSECURE_ENV}=1): anyone who reaches it can "
            "read every run and start, stop and delete runs"
        )
    if command == "dashboard":
        return (
            f"warning: the dashboard listens on {host} and has no login of its own: anyone who reaches it can "
            "read every run and start, stop and delete runs with its token; put it behind a reverse proxy "
            "that authenticates (README, Security)"
        )
    if not token_reads:
        return (
            f"warning: {command} listens on {host}; its token guards writes only: anyone who reaches it can read "
            "every run's config, notes, errors and metrics (--token-reads requires the token on reads too)"
        )
    return None
