"""Every callback error is shown on the page, never a traceback, never nothing.

`on_callback_error` is the app's `on_error` handler: Dash calls it with the exception of any
callback and sends what it sets with `set_props` even though the callback's own outputs are left
as they were. (Raising PreventUpdate after `set_props`, as an earlier wrapper did, makes Dash
drop the whole response: the message never showed.) A backend that does not answer shows the
banner; an error answer shows the backend's message; anything else one line naming the callback.
"""

from __future__ import annotations

import contextlib
import logging
import time

import dash

from .api import ApiError, BackendDown

log = logging.getLogger("dashboard")

BANNER_ID = "backend-banner"
MESSAGE_ID = "global-message"
BANNER_SHOWN = {"display": "block"}
BANNER_HIDDEN = {"display": "none"}


def show_banner(text: str) -> None:
    dash.set_props(BANNER_ID, {"children": text, "style": BANNER_SHOWN})


def show_message(text: str) -> None:
    dash.set_props(MESSAGE_ID, {"children": text, "style": BANNER_SHOWN})


def on_callback_error(err: Exception) -> None:
    if isinstance(err, BackendDown):
        show_banner(f"Backend unreachable — retrying; this page reloads its data when it is back. ({err})")
        dash.set_props("backend-failed", {"data": time.time()})  # the health poll then counts its return
        return None
    if isinstance(err, ApiError):
        show_message(f"The backend refused: {err.message}")
        return None
    where = ""
    with contextlib.suppress(Exception):  # outside a callback context there is nothing to name
        where = f" in {dash.ctx.triggered_id or 'a callback'}"
    log.error("callback failed%s", where, exc_info=err)
    show_message(f"Internal error{where}: {err.__class__.__name__}: {err}")
    return None
