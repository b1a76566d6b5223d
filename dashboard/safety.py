"""Callback wrapper: no traceback ever reaches the page.

A backend that does not answer shows the banner; an error answer shows its message in the
global message area; anything else is logged and shown as one line. The callback's outputs are
left unchanged (PreventUpdate), so the page keeps what it had.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import dash
from dash.exceptions import PreventUpdate

from .api import ApiError, BackendDown

log = logging.getLogger("dashboard")

F = TypeVar("F", bound=Callable[..., Any])

BANNER_ID = "backend-banner"
MESSAGE_ID = "global-message"
BANNER_SHOWN = {"display": "block"}
BANNER_HIDDEN = {"display": "none"}


def show_banner(text: str) -> None:
    dash.set_props(BANNER_ID, {"children": text, "style": BANNER_SHOWN})


def show_message(text: str) -> None:
    dash.set_props(MESSAGE_ID, {"children": text})


def safe_callback(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PreventUpdate:
            raise
        except BackendDown as e:
            show_banner(f"Backend unreachable — retrying. ({e})")
            raise PreventUpdate from None
        except ApiError as e:
            show_message(f"The backend refused: {e.message}")
            raise PreventUpdate from None
        except Exception as e:
            log.exception("callback %s failed", fn.__name__)
            show_message(f"Internal error in {fn.__name__}: {e.__class__.__name__}: {e}")
            raise PreventUpdate from None

    return wrapper  # type: ignore[return-value]
