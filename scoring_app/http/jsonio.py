"""The one JSON parser and writer, orjson: every answer is JSON, and a JSON
request carries its images as base64 strings, megabytes of them.

``loads`` parses every request body, on every protocol. orjson refuses
nesting deeper than 1024 (``DecodeError``, a 400 to the client) instead of
recursing into it, and invalid UTF-8. ``dumps``/``response_body`` write what
the standard library would for this API's documents (str keys, str/int/float
values), compactly and without sorting keys; a non-finite float becomes
``null`` instead of the invalid ``NaN``; other types as Flask's ``jsonify``
writes them.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

#: What ``loads`` raises on a body that is not JSON (a ``ValueError``).
DecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=DefaultJSONProvider.default)


def response_body(obj: Any) -> bytes:
    """An answer's body, as ``jsonify`` writes it (newline-terminated)."""
    return orjson.dumps(obj, default=DefaultJSONProvider.default,
                        option=orjson.OPT_APPEND_NEWLINE)
