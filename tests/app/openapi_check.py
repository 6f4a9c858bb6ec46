"""Check real responses against the server's own OpenAPI document.

Every documented response is checked: the status is listed for the route, the
declared headers match (and the required ones are present), the Content-Type
is one documented for that status, a JSON body validates against the schema (OpenAPI 3.1 schemas are JSON Schema 2020-12). And nothing is a 5xx
other than the documented 503/504.
"""

from __future__ import annotations

import jsonschema
import requests
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:scoring-openapi"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check_response(spec: dict, method: str, route: str, response: requests.Response) -> None:
    assert response.status_code not in (500, 502), response.text
    operation = spec["paths"][route][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], (
        f"{method} {route} answered {status}, not documented: {response.text}")
    documented = operation["responses"][status]
    for name, header in documented.get("headers", {}).items():
        if name in response.headers:
            jsonschema.validate(response.headers[name], header["schema"])
        else:
            assert not header.get("required"), f"{status} lacks header {name}"
    content = documented.get("content", {})
    media_type = response.headers.get("Content-Type", "").split(";")[0]
    assert not content or media_type in content, (
        f"{status} is {media_type!r}, not one of {list(content)}")
    if content and media_type == "application/json":
        registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))
        ref = "#/" + _pointer("paths", route, method.lower(), "responses", status,
                              "content", "application/json", "schema")
        validator = jsonschema.Draft202012Validator({"$ref": SPEC_URI + ref}, registry=registry)
        validator.validate(response.json())


class SpecClient:
    """``requests`` with every answer checked against the spec."""

    def __init__(self, base_url: str, spec: dict, key: str | None = None):
        self.base_url, self.spec, self.key = base_url, spec, key
        self.session = requests.Session()

    def request(self, method: str, route: str, *, key: str | None = "default",
                path: str | None = None, **kw) -> requests.Response:
        """``route`` is the spec's path; ``path`` the URL when the route is templated."""
        headers = dict(kw.pop("headers", {}))
        key = self.key if key == "default" else key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        response = self.session.request(method, self.base_url + (path or route), headers=headers,
                                        timeout=60, **kw)
        check_response(self.spec, method, route, response)
        return response

    def score(self, body: bytes, content_type: str | None = "image/jpeg", **kw):
        headers = {"Content-Type": content_type} if content_type else {}
        return self.request("POST", "/score", data=body, headers=headers, **kw)
