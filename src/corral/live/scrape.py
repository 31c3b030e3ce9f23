"""A service's demand read from its replicas' Prometheus metrics: each broker step, the
counter (`metrics_counter`, e.g. `requests_total`, every label summed) at `metrics_path` of
every running replica, and its rate since the last scrape, summed over the replicas. A
counter that went down was reset (the replica restarted): its new value counts as the
increase, as Prometheus' `rate` takes it. A replica seen for the first time, or that does
not answer within the timeout, adds nothing this step."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def counter_value(text: str, name: str) -> float:
    """The sum of the samples of counter `name` (with or without `_total`) in `text`."""
    wanted = {name, name.removesuffix("_total"), name + "_total"}
    return sum(
        s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name in wanted
    )


class Scraper:
    def __init__(self, timeout_s: float = 0.5) -> None:
        self.http = httpx.Client(timeout=timeout_s)
        self.last: dict[str, tuple[float, float]] = {}  # replica URL -> (counter, when)

    def rate(self, urls: list[str], path: str, counter: str, now: float) -> float | None:
        """Requests per second over `urls` since the last scrape (None: no replica had been
        scraped before and answered now)."""
        total, known = 0.0, False
        for url in urls:
            try:
                response = self.http.get(url + path)
                response.raise_for_status()
                value = counter_value(response.text, counter)
            except (httpx.HTTPError, ValueError):
                continue
            before = self.last.get(url)
            self.last[url] = (value, now)
            if before is None or now <= before[1]:
                continue
            known = True
            total += (value - before[0] if value >= before[0] else value) / (now - before[1])
        for gone in set(self.last) - set(urls):
            del self.last[gone]
        return total if known else None
