"""``GET /api/openapi.json`` (SPEC §6): a valid OpenAPI 3.1 document of exactly the routes
the router serves, whose schemas the real answers satisfy."""
from __future__ import annotations

import base64
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from picron.webapp.login import set_password
from picron.errors import MethodNotAllowed, NotFound
from picron.openapi import build_document
from picron.webapp.base import Request
from tests.webclient import TASK, body, call
from tests.webfixtures import site, web_app  # noqa: F401 - fixtures

SAMPLES = {"task_id": "7", "run_id": "7", "name": "jobs", "key": "load"}


def sample(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: SAMPLES[match.group(1)], path)


def api_routes(site) -> list[tuple[str, re.Pattern]]:
    """The router's JSON routes (pages, login and static files are HTML, not API)."""
    return [(method, pattern) for method, pattern, _ in site.routes
            if pattern.pattern.startswith("/api/") or pattern.pattern == "/metrics"]


def test_the_document_is_valid_openapi_3_1():
    document = build_document()
    validate(document)  # raises OpenAPIValidationError when not
    assert document["openapi"].startswith("3.1")
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    assert {"invalid", "not_found", "conflict", "unauthorized"} <= set(
        error["properties"]["code"]["enum"])


def test_every_routed_api_route_is_documented(site):
    documented = [(method.upper(), sample(path))
                  for path, operations in build_document()["paths"].items()
                  for method in operations]
    for method, pattern in api_routes(site):
        assert any(m == method and pattern.fullmatch(p) for m, p in documented), \
            f"{method} {pattern.pattern} is routed but not in the OpenAPI document"


def test_every_documented_path_is_routed(site):
    for path, operations in build_document()["paths"].items():
        for method in operations:
            try:
                site._route(Request(method=method.upper(), path=sample(path)))
            except (NotFound, MethodNotAllowed):
                pytest.fail(f"{method.upper()} {path} is documented but not routed")


def test_it_is_served_to_authenticated_clients_only(site, web_app):
    store = web_app.open_store()
    set_password(store, "correct horse")
    store.close()
    refused = call(site, "GET", "/api/openapi.json", token=False)
    assert refused.status == 401 and body(refused)["error"]["code"] == "unauthorized"
    credentials = base64.b64encode(b"admin:correct horse").decode()
    response = call(site, "GET", "/api/openapi.json",
                    headers={"Authorization": f"Basic {credentials}"})
    assert response.status == 200
    response = call(site, "GET", "/api/openapi.json")  # the API token, as scripts send it
    assert response.status == 200 and response.content_type == "application/json"
    assert body(response) == build_document()


def conforms(document: dict, schema: dict, value: object) -> None:
    Draft202012Validator({**schema, "components": document["components"]}).validate(value)


def answer_schema(document: dict, method: str, path: str, status: int) -> dict:
    answer = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer["content"]["application/json"]["schema"]


def test_real_answers_match_their_schemas(site):
    document = build_document()
    created = call(site, "POST", "/api/tasks", {**TASK, "options": {"note": "hi"}})
    task_id = body(created)["id"]
    run = call(site, "POST", f"/api/tasks/{task_id}/run", {})
    assert site.background.join(30)
    call(site, "POST", "/api/counters/jobs/increment", {"by": 2})
    checks = [
        ("post", "/api/tasks", created),
        ("get", "/api/tasks", call(site, "GET", "/api/tasks")),
        ("patch", "/api/tasks/{task_id}", call(site, "PATCH", f"/api/tasks/{task_id}",
                                               {"ordering": 2})),
        ("post", "/api/tasks/{task_id}/run", run),
        ("get", "/api/runs", call(site, "GET", "/api/runs")),
        ("get", "/api/runs/{run_id}", call(site, "GET", f"/api/runs/{body(run)['id']}")),
        ("get", "/api/modules", call(site, "GET", "/api/modules")),
        ("get", "/api/nodes", call(site, "GET", "/api/nodes")),
        ("get", "/api/counters", call(site, "GET", "/api/counters")),
        ("get", "/api/stats", call(site, "GET", "/api/stats")),
        ("get", "/api/preview", call(site, "GET", "/api/preview?interval=*/5+*+*+*+*")),
        ("get", "/api/tasks/{task_id}", call(site, "GET", "/api/tasks/999")),
        ("post", "/api/tasks", call(site, "POST", "/api/tasks", {"name": "x"})),
        ("post", "/api/tasks", call(site, "POST", "/api/tasks", b"x",
                                    headers={"Content-Type": "text/plain"})),
    ]
    for method, path, response in checks:
        schema = answer_schema(document, method, path, response.status)
        conforms(document, schema, body(response))
    with pytest.raises(Exception):  # the schemas are not vacuous
        conforms(document, answer_schema(document, "get", "/api/tasks/{task_id}", 200),
                 {"id": "seven"})
