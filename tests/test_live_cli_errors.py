"""The live commands refuse what they cannot use in one line and exit 2, never with a
traceback: the server and token variables, and the options of serve, agent and up. Only
loopback addresses are ever contacted."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from corral.cli import app
from tests.support.live import free_port

runner = CliRunner()


def refused_in_one_line(args: list[str], env: dict[str, str] | None = None, field: str | None = None) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, (args, env, result.output, result.exception)
    assert "Traceback" not in result.output and result.output.strip().count("\n") == 0, result.output
    if field is not None:
        assert f"field '{field}'" in result.output, result.output


@pytest.mark.parametrize(
    "server, token, field",
    [
        ("http://[::1", "x", "server"),
        ("ftp://127.0.0.1:1", "x", "server"),
        ("http://127.0.0.1:1", "tök€n", "token"),
        ("http://127.0.0.1:1", "a\tb", "token"),
        ("http://127.0.0.1:1", "x", "server"),  # (nothing listens there)
        ("", "x", "server"),
        ("http://127.0.0.1:1", "", "token"),
    ],
)
def test_bad_server_and_token_variables_are_one_line(server, token, field):
    refused_in_one_line(["jobs"], {"CORRAL_SERVER": server, "CORRAL_TOKEN": token}, field)
    if (server, token) != ("http://127.0.0.1:1", "x"):  # (a usable pair: the proxy would serve)
        refused_in_one_line(["proxy", "chat"], {"CORRAL_SERVER": server, "CORRAL_TOKEN": token}, field)


@pytest.fixture
def html_server():
    """A server on loopback that answers every request 200 with a web page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not corral</html>")

        do_POST = do_GET

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_answers_with_a_web_page_is_named(html_server):
    env = {"CORRAL_SERVER": html_server, "CORRAL_TOKEN": "x"}
    for args in (["jobs"], ["nodes"], ["submit", "--gpus", "1", "--", "true"], ["logs", "1"]):
        refused_in_one_line(args, env, "server")


@pytest.mark.parametrize(
    "args, field",
    [
        (["submit", "--gpus", "1", "--scaling", "nan", "--", "true"], "scaling"),
        (["submit", "--gpus", "1", "--scaling", "2", "--", "true"], "scaling"),
        (["history", "--out", "/nonexistent/x.csv"], "out"),
    ],
)
def test_bad_options_of_the_client_are_one_line(args, field):
    refused_in_one_line(args, {"CORRAL_SERVER": "http://127.0.0.1:1", "CORRAL_TOKEN": "x"}, field)
    assert not os.path.exists("/nonexistent")


def test_bad_options_of_serve_and_up_are_one_line(tmp_path, database_url):
    a_file = tmp_path / "file"
    a_file.write_text("")
    port = str(free_port())
    refused_in_one_line(["up", "--data-dir", str(a_file), "--gpus", "1", "--port", port], field="data_dir")
    refused_in_one_line(["serve", "--data-dir", str(a_file), "--port", port], field="data_dir")
    refused_in_one_line(["serve", "--data-dir", str(tmp_path / "d"), "--db", "bogus://x"], field="db")
    folder = str(tmp_path / "d")
    refused_in_one_line(["serve", "--data-dir", folder, "--log-level", "loud"], field="log-level")
    refused_in_one_line(
        ["up", "--data-dir", str(tmp_path / "d"), "--gpus", "1", "--log-format", "xml"], field="log-format"
    )
    if database_url.startswith("postgresql"):
        dead = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
        refused_in_one_line(["serve", "--data-dir", str(tmp_path / "d"), "--db", dead], field="db")
    refused_in_one_line(
        [
            "agent",
            "--server",
            "http://[::1",
            "--token",
            "x",
            "--data-dir",
            str(tmp_path / "a"),
            "--gpus",
            "1",
        ],
        field="server",
    )


def test_an_agent_against_a_dead_server_waits_for_it(tmp_path):
    """No server yet: the agent retries, backing off, until it is stopped (it does not exit)."""
    url = f"http://127.0.0.1:{free_port()}"
    args = ["agent", "--server", url, "--token", "x", "--data-dir", str(tmp_path), "--gpus", "1"]
    process = subprocess.Popen(
        [sys.executable, "-m", "corral.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3.0)
        assert process.poll() is None, process.stdout.read()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0 and "Traceback" not in output and "again in" in output


# (an environment variable cannot hold a NUL byte)
env_text = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
servers = st.one_of(
    st.text(env_text, max_size=30).filter(lambda s: not s.lower().startswith(("http", "//"))),
    st.builds(lambda rest: "http://127.0.0.1:" + rest, st.text(env_text, max_size=12)),
    st.builds(lambda rest: "http://[" + rest, st.text(env_text, max_size=12)),
)


COMMANDS = st.sampled_from([["jobs"], ["nodes"], ["cancel", "1"], ["quota"]])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(servers, st.text(env_text, max_size=20), COMMANDS)
def test_any_server_and_token_variable_is_used_or_refused_in_one_line(server, token, args):
    result = runner.invoke(app, args, env={"CORRAL_SERVER": server, "CORRAL_TOKEN": token})
    assert result.exit_code == 2 and "Traceback" not in result.output, (server, token, result.output)


class Accepted(Exception):
    """Raised where a command would start serving: its options were all taken."""


words = st.text(env_text, max_size=16)
durations = st.one_of(words, st.builds(lambda n, u: f"{n}{u}", st.floats(-1e6, 1e9), st.sampled_from("smhd")))
loopback_dbs = st.one_of(
    words.filter(lambda s: "://" not in s),
    st.builds(lambda rest: "sqlite:///" + rest, words),
    st.just("bogus://x"),
    st.builds(lambda port: f"postgresql://postgres@127.0.0.1:{port}/x", st.integers(1, 2)),
)
SERVER_OPTIONS = {
    "--port": st.one_of(words, st.integers(-5, 70_000).map(str)),
    "--policy": st.one_of(words, st.sampled_from(["fifo", "las", "priority+elastic:hold=0"])),
    "--fleet": words,
    "--db": loopback_dbs,
    "--broker": st.one_of(words, st.sampled_from(["static", "reactive", "predictive"])),
    "--broker-step": durations,
    "--day": durations,
    "--fence": durations,
    "--log-level": st.one_of(words, st.sampled_from(["debug", "INFO", "warning", "error"])),
    "--log-format": st.one_of(words, st.sampled_from(["text", "json"])),
}
OPTIONS = {
    "up": SERVER_OPTIONS | {"--gpus": st.one_of(words, st.integers(-2, 2000).map(str))},
    "serve": SERVER_OPTIONS
    | {"--executor": st.one_of(words.filter(lambda s: s != "ray"), st.just("agents"))},
    "agent": {
        "--server": servers,
        "--token": words,
        "--gpus": st.one_of(words, st.integers(-2, 2000).map(str)),
        "--name": words,
        "--pool": words,
    },
}
folders = words.filter(lambda s: s and not s.startswith(("/", "~", "-")) and ".." not in s)


@st.composite
def invocations(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    args = [command, "--data-dir", draw(folders)]
    if command != "serve":
        args += ["--gpus", "2"]  # (no GPUs here: options below may override)
    if command == "agent":
        args += ["--server", "http://127.0.0.1:1", "--token", "t"]
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONS[command])), unique=True, max_size=4))
    for option in chosen:
        args += [option, draw(OPTIONS[command][option])]
    return args


def test_any_options_of_serve_agent_and_up_are_taken_or_refused_without_a_traceback(tmp_path, monkeypatch):
    """Generated options of the three long-running commands: each is either taken (the
    command gets as far as serving, which the test stops there) or refused with exit 2 and
    no traceback. Only loopback addresses appear, and folders are made under tmp_path."""
    from corral.cli import live
    from corral.live.agent import Agent

    def accepted(*_, **__):
        raise Accepted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(live, "_serve", accepted)
    monkeypatch.setattr(Agent, "run", accepted)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # (the agent's handlers stay the test's)
    monkeypatch.delenv("CORRAL_DB", raising=False)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(invocations())
    def check(args):
        result = runner.invoke(app, args)
        if isinstance(result.exception, Accepted):
            return
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "Traceback" not in result.output, (args, result.output)

    check()


def test_a_relative_data_dir_is_made_absolute_once_at_start(tmp_path, monkeypatch):
    """docs/live.md runs `corral up --data-dir lab`: the server, its agent and a plain agent
    get the folder as an absolute path, so a job's CORRAL_CHECKPOINT_DIR (under it) is one a
    rank started in its own folder can reach (a relative one left its symlink dangling)."""
    from corral.cli import live
    from corral.live.agent import Agent

    seen: list = []

    def serve(engine, config, data_dir, *_):
        seen.append(data_dir)
        raise Accepted

    def run(agent, **_):
        seen.append(agent.dir)
        raise Accepted

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(live, "_serve", serve)
    monkeypatch.setattr(Agent, "run", run)
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    monkeypatch.delenv("CORRAL_DB", raising=False)
    for args in (
        ["up", "--data-dir", "lab", "--gpus", "1", "--port", str(free_port())],
        ["serve", "--data-dir", "lab", "--port", str(free_port())],
        ["agent", "--data-dir", "node", "--gpus", "1", "--server", "http://127.0.0.1:1", "--token", "t"],
    ):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, Accepted), (args, result.output)
    assert seen == [tmp_path / "lab", tmp_path / "lab", tmp_path / "node" / "attempts"]
    assert Agent("http://127.0.0.1:1", "t", Path("rel"), 1, name="x").dir == tmp_path / "rel" / "attempts"


def test_wait_exits_1_when_a_job_did_not_succeed_and_on_timeout(monkeypatch):
    """`corral wait` (against canned answers): every pending or running job of the caller is
    waited for; exit 0 only if all succeeded, 1 if one failed, and 1 when time runs out."""
    from corral.cli import live

    answers = {"1": ["running", "succeeded"], "2": ["pending", "running", "failed"], "3": ["succeeded"]}

    def call(_s, _t, method, path, **_):
        if path == "/v1/jobs":
            return [{"job_id": job, "state": states[0]} for job, states in answers.items()]
        states = answers[path.rsplit("/", 1)[1]]
        return {"state": states.pop(0) if len(states) > 1 else states[0]}

    monkeypatch.setattr(live, "_call", call)
    monkeypatch.setattr(live, "POLL_S", 0.0)
    failed = runner.invoke(app, ["wait", "--json"])
    assert failed.exit_code == 1 and json.loads(failed.output) == {"1": "succeeded", "2": "failed"}
    answers.update({"4": ["running"]})
    slow = runner.invoke(app, ["wait", "4", "--timeout", "0.1s"])
    assert slow.exit_code == 1 and "job 4: running" in slow.output
    answers.update({"5": ["running", "succeeded"]})
    assert runner.invoke(app, ["wait", "5"]).exit_code == 0
    refused_in_one_line(["wait", "--timeout", "0s"], field="timeout")


def test_logs_follow_a_job_across_its_attempts_and_exit_with_its_code(monkeypatch):
    """`corral logs -f` (against canned answers): the first attempt's output, then, once a
    second attempt appears, the rest of the first and the second's, until the job ends;
    the exit status is the job's exit code (it used to be 0 for a failed job)."""
    from corral.cli import live

    details = [
        {"state": "running", "exit_code": None, "attempts": [{"number": 1}]},
        {"state": "running", "exit_code": None, "attempts": [{"number": 1}, {"number": 2}]},
        {"state": "failed", "exit_code": 3, "attempts": [{"number": 1}, {"number": 2}]},
    ]
    written = {1: "one\nstopped\n", 2: "two\n"}
    reads = {1: ["one\n", "stopped\n"], 2: ["two\n"]}

    def call(_s, _t, method, path, params=None, **_):
        if path.endswith("/logs"):
            return reads[params["attempt"]].pop(0) if reads[params["attempt"]] else ""
        return details.pop(0) if len(details) > 1 else details[0]

    monkeypatch.setattr(live, "_call", call)
    monkeypatch.setattr(live, "POLL_S", 0.0)
    result = CliRunner().invoke(app, ["logs", "7", "-f"])
    assert result.exit_code == 3, result.output
    assert result.stdout == written[1] + written[2]
    assert "(attempt 2 of job 7 follows)" in result.stderr
    assert live.exit_status({"state": "failed", "exit_code": -9}) == 137
    assert live.exit_status({"state": "cancelled", "exit_code": None}) == 1
    assert live.exit_status({"state": "succeeded", "exit_code": 0}) == 0


@pytest.mark.parametrize(
    ("shell", "env"),
    [
        ("bash", {"_CORRAL_COMPLETE": "complete_bash", "COMP_WORDS": "corral subm", "COMP_CWORD": "1"}),
        ("zsh", {"_CORRAL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "corral subm"}),
        (
            "fish",
            {
                "_CORRAL_COMPLETE": "complete_fish",
                "_TYPER_COMPLETE_ARGS": "corral subm",
                "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            },
        ),
    ],
)
def test_the_shell_completes_corral_commands(shell, env):
    """`corral --show-completion SHELL` prints the script to source (it was refused), and the
    completion it drives names the command a prefix begins (as the shell asks it)."""
    script = subprocess.run(
        [sys.executable, "-m", "corral.cli", "--show-completion", shell],
        # (the shell named, as typer reads it where it cannot find the user's from its parents)
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and "corral" in script.stdout, script.stderr
    asked = subprocess.run(
        [sys.executable, "-m", "corral.cli"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "submit" in asked.stdout, (asked.stdout, asked.stderr)


def test_jobs_show_when_each_was_submitted_started_and_ended(monkeypatch):
    """`corral jobs` (against a canned answer): submitted, started and ended in local time,
    the wait before the first start and the run (the old "waited or ran" column said one or
    the other); --queue goes to the server."""
    import time as clock

    from corral.cli import live

    asked: list = []
    rows = [
        {
            "job_id": "1", "name": "", "team": "team-a", "queue": "team-a", "gpus": 2, "held_gpus": None,
            "min_gpus": None, "max_gpus": None, "state": "succeeded", "exit_code": 0,
            "submit_s": 1_800_000_000.0, "first_start_s": 1_800_000_090.0, "end_s": 1_800_000_390.0,
            "ran_s": 300.0, "waited_s": None,
        }
    ]  # fmt: skip

    def call(_s, _t, method, path, params=None, **_):
        asked.append(params)
        return rows

    monkeypatch.setattr(live, "_call", call)
    result = runner.invoke(app, ["jobs", "--queue", "team-a"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert asked == [{"queue": "team-a"}]
    for t in (1_800_000_000.0, 1_800_000_090.0, 1_800_000_390.0):
        assert clock.strftime("%Y-%m-%d %H:%M:%S", clock.localtime(t)) in result.output
    line = next(line for line in result.output.splitlines() if "succeeded" in line)
    assert "[" not in line and line.rstrip(" │").endswith("1.5m │ 5.0m"), line


def test_submit_sends_the_folder_it_is_run_in_or_the_one_chdir_names(monkeypatch, tmp_path):
    from corral.cli import live

    sent: list = []
    monkeypatch.setattr(
        live, "_call", lambda _s, _t, method, path, json=None, **_: sent.append(json) or {"job_id": "1"}
    )
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["submit", "--gpus", "1", "--", "pwd"]).exit_code == 0
    assert runner.invoke(app, ["submit", "--gpus", "1", "--chdir", "sub", "--", "pwd"]).exit_code == 0
    assert [body["workdir"] for body in sent] == [str(tmp_path), str(tmp_path / "sub")]
