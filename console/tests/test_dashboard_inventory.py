"""The console's fleet list (the API's filters, keyset pages, the total, saved filters) and the
version report page."""

from __future__ import annotations

import re

import pytest

from console.tests.dashboard_helpers import logged_in
from ecus.models import Ecu
from ecus.versions import SemVer
from vehicles.seeding import seed_fleet
from vehicles.services import create_saved_filter

URL = "/vehicles/"


@pytest.fixture
def fleet(registry):
    seed_fleet(vehicles=12, seed=7)


def _rows(html: str) -> list[str]:
    return re.findall(r'class="mono" href="/vehicles/([A-Z0-9]{17})/"', html)


def test_pages_through_the_fleet_with_the_total(viewer, fleet) -> None:
    client = logged_in(viewer)
    html = client.get(f"{URL}?limit=8").content.decode()
    assert "<strong>12</strong> vehicles" in html
    first = _rows(html)
    assert len(first) == 8
    next_query = re.search(r'rel="next" href="\?([^"]+)"', html).group(1).replace("&amp;", "&")
    second = client.get(f"{URL}?{next_query}").content.decode()
    assert len(_rows(second)) == 4
    assert not set(first) & set(_rows(second))
    assert 'rel="prev"' in second


def test_filters_are_the_apis(viewer, fleet) -> None:
    client = logged_in(viewer)
    html = client.get(f"{URL}?ecu=ECM&version=%3C2.0.0&status=active").content.decode()
    expected = (
        Ecu.objects.filter(
            ecu_type__code="ECM",
            sw_version_key__lt=SemVer.parse("2.0.0").sort_key,
            vehicle__status="active",
        )
        .values("vehicle")
        .distinct()
        .count()
    )
    total = int(re.search(r"<strong>(\d+)</strong> vehicle", html).group(1))
    assert 0 < total == expected < 12
    assert len(set(_rows(html))) == total


def test_a_saved_filter_can_be_chosen(viewer, fleet_operator, fleet) -> None:
    saved = create_saved_filter(name="Aurora", query={"model_name": "Aurora"}, actor=fleet_operator)
    html = logged_in(viewer).get(f"{URL}?saved={saved.pk}").content.decode()
    assert f'<option value="{saved.pk}" selected>Aurora</option>' in html
    assert "in “Aurora”" in html
    assert all(model == "Aurora" for model in re.findall(r"<td>(\w+) 20\d\d</td>", html))


def test_a_malformed_filter_is_a_400_naming_it(viewer, fleet) -> None:
    response = logged_in(viewer).get(f"{URL}?version=%3Ctwo")
    assert response.status_code == 400
    assert "version:" in response.content.decode()


def test_the_version_report_page_draws_each_version_per_model(viewer, fleet) -> None:
    response = logged_in(viewer).get("/reports/versions/?ecu=ECM")
    assert response.status_code == 200
    html = response.content.decode()
    ecms = Ecu.objects.filter(ecu_type__code="ECM").count()
    assert f"ECM ECUs per version: {ecms} in all" in html
    assert html.count("<rect ") >= 2
    assert logged_in(viewer).get("/reports/versions/?ecu=NOPE").status_code == 404


def test_the_fleet_list_takes_a_fixed_number_of_queries(
    viewer, fleet, django_assert_max_num_queries
) -> None:
    client = logged_in(viewer)
    client.get(URL)
    with django_assert_max_num_queries(12):
        client.get(f"{URL}?ecu=ECM&version=%3C2.0.0&fragment=live")


def test_the_campaign_form_targets_a_saved_filter(fleet_operator, registry) -> None:
    from ota.models import Campaign
    from ota.tests.conftest import make_release

    saved = create_saved_filter(name="Cirrus", query={"model_name": "Cirrus"}, actor=fleet_operator)
    release = make_release("ECM", "2.0.0")
    response = logged_in(fleet_operator).post(
        "/campaigns/new",
        {
            "name": "Cirrus ECMs",
            "firmware": [release.pk],
            "target_filter": saved.pk,
            "waves": "100",
        },
    )
    assert response.status_code == 302, response.content.decode()[:500]
    assert Campaign.objects.get(name="Cirrus ECMs").target_filter == saved
