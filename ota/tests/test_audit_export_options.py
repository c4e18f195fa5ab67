from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("query", ["", "?format=csv", "?format=json"])
def test_options_on_the_audit_export_describes_it(viewer_client, query: str) -> None:
    response = viewer_client.options(f"/api/v1/audit-events/export{query}")
    assert response.status_code == 200
    assert b"Audit Export" in response.content


def test_options_with_a_csv_accept_header_describes_it(viewer_client) -> None:
    response = viewer_client.options("/api/v1/audit-events/export", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert b"Audit Export" in response.content
