"""The CRDs' CEL rules (`x-kubernetes-validations`), run on rendered objects with cel-python.

JSON Schema cannot express them (the Gateway API's "RequestMirror percent or
fraction, not both", "one RequestRedirect filter", listener uniqueness...), so
this walks a CRD's openAPIV3Schema alongside an object and evaluates each rule
with `self` bound to the value at that point, as the API server does:
- after applying the schema's `default`s (the server defaults before it
  validates, and rules such as `size(self.group) == 0 && self.kind ==
  'Service'` rely on a defaulted `group`);
- transition rules (those naming `oldSelf`) only run on an update against the
  stored object; a create has none, so they are listed, not run.
A rule that cel-python cannot compile or evaluate is reported as a failure,
never passed over.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import celpy

_ENV = celpy.Environment()
_PROGRAMS: dict[str, object] = {}


@dataclass
class Report:
    evaluated: int = 0
    transition: int = 0
    failures: list[str] = field(default_factory=list)


def with_defaults(schema: dict, value):
    """`value` with every absent property that has a schema default filled in."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: dict, value) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in (schema.get("properties") or {}):
                    _default(extra, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(schema["items"], item)


def _program(rule: str):
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def check(schema: dict, value, path: str = "", report: Report | None = None) -> Report:
    """Evaluate every rule of `schema` (recursively) on `value`, already defaulted."""
    report = report or Report()
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule["rule"]
        if "oldSelf" in text:
            report.transition += 1
            continue
        report.evaluated += 1
        try:
            ok = _program(text).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as err:  # noqa: BLE001 - reported, never skipped
            report.failures.append(f"{path or '/'}: cannot evaluate {text!r}: {err}")
            continue
        if ok is not True and not (isinstance(ok, celpy.celtypes.BoolType) and bool(ok)):
            report.failures.append(f"{path or '/'}: {rule.get('message') or text}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name in value:
                check(sub, value[name], f"{path}/{name}", report)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in props:
                    check(extra, item, f"{path}/{name}", report)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            check(schema["items"], item, f"{path}/{i}", report)
    return report


def validate(schema: dict, body: dict) -> Report:
    """Default, then run the rules on one object (its metadata is the API server's own)."""
    body = with_defaults(schema, {k: v for k, v in body.items() if k != "metadata"})
    return check(schema, body)
