"""Pieces shared by the schema families: text and JSON-document rules, ids, the 422 entry shape.

Why these rules live at the API edge: PostgreSQL refuses NUL in text (a DataError deep in the
store), SQLite cannot encode a lone surrogate, and ids overflow at 2^31 on PostgreSQL and at 2^63
on SQLite. Checked here, each of these is a 422 naming the field, the same on both databases.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

# Ids are INTEGER columns: 32-bit on PostgreSQL, so that is the most either database stores.
MAX_ID = 2**31 - 1
# Steps are BIGINT on both.
MAX_STEP = 2**63 - 1

# One-line names (metric keys, run names, tags, worker names, JSON object keys): no control
# character at all (C0, DEL, C1) and no lone surrogate (not encodable as UTF-8).
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Free text (notes, event messages, errors, string values in configs and summaries): the same,
# except tab, line feed and carriage return (tracebacks and notes have lines).
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rules as JSON Schema patterns, so that /openapi.json says what is allowed.
NAME_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"

# JSON documents (job configs, run summaries): bounded depth and size, so that one request cannot
# store a 200 MB config that every later listing returns, or nest deeper than a parser recurses.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 65_536
# JSON Schema of a stored document's values, registered in the OpenAPI components by app.py.
JSON_VALUE_REF = "#/components/schemas/JsonValue"
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NAME_PATTERN},
    "additionalProperties": {"$ref": JSON_VALUE_REF},
}
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "any JSON value; strings are free text, object keys are names (no control characters)",
    "anyOf": [
        {"type": "null"},
        {"type": "boolean"},
        {"type": "number"},
        {"type": "string", "pattern": TEXT_PATTERN},
        {"type": "array", "items": {"$ref": JSON_VALUE_REF}},
        JSON_OBJECT_SCHEMA,
    ],
}


def text_problem(value: str, *, free_text: bool = False) -> str | None:
    """Why `value` cannot be stored as a name (or as free text), or None when it can."""
    m = (_TEXT_BAD if free_text else _NAME_BAD).search(value)
    if m is None:
        return None
    return f"contains the control character {m.group()!r} at position {m.start()}" + (
        "; only tab, line feed and carriage return are allowed in text" if free_text else ""
    )


def _one_line(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _free_text(value: str) -> str:
    problem = text_problem(value, free_text=True)
    if problem:
        raise ValueError(problem)
    return value


OneLine = Annotated[str, AfterValidator(_one_line), Field(json_schema_extra={"pattern": NAME_PATTERN})]
FreeText = Annotated[str, AfterValidator(_free_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]


def document_problem(doc: Any, *, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> str | None:
    """Why a JSON document cannot be stored, or None: depth, object keys, strings, size.

    Iterative, so that a document nested 100,000 levels deep is refused rather than overflowing
    the stack; the message names the path of the first problem (e.g. `a.b[3]`).
    """
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, (dict, list)) and depth > max_depth:
            return f"{_short(path) or 'document'}: nested deeper than {max_depth} levels"
        if isinstance(node, dict):
            for k, v in node.items():
                key_problem = text_problem(k) if isinstance(k, str) else "is not a string"
                sub = f"{path}.{k}" if path else str(k)
                if key_problem:
                    return f"key {_short(sub)!r} {key_problem}"
                stack.append((v, sub, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))
        elif isinstance(node, str):
            problem = text_problem(node, free_text=True)
            if problem:
                return f"{_short(path) or 'value'}: {problem}"
    # json, not orjson: integers beyond 64 bits are valid JSON and stored as they are.
    size = len(json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        return f"is {size} bytes of JSON, above the limit of {max_bytes}"
    return None


def _short(path: str) -> str:
    return path if len(path) <= 120 else path[:60] + "…" + path[-59:]


def json_safe(o: Any) -> Any:
    """Replace non-finite floats by the tracking convention's strings ("NaN", "Infinity", "-Infinity").

    Python's json module parses the non-standard tokens NaN/Infinity; storing them as floats
    would make the response unserialisable later (strict JSON), so they are turned into strings.
    Callers bound the depth first (`document_problem`): this recursion is at most MAX_JSON_DEPTH deep.
    """
    if isinstance(o, float) and not math.isfinite(o):
        return "NaN" if math.isnan(o) else ("Infinity" if o > 0 else "-Infinity")
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    return o


def _safe_document(doc: dict[str, Any]) -> dict[str, Any]:
    problem = document_problem(doc)
    if problem:
        raise ValueError(problem)
    out: dict[str, Any] = json_safe(doc)
    return out


SafeJson = Annotated[
    dict[str, Any],
    AfterValidator(_safe_document),
    WithJsonSchema(
        {
            **JSON_OBJECT_SCHEMA,
            "description": f"a JSON object, at most {MAX_JSON_DEPTH} levels deep and {MAX_JSON_BYTES} bytes",
        }
    ),
]


def field_error(loc: list[str | int], msg: str, value: Any = None, kind: str = "value_error") -> dict[str, Any]:
    """One entry of a 422 `detail` list, in the same shape FastAPI uses for its own errors."""
    entry: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg}
    if value is not None:
        text = repr(value)
        entry["input"] = text if len(text) <= 200 else text[:200] + "…"
    return entry


class ErrorPublic(BaseModel):
    detail: str = Field(description="what is wrong and, where there is one, the fix")


class FieldErrorPublic(BaseModel):
    type: str
    loc: list[str | int] = Field(description='where: e.g. ["body", "points", 3, "key"] or ["query", "limit"]')
    msg: str = Field(description="why, and what is allowed")
    input: str | None = Field(None, description="the value given (repr, cut at 200 characters)")


class ValidationErrorPublic(BaseModel):
    detail: list[FieldErrorPublic]


class HealthPublic(BaseModel):
    status: Literal["ok", "busy", "unwritable"]
    database: str = Field(description="sqlite or postgresql")
    writable: bool = Field(description="a write was tried (and rolled back) and worked")
    detail: str | None = Field(None, description="why writes fail, when they do")


def _error(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


# Responses every operation may give, declared so that /openapi.json is the whole contract.
Responses = dict[int | str, dict[str, Any]]
# uvicorn's own answer to a request it cannot parse (a URL over 64 KiB, say), before the API sees it.
BAD_REQUEST: Responses = {
    400: {
        "description": "the HTTP request itself is malformed or too long (answered by the HTTP server)",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}
COMMON_RESPONSES: Responses = {
    **BAD_REQUEST,
    500: _error(ErrorPublic, "a permanent database fault (read-only, full, damaged): retrying will not help"),
    503: _error(ErrorPublic, "the database is busy: retry after Retry-After seconds"),
}
NOT_FOUND: Responses = {404: _error(ErrorPublic, "no run with this id")}
CONFLICT: Responses = {409: _error(ErrorPublic, "the run's status does not allow this")}
INVALID: Responses = {
    422: _error(ValidationErrorPublic, "a field is malformed: `loc` names it, `msg` says what is allowed")
}
WRITE: Responses = {
    401: _error(ErrorPublic, "missing or wrong bearer token (the server has one)"),
    413: _error(ErrorPublic, "the body is above this endpoint's size limit"),
}
