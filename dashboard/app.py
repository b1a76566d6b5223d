"""App factory: `create_app(api_url, poll_interval_ms=1000)`.

The shell holds the navigation, the banners, a global message line, and the page container;
Dash imports the pages from `dashboard/pages/`. The page polls this server's /healthz
(assets/cggm_health.js): no answer shows "the dashboard server is not answering", an answer
without the backend shows the backend banner, and when the backend comes back after an outage
`backend-epoch` changes and every page reloads its data by itself.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, dcc, html

from . import api, export
from .api import BackendDown
from .safety import BANNER_HIDDEN, BANNER_ID, MESSAGE_ID, on_callback_error

# Read by pages at layout time (one dashboard per process, like the API client).
settings: dict[str, int] = {"poll_interval_ms": 1000}


def create_app(api_url: str, poll_interval_ms: int = 1000, token: str | None = None) -> dash.Dash:
    if poll_interval_ms < 100:
        raise ValueError(f"poll_interval_ms={poll_interval_ms} is below the minimum of 100")
    api.configure(api_url, token=token)
    settings["poll_interval_ms"] = poll_interval_ms
    app = dash.Dash(
        "dashboard",  # the package: Dash imports dashboard/pages/*.py itself, as dashboard.pages.<name>
        use_pages=True,
        title="CGGM Monitor",
        suppress_callback_exceptions=True,
        on_error=on_callback_error,
    )
    app.layout = _shell()
    _register_shell_callbacks(app)
    export.register(app.server)
    app.server.add_url_rule("/healthz", "healthz", healthz)
    return app


def _shell() -> html.Div:
    return html.Div(
        [
            html.Nav(
                [
                    html.Span("CGGM Monitor", className="brand"),
                    dcc.Link("Runs", href="/", id="nav-runs"),
                    dcc.Link("New run", href="/new", id="nav-new"),
                ],
                className="nav",
            ),
            html.Div("", id="dashboard-banner", className="banner", style=BANNER_HIDDEN),
            html.Div("", id=BANNER_ID, className="banner", style=BANNER_HIDDEN),
            html.Div("", id=MESSAGE_ID, className="message", style=BANNER_HIDDEN),
            dcc.Store(id="backend-failed"),
            # Changes only when the backend comes back after an outage: pages take it as an Input.
            dcc.Store(id="backend-epoch", data=0),
            dash.page_container,
        ],
        className="shell",
    )


def _register_shell_callbacks(app: dash.Dash) -> None:
    # A callback that found the backend down tells the health poll (assets/cggm_health.js), which
    # then bumps `backend-epoch` once the backend answers again.
    app.clientside_callback(
        "function (t) { window.cggmBackendFailedAt = t; return window.dash_clientside.no_update; }",
        Output("backend-failed", "id"),
        Input("backend-failed", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output(MESSAGE_ID, "children", allow_duplicate=True),
        Output(MESSAGE_ID, "style", allow_duplicate=True),
        Input("_pages_location", "pathname"),
        prevent_initial_call=True,
    )
    def clear_message(_path: str | None) -> tuple[str, dict[str, str]]:
        return "", BANNER_HIDDEN


def healthz() -> tuple[dict[str, Any], int]:
    """This server is up (any answer says so); whether the backend answers, for the page's banner."""
    try:
        api.client().health()
    except BackendDown as e:
        return {"backend": False, "message": f"Backend unreachable — retrying every 2 s. ({e})"}, 200
    except Exception as e:  # an error answer still means it is up, but say so
        return {"backend": False, "message": f"Backend unhealthy: {e}"}, 200
    return {"backend": True, "message": ""}, 200
