"""The dashboard in headless Chromium (Debian's chromium and chromium-driver, through
Selenium): load the page, submit a job through the API, see it appear and finish, open it
and read its output, see a service's broker move, take a screenshot. Bounded waits on a real
server and real processes."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from corral.live.agent import Agent
from corral.live.db import connect, migrate
from corral.live.reconciler import Config
from corral.live.server import bootstrap, create_app
from corral.live.services import BrokerConfig
from tests.support.live import free_port

CHROMEDRIVER = shutil.which("chromedriver")
if CHROMEDRIVER is None and not os.environ.get("CORRAL_REQUIRE_BROWSER"):
    pytest.skip("no chromedriver (Debian: apt install chromium chromium-driver)", allow_module_level=True)


@pytest.fixture
def live(tmp_path):
    import uvicorn

    engine = connect(f"sqlite:///{tmp_path}/corral.db")
    migrate(engine)
    broker = BrokerConfig("reactive", step_s=0.5)
    app = create_app(engine, Config("fifo", broker=broker), tmp_path, reconcile_every_s=0.1)
    admin, node = bootstrap(engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until = time.monotonic() + 20
    while not server.started and time.monotonic() < until:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    done = threading.Event()
    agent = Agent(url, node, tmp_path / "agent", 2, name="local")
    threading.Thread(target=agent.run, kwargs={"every_s": 0.1, "stop": done.is_set}, daemon=True).start()
    yield url, admin
    done.set()
    server.should_exit = True
    thread.join(timeout=10)


def test_the_dashboard_shows_a_job_submitted_through_the_api(live, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, admin = live
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(f"{url}/#token={admin}")
        wait = WebDriverWait(browser, 30, poll_frequency=0.2)
        wait.until(lambda b: "local" in b.find_element(By.ID, "nodes").text)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"})
        job = client.post(
            "/v1/jobs",
            json={"gpus": 1, "name": "hello", "command": ["sh", "-c", "echo hi from $CUDA_VISIBLE_DEVICES"]},
        )
        job_id = job.json()["job_id"]
        row = f"//table[@id='jobs']//tr[@data-job='{job_id}']"
        wait.until(lambda b: "succeeded" in b.find_element(By.XPATH, row).text)
        assert "hello" in browser.find_element(By.XPATH, row).text
        browser.find_element(By.XPATH, row).click()
        wait.until(lambda b: "hi from 0" in b.find_element(By.ID, "log").text)
        assert "local:0" in browser.find_element(By.ID, "job").text
        service = {"name": "chat", "replica_rps": 2.0, "startup_s": 0, "command": ["sleep", "30"]}
        assert client.post("/v1/services", json=service).status_code == 201
        assert client.post("/v1/services/chat/demand", json={"requests_per_s": 3.0}).status_code == 200
        wait.until(lambda b: "reactive: demand now" in b.find_element(By.ID, "moves").text)
        assert "chat" in browser.find_element(By.ID, "services").text
        window = {"nodes": ["local"], "maintenance": True, "start_s": 4e9, "duration_s": 3600, "name": "fix"}
        assert client.post("/v1/reservations", json=window).status_code == 201
        wait.until(lambda b: "maintenance" in b.find_element(By.ID, "reservations").text)
        shot = Path(tmp_path) / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
    finally:
        browser.quit()
