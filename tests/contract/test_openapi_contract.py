"""The app serves exactly the API that ``contracts/bank-api.openapi.yaml`` documents.

The contract is hand-maintained; the app's own OpenAPI document (``create_app(...).openapi()``)
is what the routes and pydantic models really do. Both are compared operation by operation:
the same (method, path, operationId), parameters, request body and response statuses, and
schemas of the same shape once ``$ref``s are resolved and documentation-only keys
(``description``, ``title``, ``examples`` ...) are dropped. Prose may differ; shape may not.

The code table (``contracts/error_codes.yaml``), the error classes (``simulator.errors``) and
the statuses the contract documents are checked against each other as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import yaml

from contracts import contract_path
from contracts.codes import CODES
from simulator.bank import Bank
from simulator.config import load_profile
from simulator.errors import BankError, all_error_classes
from simulator.http.app import create_app
from simulator.operations import OPERATIONS

CONTRACT_FILE = contract_path("bank-api.openapi.yaml")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Keys that document a schema or an object without changing what it accepts.
DOC_ONLY_KEYS = frozenset({"description", "title", "summary", "example", "examples", "$comment",
                           "externalDocs"})
# Schema keywords whose value maps names (not keywords) to subschemas.
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose list order carries no meaning.
UNORDERED_LISTS = frozenset({"required", "enum", "type"})
SUCCESS_CODE = "0000"
CODE_IN_PROSE = re.compile(r"`([0-9]{4})`")

Json = Any
OpKey = tuple[str, str, str]  # (METHOD, path, operationId)


# --- reading an OpenAPI document -------------------------------------------------------------


class Spec:
    """One OpenAPI document with local ``$ref`` resolution."""

    def __init__(self, label: str, doc: dict[str, Json]) -> None:
        self.label = label
        self.doc = doc

    def pointer(self, ref: str) -> Json:
        if not ref.startswith("#/"):
            raise AssertionError(f"{self.label}: only local $refs are supported, got {ref!r}")
        node: Json = self.doc
        for raw in ref[2:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise AssertionError(f"{self.label}: $ref {ref!r} points at nothing")
            node = node[part]
        return node

    def deref(self, node: Json) -> Json:
        """An object (parameter, response, header ...) with its own ``$ref`` chain followed."""
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                raise AssertionError(f"{self.label}: $ref cycle through {ref!r}")
            seen.add(ref)
            node = self.pointer(ref)
        return node

    def shape(self, schema: Json, _stack: tuple[str, ...] = ()) -> Json:
        """The schema with every ``$ref`` inlined and documentation-only keys removed."""
        if isinstance(schema, list):
            return [self.shape(item, _stack) for item in schema]
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in _stack:
                return {"$recursive": ref}
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            return self.shape({**self.pointer(ref), **siblings}, (*_stack, ref))
        out: dict[str, Json] = {}
        for key, value in schema.items():
            if key in DOC_ONLY_KEYS or key.startswith("x-"):
                continue
            if key in SCHEMA_MAPS and isinstance(value, dict):
                out[key] = {name: self.shape(sub, _stack) for name, sub in value.items()}
            elif key in UNORDERED_LISTS and isinstance(value, list):
                out[key] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
            else:
                out[key] = self.shape(value, _stack)
        return out

    def inline(self, schema: Json, _stack: tuple[str, ...] = ()) -> Json:
        """The schema with every ``$ref`` inlined, documentation kept (for validating examples)."""
        if isinstance(schema, list):
            return [self.inline(item, _stack) for item in schema]
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in _stack:
                raise AssertionError(f"{self.label}: recursive schema {ref!r} cannot be inlined")
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            return self.inline({**self.pointer(ref), **siblings}, (*_stack, ref))
        return {key: self.inline(value, _stack) for key, value in schema.items()}

    def operation(self, op_id: str) -> tuple[str, str, dict[str, Json], list[Json]]:
        found = self.operations()
        if op_id not in found:
            pytest.fail(f"{self.label} has no operation {op_id!r} (it has {sorted(found)})")
        return found[op_id]

    def operations(self) -> dict[str, tuple[str, str, dict[str, Json], list[Json]]]:
        """operationId -> (METHOD, path, operation, path-item parameters)."""
        found: dict[str, tuple[str, str, dict[str, Json], list[Json]]] = {}
        for path, item in self.doc.get("paths", {}).items():
            item = self.deref(item)
            for method in HTTP_METHODS:
                if method not in item:
                    continue
                op = item[method]
                op_id = op.get("operationId")
                assert op_id, f"{self.label}: {method.upper()} {path} has no operationId"
                assert op_id not in found, f"{self.label}: operationId {op_id!r} is used twice"
                found[op_id] = (method.upper(), path, op, item.get("parameters", []))
        return found

    def op_keys(self) -> set[OpKey]:
        return {(method, path, op_id) for op_id, (method, path, _, _) in self.operations().items()}

    def parameters(self, op_id: str) -> dict[tuple[str, str], dict[str, Json]]:
        """(name, in) -> {required, schema} with operation-level parameters overriding path-level ones."""
        _, _, op, shared = self.operation(op_id)
        out: dict[tuple[str, str], dict[str, Json]] = {}
        for raw in [*shared, *op.get("parameters", [])]:
            param = self.deref(raw)
            out[(param["name"], param["in"])] = {
                "required": bool(param.get("required", False)),
                "schema": self.shape(param.get("schema", {})),
            }
        return out

    def request_body(self, op_id: str) -> dict[str, Json] | None:
        _, _, op, _ = self.operation(op_id)
        if "requestBody" not in op:
            return None
        body = self.deref(op["requestBody"])
        return {
            "required": bool(body.get("required", False)),
            "content": {media: self.shape(spec.get("schema", {}))
                        for media, spec in body.get("content", {}).items()},
        }

    def responses(self, op_id: str) -> dict[str, dict[str, Json]]:
        """status -> media type -> schema shape."""
        _, _, op, _ = self.operation(op_id)
        return {
            str(status): {media: self.shape(spec.get("schema", {}))
                          for media, spec in self.deref(response).get("content", {}).items()}
            for status, response in op.get("responses", {}).items()
        }

    def documented_statuses(self) -> set[int]:
        return {int(status) for op_id in self.operations() for status in self.responses(op_id)
                if status.isdigit()}


def differences(app: Json, contract: Json, where: str) -> list[str]:
    """Every place where two normalised values differ, as ``where.path: what`` lines."""
    if isinstance(app, dict) and isinstance(contract, dict):
        out: list[str] = []
        for key in sorted(app.keys() | contract.keys(), key=str):
            sub = f"{where}.{key}"
            if key not in contract:
                out.append(f"{sub}: only in the app: {app[key]!r}")
            elif key not in app:
                out.append(f"{sub}: only in the contract: {contract[key]!r}")
            else:
                out.extend(differences(app[key], contract[key], sub))
        return out
    if isinstance(app, list) and isinstance(contract, list) and len(app) == len(contract):
        return [line for i, (a, c) in enumerate(zip(app, contract, strict=True))
                for line in differences(a, c, f"{where}[{i}]")]
    if type(app) is not type(contract) or app != contract:
        return [f"{where}: app has {app!r}, contract has {contract!r}"]
    return []


def report(op_id: str, spec: Spec, what: str, lines: list[str]) -> str:
    method, path, _, _ = spec.operation(op_id)
    return (f"{method} {path} ({op_id}): {what} of the app and {CONTRACT_FILE.name} differ:\n  "
            + "\n  ".join(lines))


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract() -> Spec:
    doc = yaml.safe_load(CONTRACT_FILE.read_text("utf-8"))
    assert isinstance(doc, dict), f"{CONTRACT_FILE} is not a YAML mapping"
    return Spec("contract", doc)


@pytest.fixture(scope="module")
def served() -> Iterator[Spec]:
    bank = Bank(load_profile(None), None)
    try:
        yield Spec("app", create_app(bank).openapi())
    finally:
        bank.close()


OPERATION_IDS = sorted(op.name for op in OPERATIONS)


# --- the document itself --------------------------------------------------------------------


def test_contract_is_a_hand_maintained_openapi_3_1_document(contract: Spec) -> None:
    text = CONTRACT_FILE.read_text("utf-8")
    assert str(contract.doc.get("openapi", "")).startswith("3.1."), "the contract must be OpenAPI 3.1"
    assert "HAND-MAINTAINED" in text.split("\nopenapi:", 1)[0], \
        "the header comment must say the file is hand-maintained"
    description = contract.doc["info"]["description"]
    for needle in ('METHOD + "\\n" + PATH_AND_QUERY + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + BODY',
                   "X-App-Id", "X-Timestamp", "X-Nonce", "X-Signature", "X-Idempotent-Replay: true",
                   "error_codes.yaml"):
        assert needle in description, f"info.description no longer documents {needle!r}"
    schemes = contract.doc["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values() if s["type"] == "apiKey" and s["in"] == "header"} \
        == {"X-App-Id", "X-Timestamp", "X-Nonce", "X-Signature"}


def test_operation_registry_matches_the_routes(served: Spec) -> None:
    """``simulator.operations`` (fault rules, middleware) names the same operations the routes serve."""
    registry = {(op.method, op.path, op.name) for op in OPERATIONS}
    routes = served.op_keys()
    assert registry == routes, (f"only in simulator.operations: {sorted(registry - routes)}; "
                                f"only in the routes: {sorted(routes - registry)}")


# --- app vs contract ------------------------------------------------------------------------


def test_same_operations(served: Spec, contract: Spec) -> None:
    app_ops, contract_ops = served.op_keys(), contract.op_keys()
    assert app_ops == contract_ops, (
        f"(method, path, operationId) only served by the app: {sorted(app_ops - contract_ops)}; "
        f"only in the contract: {sorted(contract_ops - app_ops)}")


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_same_parameters(op_id: str, served: Spec, contract: Spec) -> None:
    app, documented = served.parameters(op_id), contract.parameters(op_id)
    lines = [f"parameter {name!r} in {where}: only in the app"
             for name, where in sorted(app.keys() - documented.keys())]
    lines += [f"parameter {name!r} in {where}: only in the contract"
              for name, where in sorted(documented.keys() - app.keys())]
    for key in sorted(app.keys() & documented.keys()):
        lines += differences(app[key], documented[key], f"parameter {key[0]!r} in {key[1]}")
    assert not lines, report(op_id, contract, "the parameters", lines)


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_same_request_body(op_id: str, served: Spec, contract: Spec) -> None:
    lines = differences(served.request_body(op_id), contract.request_body(op_id), "requestBody")
    assert not lines, report(op_id, contract, "the request body", lines)


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_same_responses(op_id: str, served: Spec, contract: Spec) -> None:
    app, documented = served.responses(op_id), contract.responses(op_id)
    lines = []
    if app.keys() != documented.keys():
        lines.append(f"status codes: only the app documents {sorted(app.keys() - documented.keys())}, "
                     f"only the contract documents {sorted(documented.keys() - app.keys())}")
    for status in sorted(app.keys() & documented.keys()):
        lines += differences(app[status], documented[status], f"responses.{status}.content")
    assert not lines, report(op_id, contract, "the responses", lines)


# --- examples -------------------------------------------------------------------------------


def _media_examples(media: dict[str, Json]) -> Iterator[tuple[str, Json]]:
    if "example" in media:
        yield "example", media["example"]
    for name, example in media.get("examples", {}).items():
        yield f"examples.{name}", example["value"]


@pytest.mark.parametrize("op_id", OPERATION_IDS)
def test_examples_match_their_schemas(op_id: str, contract: Spec) -> None:
    """Every request body has an example; every body and response example is valid."""
    method, path, op, _ = contract.operation(op_id)
    problems: list[str] = []
    targets: list[tuple[str, dict[str, Json]]] = []
    if "requestBody" in op:
        for media_type, media in contract.deref(op["requestBody"])["content"].items():
            if not list(_media_examples(media)):
                problems.append(f"requestBody {media_type}: no example")
            targets.append((f"requestBody {media_type}", media))
    for status, response in op["responses"].items():
        for media_type, media in contract.deref(response).get("content", {}).items():
            targets.append((f"response {status} {media_type}", media))
    for where, media in targets:
        validator = jsonschema_rs.Draft202012Validator(contract.inline(media["schema"]))
        for name, value in _media_examples(media):
            problems += [f"{where} {name}: {error.message} at {list(error.instance_path)}"
                         for error in validator.iter_errors(value)]
    assert not problems, f"{method} {path} ({op_id}):\n  " + "\n  ".join(problems)


# --- the code table -------------------------------------------------------------------------


def _strings(node: Json, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")


def _error_responses(contract: Spec) -> Iterator[tuple[str, int, dict[str, Json]]]:
    """(where, status, response) for every documented non-2xx response, refs followed."""
    for op_id, (_, _, op, _) in sorted(contract.operations().items()):
        for status, response in op["responses"].items():
            if status.isdigit() and not status.startswith("2"):
                yield f"{op_id} {status}", int(status), contract.deref(response)


def test_documented_codes_exist_in_the_code_table(contract: Spec) -> None:
    """Every code the contract names (examples, and `NNNN` in prose) is a row of error_codes.yaml."""
    unknown = [f"{where}: {code}" for where, text in _strings(contract.doc)
               for code in CODE_IN_PROSE.findall(text) if code not in CODES]
    for where, _, response in _error_responses(contract):
        for media_type, media in response.get("content", {}).items():
            unknown += [f"{where} {media_type} {name}: code {value.get('code')!r}"
                        for name, value in _media_examples(media)
                        if isinstance(value, dict) and value.get("code") not in CODES]
    assert not unknown, "codes the contract documents but error_codes.yaml lacks:\n  " + "\n  ".join(unknown)


def test_error_responses_name_codes_of_their_own_status(contract: Spec) -> None:
    """A code named under a status (description or example) is answered with that status."""
    wrong: list[str] = []
    for where, status, response in _error_responses(contract):
        named = [("description", code) for code in CODE_IN_PROSE.findall(response.get("description", ""))]
        for media in response.get("content", {}).values():
            named += [(name, str(value["code"])) for name, value in _media_examples(media)
                      if isinstance(value, dict) and "code" in value]
        wrong += [f"{where} {source}: code {code} is answered with HTTP {CODES[code].http}"
                  for source, code in named if code in CODES and CODES[code].http != status]
    assert not wrong, "error responses naming codes of another status:\n  " + "\n  ".join(sorted(set(wrong)))


def _group_bases() -> set[type[BankError]]:
    """The abstract group bases (BankError, RequestError ...): classes other classes refine."""
    return {cls for cls in all_error_classes() if cls.__subclasses__()}


def test_every_code_has_an_error_class_and_back() -> None:
    leaves = [cls for cls in all_error_classes() if cls not in _group_bases()]
    by_code: dict[str, list[str]] = {}
    for cls in leaves:
        by_code.setdefault(cls.code, []).append(cls.__name__)
    table = set(CODES) - {SUCCESS_CODE}  # success is an answer, not an error
    problems = [f"code {code} ({CODES[code].name}) has no class in simulator.errors"
                for code in sorted(table - by_code.keys())]
    problems += [f"{', '.join(names)}: code {code} is not in error_codes.yaml"
                 for code, names in sorted(by_code.items()) if code not in table]
    problems += [f"code {code} has several classes: {', '.join(names)}"
                 for code, names in sorted(by_code.items()) if len(names) > 1]
    problems += [f"group base {cls.__name__}: code {cls.code} is not in error_codes.yaml"
                 for cls in _group_bases() if cls.code not in table]
    assert not problems, "simulator.errors and error_codes.yaml disagree:\n  " + "\n  ".join(problems)


def test_every_code_status_is_documented(contract: Spec) -> None:
    documented = contract.documented_statuses()
    outside = contract.doc.get("x-codes-outside-operations") or {}
    assert isinstance(outside, dict)
    assert set(outside) <= set(CODES), f"x-codes-outside-operations names unknown codes: {outside}"
    missing = [f"{code} {entry.name}: HTTP {entry.http}" for code, entry in sorted(CODES.items())
               if entry.http not in documented and code not in outside]
    assert not missing, (f"codes answered with a status no operation documents "
                         f"(documented: {sorted(documented)}):\n  " + "\n  ".join(missing))
    possible = {entry.http for entry in CODES.values()}
    unused = sorted(status for status in documented if status not in possible)
    assert not unused, f"statuses documented that no row of error_codes.yaml answers with: {unused}"
