"""A service's demand read from its replicas' Prometheus metrics: the counter parsed, its rate
summed over replicas, resets and silent replicas handled, and the broker sizing replicas from
it. Real HTTP replicas on 127.0.0.1; the scrape times are the fake clock's."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from corral.live import reconciler as reconciler_module
from corral.live.db import Demand, Service
from corral.live.reconciler import Config, Reconciler
from corral.live.scrape import Scraper, counter_value
from corral.live.services import BrokerConfig
from tests.support.live import Clock, add_nodes, database
from tests.support.servers import serve

TEXT = """# HELP requests_total Requests served.
# TYPE requests_total counter
requests_total{code="200"} 40
requests_total{code="500"} 2
# TYPE latency_seconds histogram
latency_seconds_bucket{le="1"} 30
latency_seconds_count 42
"""


def test_the_counter_is_summed_over_its_labels():
    assert counter_value(TEXT, "requests_total") == 42.0
    assert counter_value(TEXT, "requests") == 42.0
    assert counter_value("requests_total 7\n", "requests_total") == 7.0
    assert counter_value(TEXT, "other_total") == 0.0


class Replica:
    def __init__(self) -> None:
        self.count = 0.0

        async def metrics(_: Request) -> PlainTextResponse:
            return PlainTextResponse(f"# TYPE requests_total counter\nrequests_total {self.count}\n")

        self.web, self.url = serve(Starlette(routes=[Route("/metrics", metrics)]))


@pytest.fixture
def replicas():
    made = [Replica(), Replica()]
    yield made
    for r in made:
        r.web.should_exit = True


def test_rates_sum_over_replicas_and_survive_resets(replicas):
    a, b = replicas
    urls = [a.url, b.url]
    scraper = Scraper(timeout_s=10.0)
    a.count, b.count = 100, 10
    assert scraper.rate(urls, "/metrics", "requests_total", 0.0) is None  # (nothing to compare with)
    a.count, b.count = 150, 30  # 50 and 20 in 10 s
    assert scraper.rate(urls, "/metrics", "requests_total", 10.0) == pytest.approx(7.0)
    a.count = 5  # (restarted: its counter began again)
    b.count = 40
    assert scraper.rate(urls, "/metrics", "requests_total", 15.0) == pytest.approx((5 + 10) / 5)
    b.web.should_exit = True  # (b stops answering: only a counts)
    a.count = 25
    assert scraper.rate(urls, "/metrics", "requests_total", 25.0) == pytest.approx(2.0)
    assert scraper.rate([a.url], "/metrics", "requests_total", 35.0) == pytest.approx(0.0)
    assert set(scraper.last) == {a.url}  # (a replica no longer listed is forgotten)


def test_the_broker_sizes_replicas_from_scraped_metrics(tmp_path, replicas, monkeypatch):
    """A service whose demand is its replicas' `requests_total`: 30 requests/s scraped at
    2 replicas' worth of 10 requests/s each, no headroom, gives a target of 3."""
    engine = database(f"sqlite:///{tmp_path}/live.db")
    add_nodes(engine, [8])
    with Session(engine) as session, session.begin():
        session.add(
            Service(name="chat", team="t", queue="default", gpus_per_replica=1, min_replicas=1,
                    max_replicas=8, replica_rps=10.0, startup_s=0.0, slo_latency_s=1.0,
                    slo_percentile=0.99, command=["serve"], target_replicas=0, created_s=0.0,
                    metrics_path="/metrics", metrics_counter="requests_total")
        )  # fmt: skip
    urls = [r.url for r in replicas]
    monkeypatch.setattr(reconciler_module, "endpoints", lambda _, __: [{"url": u} for u in urls])
    clock = Clock(0.0)
    config = Config("priority", broker=BrokerConfig("reactive", step_s=10.0, headroom=0.0))
    config.heartbeat_timeout_s = math.inf
    reconciler = Reconciler(engine, config, clock)
    reconciler.scraper = Scraper(timeout_s=10.0)  # (a loaded test machine may answer slowly)
    reconciler.step()  # (the first scrape: no rate yet)
    for r in replicas:
        r.count = 150.0  # 300 requests in 10 s over the two
    clock.t = 10.0
    reconciler.step()
    with Session(engine) as session:
        rows = session.execute(select(Demand.t_s, Demand.requests_per_s)).all()
        assert [tuple(r) for r in rows] == [(10.0, 30.0)]
        assert session.get(Service, "chat").target_replicas == 3
