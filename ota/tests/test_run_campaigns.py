from __future__ import annotations

import io
import threading

from django.core.management import call_command

from ota.choices import CampaignStatus, UpdateState
from ota.models import OtaUpdate
from ota.worker import run_once, start


def _scheduled(operator, release):
    from ota.campaigns import create_campaign, start_campaign

    campaign = create_campaign(
        operator=operator, name="c", firmware_ids=[release.pk], wave_percentages=[100]
    )
    return start_campaign(campaign, operator=operator)


def test_run_campaigns_once_fans_out_and_offers(vehicle, fleet_operator, ecm_release) -> None:
    campaign = _scheduled(fleet_operator, ecm_release)
    out = io.StringIO()
    call_command("run_campaigns", "--once", stdout=out)
    assert f"{campaign.pk}: 1" in out.getvalue()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert OtaUpdate.objects.get(campaign=campaign).state == UpdateState.OFFERED


def test_worker_stops_when_told(vehicle, fleet_operator, ecm_release) -> None:
    stop = threading.Event()
    stop.set()
    start(stop)  # returns at once: no tick after the stop
    assert not OtaUpdate.objects.exists()


def test_failing_tick_is_logged_not_raised(monkeypatch, caplog) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr("ota.worker.run_tick", broken)
    monkeypatch.setattr("ota.worker.close_old_connections", lambda: None)
    assert run_once() is False
    assert "campaign tick failed" in caplog.text
