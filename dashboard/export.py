"""CSV export of full series, streamed: every stored point, not the downsampled ones a chart draws.

`GET /export/runs/<id>.csv?keys=a&keys=b` on the dashboard's own server. Each key is read from
the backend at full resolution, one key at a time, and written row by row as it arrives, so a
run of millions of points never sits in this process whole.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator

from flask import Flask, Response, request

from . import api
from .api import ApiError, BackendDown

READ_TIMEOUT_S = 300.0


def _value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def run_csv_rows(run_id: int, keys: list[str]) -> Iterator[str]:
    """Lines of the CSV: a header, then key, step, value, time for every stored point."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["key", "step", "value", "time"])
    yield buf.getvalue()
    client = api.client()
    for key in keys:
        series = client.metrics(run_id, keys=[key], timeout_s=READ_TIMEOUT_S).get(key)
        if series is None:
            continue
        for i in range(0, len(series), 5000):
            buf.seek(0)
            buf.truncate()
            for step, value, t in zip(
                series.steps[i : i + 5000], series.values[i : i + 5000], series.times[i : i + 5000], strict=False
            ):
                w.writerow([key, step, _value(value), repr(t)])
            yield buf.getvalue()


def compare_csv_rows(sids: list[str]) -> Iterator[str]:
    """Lines of a Compare panel's CSV: run, key, step, value, time for each "<run>|<key>" series."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "key", "step", "value", "time"])
    yield buf.getvalue()
    client = api.client()
    for sid in sids:
        rid_text, _, key = sid.partition("|")
        if not rid_text.isdigit() or not key:
            continue
        series = client.metrics(int(rid_text), keys=[key], timeout_s=READ_TIMEOUT_S).get(key)
        if series is None:
            continue
        buf.seek(0)
        buf.truncate()
        for step, value, t in zip(series.steps, series.values, series.times, strict=False):
            w.writerow([rid_text, key, step, _value(value), repr(t)])
        yield buf.getvalue()


def register(server: Flask) -> None:
    @server.route("/export/compare.csv")
    def export_compare() -> Response:
        sids = [k for k in request.args.getlist("keys") if k]
        return Response(
            compare_csv_rows(sids),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="compare.csv"'},
        )

    @server.route("/export/runs/<int:run_id>.csv")
    def export_run(run_id: int) -> Response:
        keys = [k for k in request.args.getlist("keys") if k]
        client = api.client()
        try:
            client.get_run(run_id)
            if not keys:
                keys = client.keys(run_id)
        except ApiError as e:
            return Response(f"run {run_id}: {e.message}\n", status=e.status, mimetype="text/plain")
        except BackendDown as e:
            return Response(f"{e}\n", status=503, mimetype="text/plain")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"run-{run_id}")
        return Response(
            run_csv_rows(run_id, keys),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
