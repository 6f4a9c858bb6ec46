"""JSON in and out with orjson: every /score answer is JSON, and a JSON request
carries its images as base64 strings, megabytes of them.

``Provider`` is Flask's JSON provider (``jsonify``), writing bytes straight
into the response. ``loads`` parses request bodies. orjson writes what the
standard library would for this API's documents (str keys, str/int/float
values), compactly and without sorting keys; a non-finite float becomes
``null`` instead of the invalid ``NaN``.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

#: What ``loads`` raises on a body that is not JSON (a ``ValueError``).
DecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def response_body(obj: Any) -> bytes:
    """An answer's body, as ``jsonify`` writes it (newline-terminated)."""
    return orjson.dumps(obj, default=DefaultJSONProvider.default,
                        option=orjson.OPT_APPEND_NEWLINE)


class Provider(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=self.default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any):
        body = response_body(self._prepare_response_obj(args, kwargs))
        return self._app.response_class(body, mimetype=self.mimetype)
