"""The OpenAPI description is valid and matches what the handler answers."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from ingest import errors, request
from ingest import handler as ingest_handler
from tests.events.make_events import events, load

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "camera-api.yaml"


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


def test_the_spec_is_valid_openapi(spec):
    validate(spec)


def test_every_error_code_the_service_can_answer_is_documented(spec):
    documented = set(spec["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"])
    codes = {cls.code for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.IngestError)}
    assert codes | {"not_found", "unavailable", "internal_error"} == documented


def test_paths_media_types_and_limits_match_the_code(spec):
    post = spec["paths"][ingest_handler.UPLOAD_PATH]["post"]
    assert set(post["requestBody"]["content"]) == set(request.ACCEPTED_MEDIA_TYPES)
    batch = spec["components"]["schemas"]["Batch"]["properties"]["frames"]
    assert batch["maxItems"] == request.MAX_BATCH_FRAMES
    assert post["requestBody"]["content"]["image/jpeg"]["schema"]["maxLength"] == request.MAX_FRAME_BYTES
    assert spec["components"]["securitySchemes"]["cameraKey"]["name"] == request.API_KEY_HEADER
    assert ingest_handler.HEALTH_PATH in spec["paths"]


@pytest.mark.parametrize("name", sorted(events()))
def test_handler_answers_to_fixture_events_validate_against_the_spec(spec, wired, name):
    resp = ingest_handler.handler(load(name))
    status = str(resp["statusCode"])
    documented = spec["paths"]["/upload"]["post"]["responses"]
    assert status in documented
    schema = documented[status]["content"]["application/json"]["schema"]
    resolved = {**schema, "components": spec["components"]}
    OAS30Validator(resolved).validate(json.loads(resp["body"]))
