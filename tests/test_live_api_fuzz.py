"""schemathesis against the server's own /openapi.json, authenticated as a team, the admin
and a node, on SQLite and PostgreSQL: whatever a client sends, within the schema or not, the
answer is never a 5xx. Bounded in examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.live_cluster import Cluster

EXAMPLES = 15  # per operation and role


@pytest.mark.parametrize("role", ["team", "admin", "node"])
def test_no_input_makes_the_server_answer_5xx(role, database_url, tmp_path):
    cluster = Cluster(database_url, tmp_path)
    cluster.submit("team-a", 1, ["true"])  # (something to find: job 1, attempt 1, node n0)
    cluster.call("POST", "/v1/agent/register", cluster.node, json={"name": "n0", "gpus": 4})
    cluster.app.state.step()
    token = {"team": cluster.teams["team-a"], "admin": cluster.admin, "node": cluster.node}[role]
    schema = schemathesis.openapi.from_asgi("/openapi.json", cluster.app)
    failures, statuses = [], set()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            statuses.add(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.body, response.text[:300]))

        call()
    cluster.engine.dispose()
    assert not failures, failures[:5]
    assert 200 in statuses and 422 in statuses  # (authenticated, and refused where wrong)
