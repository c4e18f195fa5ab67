from __future__ import annotations

from ota.services import record_status_report


def test_state_changes_are_published_after_commit(
    monkeypatch, vehicle, offered_update, django_capture_on_commit_callbacks
) -> None:
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("core.events._send", lambda group, event: sent.append((group, event)))
    with django_capture_on_commit_callbacks(execute=True):
        record_status_report(
            vehicle=vehicle,
            report={"update_id": offered_update.pk, "vmg_state": 1, "percentage": 5},
            source="mqtt",
        )
    groups = {group for group, _ in sent}
    assert groups == {f"vehicle.{vehicle.vin}", f"campaign.{offered_update.campaign_id}"}
    [event] = {e["kind"]: e for _, e in sent}.values()
    assert event["state"] == "downloading"
    assert event["progress"] == 5


def test_outcomes_also_publish_campaign_progress(
    monkeypatch, vehicle, offered_update, django_capture_on_commit_callbacks
) -> None:
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr("core.events._send", lambda group, event: sent.append((group, event)))
    with django_capture_on_commit_callbacks(execute=True):
        record_status_report(
            vehicle=vehicle,
            report={"update_id": offered_update.pk, "vmg_state": 5, "error": "flash"},
            source="http",
        )
    progress = [e for g, e in sent if e["kind"] == "campaign_progress" and g == "fleet"]
    assert progress[0]["counts"]["failed"] == 1
