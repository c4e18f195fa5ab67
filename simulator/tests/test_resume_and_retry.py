"""The reference vehicle converges after restarts on either side, waits out an unavailable
server, and never re-runs an offer it already finished."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import OperationalError, connection

from ota.choices import UpdateState
from ota.models import UpdateReport
from simulator.ota import DOWNLOADING, VERIFYING
from simulator.tests.in_process import InProcessHttps, make_agent


def test_a_restarted_vehicle_resumes_the_same_attempt(offered, keys, tmp_path) -> None:
    before = make_agent(tmp_path, keys)
    update = offered(before)
    # The vehicle got as far as verifying, then it (or the server) restarted.
    before.check()
    before.report(update.pk, DOWNLOADING, percentage=100)
    before.report(update.pk, VERIFYING, percentage=0)
    update.refresh_from_db()
    assert update.state == UpdateState.VERIFYING
    after = make_agent(tmp_path, keys)
    outcome = after.run_update()
    assert outcome.result == "succeeded", outcome.detail
    update.refresh_from_db()
    assert (update.state, update.attempts) == (UpdateState.SUCCEEDED, 1)
    assert UpdateReport.objects.filter(update=update, outcome="behind").exists()
    assert not UpdateReport.objects.filter(update=update, outcome="refused").exists()


def test_a_finished_offer_is_not_run_again_even_after_a_restart(offered, keys, tmp_path) -> None:
    agent = make_agent(tmp_path, keys)
    update = offered(agent)
    assert agent.run_update().result == "succeeded"
    retained = {"update_id": update.pk, "campaign_id": update.campaign_id, "attempt": 1}
    assert agent.has_finished(retained)
    assert make_agent(tmp_path, keys).has_finished(retained)
    assert not agent.has_finished({**retained, "attempt": 2})


@dataclass
class OutageHttps(InProcessHttps):
    """The first `outage` requests find the database unreachable."""

    outage: int = 0
    answered: int = 0

    def request(self, method, path, **kwargs):  # noqa: ANN001, ANN201
        self.answered += 1
        if self.answered > self.outage:
            return super().request(method, path, **kwargs)

        def refuse(execute, sql, params, many, context):  # noqa: ANN001, ANN202
            raise OperationalError("connection to server failed: Connection refused")

        with connection.execute_wrapper(refuse):
            return super().request(method, path, **kwargs)


def test_the_vehicle_backs_off_and_retries_while_the_database_is_down(
    offered, keys, tmp_path
) -> None:
    agent = make_agent(tmp_path, keys)
    update = offered(agent)
    api = OutageHttps(**{k: getattr(agent.api, k) for k in ("host", "port", "config")},
                      credentials=agent.api.credentials, vin=agent.api.vin, outage=3,
                      backoff=0.01, retry_after_cap=0.05)  # fmt: skip
    agent.api = api
    plan = agent.check()
    assert plan["update_id"] == update.pk
    assert api.answered == 4  # three 503s, then the answer


def test_the_vehicle_gives_up_after_a_bounded_number_of_tries(registry, keys, tmp_path) -> None:
    import pytest

    from simulator.https import HttpsError

    agent = make_agent(tmp_path, keys)
    api = OutageHttps(**{k: getattr(agent.api, k) for k in ("host", "port", "config")},
                      credentials=agent.api.credentials, vin=agent.api.vin, outage=100,
                      retries=2, backoff=0.01, retry_after_cap=0.05)  # fmt: skip
    with pytest.raises(HttpsError) as refused:
        api.call("POST", "/api/v1/ota/check", json={})
    assert refused.value.status == 503
    assert api.answered == 3


def test_an_offer_met_by_a_long_outage_is_run_again_once_the_server_answers(
    offered, keys, tmp_path
) -> None:
    agent = make_agent(tmp_path, keys, run_retries=3, run_retry_seconds=0.01)
    update = offered(agent)
    # The outage outlasts one run's own HTTP retries (2 tries each), not the runs' retries.
    agent.api = OutageHttps(**{k: getattr(agent.api, k) for k in ("host", "port", "config")},
                            credentials=agent.api.credentials, vin=agent.api.vin, outage=5,
                            retries=1, backoff=0.01, retry_after_cap=0.05)  # fmt: skip
    agent._run_quietly("desired state")
    update.refresh_from_db()
    assert update.state == UpdateState.SUCCEEDED
    assert [outcome.result for outcome in agent.outcomes] == ["succeeded"]


def test_runs_against_a_server_that_stays_down_end_after_their_retries(
    offered, keys, tmp_path
) -> None:
    agent = make_agent(tmp_path, keys, run_retries=2, run_retry_seconds=0.01)
    offered(agent)
    api = OutageHttps(**{k: getattr(agent.api, k) for k in ("host", "port", "config")},
                      credentials=agent.api.credentials, vin=agent.api.vin, outage=1000,
                      retries=1, backoff=0.01, retry_after_cap=0.05)  # fmt: skip
    agent.api = api
    agent._run_quietly("desired state")
    assert api.answered == 6  # three runs of two tries each
    assert agent.outcomes == []
