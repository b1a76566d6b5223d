"""App factory: `create_app(api_url, poll_interval_ms=1000)`.

The shell holds the navigation, the backend-down banner (kept current by a health poll), a
global message line, and the page container; pages live one per module in `dashboard/pages/`.
"""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from . import api
from .api import BackendDown
from .safety import BANNER_HIDDEN, BANNER_ID, BANNER_SHOWN, MESSAGE_ID

HEALTH_INTERVAL_MS = 2000

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
    )
    app.layout = _shell()
    _register_shell_callbacks(app)
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
            html.Div("", id=BANNER_ID, className="banner", style=BANNER_HIDDEN),
            html.Div("", id=MESSAGE_ID, className="message"),
            dcc.Interval(id="health-poll", interval=HEALTH_INTERVAL_MS),
            dash.page_container,
        ],
        className="shell",
    )


def _register_shell_callbacks(app: dash.Dash) -> None:
    @app.callback(
        Output(BANNER_ID, "children"),
        Output(BANNER_ID, "style"),
        Input("health-poll", "n_intervals"),
    )
    def check_backend(_n: int | None) -> tuple[str, dict[str, str]]:
        try:
            api.client().health()
        except BackendDown as e:
            return f"Backend unreachable — retrying every {HEALTH_INTERVAL_MS // 1000} s. ({e})", BANNER_SHOWN
        except Exception as e:  # an error answer still means it is up, but say so
            return f"Backend unhealthy: {e}", BANNER_SHOWN
        return "", BANNER_HIDDEN
