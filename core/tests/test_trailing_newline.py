"""A valid value followed by a newline is refused: Python's "$" also matches before a final
newline, so every pattern must hold up under both validators, not only the fast one."""

from __future__ import annotations

import fastjsonschema
import pytest
from jsonschema import Draft202012Validator

from console.views import UdsRequestForm
from core.mqtt import schemas

CASES = [
    (schemas.VIN, "WVWZZZ1JZ3W386752"),
    (schemas.UUID, "123e4567-e89b-12d3-a456-426614174000"),
    (schemas.ECU_ID, "ECU_001"),
    (schemas.HEX, "22f190"),
    (schemas.TELEMETRY["properties"]["values"]["propertyNames"], "speed"),
    (schemas.SHA256_HEX, "ab" * 32),
]


@pytest.mark.parametrize(("schema", "valid"), CASES)
def test_both_validators_refuse_a_trailing_newline(schema, valid) -> None:
    reference = Draft202012Validator(schema)
    fast = fastjsonschema.compile(schema)
    assert reference.is_valid(valid)
    fast(valid)
    assert not reference.is_valid(valid + "\n")
    with pytest.raises(fastjsonschema.JsonSchemaException):
        fast(valid + "\n")


def test_every_pattern_in_the_schemas_refuses_a_trailing_newline() -> None:
    def patterns(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern":
                    yield value
                else:
                    yield from patterns(value)
        elif isinstance(node, list):
            for item in node:
                yield from patterns(item)

    found = set(patterns(list(schemas.SCHEMAS.values())))
    assert found
    assert {p for p in found if not p.endswith(schemas.END)} == set()


def test_uds_parameters_are_matched_whole() -> None:
    field = UdsRequestForm.base_fields["parameters"]
    assert field.regex.pattern.endswith(r"\Z")
    assert field.regex.search("F1 90") is not None
    assert field.regex.search("F1 9") is None
