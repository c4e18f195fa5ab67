from __future__ import annotations

import json
import re
from pathlib import Path

from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from core.mqtt import schemas, topics

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=140),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
telemetry_like = st.fixed_dictionaries(
    {},
    optional={
        "vin": st.sampled_from(["WVWZZZ1JZ3W386752", "short", 17]),
        "seq": st.one_of(st.integers(-2, 2**40), st.booleans(), st.text(max_size=3)),
        "timestamp": st.one_of(
            st.integers(-5, 2**33), st.sampled_from(["2026-11-26T10:00:00Z", "2026-13-40", ""])
        ),
        "vehicle_state": st.sampled_from(["DRIVING", "FLYING", 1]),
        "values": st.one_of(
            st.dictionaries(
                st.from_regex(r"[a-zA-Z_][a-z0-9_]{0,5}", fullmatch=True), json_values, max_size=4
            ),
            json_values,
        ),
        "extra": json_values,
    },
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(telemetry_like)
def test_fast_validation_agrees_with_the_reference_validator(document):
    reference = Draft202012Validator(schemas.TELEMETRY, format_checker=schemas.FORMAT_CHECKER)
    assert (schemas.schema_errors(topics.TELEMETRY, document) == []) == reference.is_valid(document)


def test_errors_name_the_path_of_the_violation():
    errors = schemas.schema_errors(
        topics.TELEMETRY,
        {"vin": "WVWZZZ1JZ3W386752", "seq": 1, "timestamp": 1, "values": {"speed": "x" * 200}},
    )
    assert errors and errors[0].startswith("values.speed:")


def test_every_schema_is_valid_draft_2020_12():
    for schema in schemas.SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


def test_protocol_document_prints_the_schemas_the_server_uses():
    text = (Path(settings.BASE_DIR) / "docs" / "PROTOCOL.md").read_text()
    documented = {
        name: json.loads(body)
        for name, body in re.findall(r"### Schema: (\S+)\n```json\n(.*?)\n```", text, re.S)
    }
    assert documented == schemas.SCHEMAS
