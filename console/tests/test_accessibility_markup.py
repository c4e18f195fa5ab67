"""Markup the browser cannot fix for itself: references between elements must resolve."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from console.tests.dashboard_helpers import logged_in, make_campaign


class _Ids(HTMLParser):
    """Every id in a page, and every id an aria-describedby/labelledby or label[for] names."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.references: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            elif name in ("aria-describedby", "aria-labelledby") and value:
                self.references.extend((name, ref) for ref in value.split())
            elif name == "for" and tag == "label" and value:
                self.references.append((name, value))


def _dangling(body: str) -> list[tuple[str, str]]:
    parser = _Ids()
    parser.feed(body)
    return [(name, ref) for name, ref in parser.references if ref not in parser.ids]


@pytest.mark.django_db
def test_campaign_form_describes_fields_with_ids_that_exist(fleet_operator) -> None:
    body = logged_in(fleet_operator).get("/campaigns/").content.decode()
    assert "aria-describedby" in body
    assert _dangling(body) == []


@pytest.mark.django_db
def test_campaign_form_errors_are_tied_to_their_fields(fleet_operator) -> None:
    response = logged_in(fleet_operator).post("/campaigns/new", {"name": ""})
    body = response.content.decode()
    assert _dangling(body) == []
    name_input = re.search(r"<input[^>]*name=\"name\"[^>]*>", body)
    assert name_input is not None
    assert 'aria-invalid="true"' in name_input.group(0)


@pytest.mark.django_db
def test_cancel_asks_for_confirmation_before_it_acts(fleet_operator) -> None:
    campaign = make_campaign(status="running")
    body = logged_in(fleet_operator).get(f"/campaigns/{campaign.pk}/").content.decode()
    cancel = re.search(r"<button[^>]*data-action=\"cancel\"[^>]*>", body)
    assert cancel is not None
    assert "data-confirm=" in cancel.group(0)


@pytest.mark.django_db
def test_diagnostics_vehicle_picker_does_not_submit_on_change(fleet_operator, vehicle) -> None:
    body = logged_in(fleet_operator).get("/diagnostics/").content.decode()
    picker = re.search(r"<select[^>]*id=\"pick-vehicle\"[^>]*>", body)
    assert picker is not None
    assert "data-autosubmit" not in picker.group(0)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/campaigns/", "/vehicles/", "/pqc/", "/diagnostics/"])
def test_console_pages_reference_only_ids_that_exist(viewer, vehicle, path) -> None:
    make_campaign(status="running")
    body = logged_in(viewer).get(path).content.decode()
    assert _dangling(body) == []
