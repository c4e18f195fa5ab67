"""The reference vehicle proves it holds its packages, so an update whose download record the
server lost (the serving process died before writing it) still ends in success."""

from __future__ import annotations

from dataclasses import dataclass

from ota.choices import UpdateState
from ota.models import OtaUpdate, UpdateReport
from simulator.ota import COMPLETED
from simulator.tests.in_process import InProcessHttps, make_agent


@dataclass
class ForgetfulHttps(InProcessHttps):
    """Every package download is served, but the record of serving it is lost."""

    def request(self, method, path, **kwargs):  # noqa: ANN001, ANN201
        response = super().request(method, path, **kwargs)
        if method == "GET" and path.startswith("/api/v1/ota/package/"):
            OtaUpdate.objects.update(served_bytes={})
        return response


def test_a_vehicle_whose_download_record_was_lost_succeeds_on_its_proof(
    offered, keys, tmp_path
) -> None:
    agent = make_agent(tmp_path, keys)
    agent.api.__class__ = ForgetfulHttps
    update = offered(agent)
    outcome = agent.run_update()
    assert outcome.result == "succeeded", outcome.detail
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
    # Nothing served was recorded; the proofs are the evidence now kept in the record.
    assert update.served_bytes == {
        package["package_id"]: [[0, package["size"]]] for package in update.plan["packages"]
    }
    final = UpdateReport.objects.get(update=update, payload__vmg_state=COMPLETED)
    assert final.outcome == "applied"
    assert set(final.payload["package_proofs"]) == {
        package["package_id"] for package in update.plan["packages"]
    }
    assert not UpdateReport.objects.filter(update=update, outcome="refused").exists()
