"""The batch engine on real parts: a moto S3 server over HTTP, a local Ray, a two-node Ray, SIGKILLs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_jobs.cli import app
from scanner.results import REPAIR_SCHEMA, SCAN_SCHEMA, TableSink
from scanner.store import S3Options
from tests.conftest import ROOT, free_port
from tests.test_loading import WEIGHTS

pytestmark = pytest.mark.slow

# A cheap detector setting: the engine is under test here, not detection (tests/test_scan.py does that).
CHEAP = "[detectors.overresponse]\niters = 20\nbatch = 8\neval_batch = 8\ntarget_batch = 2\ntarget_steps = 2\n"


def cheap_config(tmp_path: Path) -> list[str]:
    (tmp_path / "cheap.toml").write_text(CHEAP)
    return ["--detector", "overresponse", "--config", str(tmp_path / "cheap.toml")]


def s3_rows(bucket: str, endpoint: str, prefix: str = "results/scan") -> list[dict]:
    return TableSink(f"s3://{bucket}/{prefix}", schema=SCAN_SCHEMA, s3=S3Options(endpoint_url=endpoint)).read().to_pylist()


def s3_keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_s3_zoo_scan_one_row_each_rerun_adds_none_and_the_report_works_offline(ray_local, s3_zoo, fixture_manifest,
                                                                                 tmp_path):
    bucket, endpoint, client = s3_zoo
    args = ["scan", f"s3://{bucket}/models/", "--endpoint-url", endpoint, "--out", f"s3://{bucket}/results/",
            "--workers", "2"]
    first = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 1, first.output  # the default detector, findings: exit 1
    rows = s3_rows(bucket, endpoint)
    truth = {m["name"]: m["backdoored"] for m in fixture_manifest["models"]}
    assert sorted(r["uri"] for r in rows) == sorted(f"s3://{bucket}/models/{n}" for n in truth)
    for r in rows:
        name = r["uri"].rsplit("/", 1)[-1]
        assert (r["verdict"] == "backdoored") == truth[name], (name, r["verdict"], r["score"])
        assert r["error"] is None and r["attempts"] == 1 and r["node"] and len(r["content_sha256"]) == 64
        assert r["trigger_path"].startswith(f"s3://{bucket}/results/artifacts/") and r["content_bytes"] > 0
    parts = s3_keys(client, bucket, "results/scan/")
    assert len(parts) == 6 and all(p.endswith(".parquet") for p in parts)

    again = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 1 and "6 already in" in again.output, again.output
    assert s3_keys(client, bucket, "results/scan/") == parts and len(s3_rows(bucket, endpoint)) == 6

    html, sarif = tmp_path / "report", tmp_path / "scan.sarif"
    shown = CliRunner().invoke(app, ["report", f"s3://{bucket}/results/", "--endpoint-url", endpoint,
                                     "--html", str(html), "--sarif", str(sarif)], env={"COLUMNS": "200"})
    assert shown.exit_code == 1, shown.output
    page = (html / "index.html").read_text()
    flagged = [n for n, bad in truth.items() if bad]
    assert page.count("<div class=card>") == len(flagged) and all(f"models/{n}</b>" in page for n in flagged)
    assert page.count('src="data:image/png;base64,') == 3 * len(flagged)  # trigger, target, samples each
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page  # nothing fetched
    schema_page = (html / "schema.html").read_text()
    assert all(f"<code>{f.name}</code>" in schema_page for f in [*SCAN_SCHEMA, *REPAIR_SCHEMA])
    log = json.loads(sarif.read_text())
    assert log["version"] == "2.1.0"
    found = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert found == {f"s3://{bucket}/models/{n}" for n in flagged}


def test_driver_sigkilled_midway_then_rerun_ends_with_exactly_one_row_per_checkpoint(s3_zoo, tmp_path):
    bucket, endpoint, client = s3_zoo
    cli = [sys.executable, "-c", "from ray_jobs.cli import main; main()"]  # the installed `zoo-audit` script's code
    args = ["scan", f"s3://{bucket}/models/", "--endpoint-url", endpoint, "--out", f"s3://{bucket}/results/",
            "--workers", "2", *cheap_config(tmp_path)]
    driver = subprocess.Popen([*cli, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not s3_keys(client, bucket, "results/scan/"):
        assert driver.poll() is None and time.monotonic() < deadline, "the driver wrote nothing"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = len(s3_keys(client, bucket, "results/scan/"))
    assert 1 <= written < 6  # killed mid-way

    env = {**os.environ, "COLUMNS": "250"}
    rerun = subprocess.run([*cli, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert rerun.returncode in (0, 1), rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert f"6 checkpoints, {written} already in s3://{bucket}/results/, {6 - written} scanned now" in rerun.stdout
    rows = s3_rows(bucket, endpoint)
    assert len(rows) == 6 and len({r["uri"] for r in rows}) == 6 and len({r["row_key"] for r in rows}) == 6
    assert all(r["error"] is None for r in rows)
    final = subprocess.run([*cli, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert "6 checkpoints, 6 already in" in final.stdout and len(s3_keys(client, bucket, "results/scan/")) == 6


def _job_workers_running() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::JobWorker.run"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_a_busy_worker_during(cmd: list[str]) -> str:
    """Run the driver `cmd`, SIGKILL one worker while it runs a task, return the driver's stdout."""
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 240
    while not (busy := _job_workers_running()):
        assert driver.poll() is None and time.monotonic() < deadline, "no worker ever ran a task"
        time.sleep(0.05)
    os.kill(busy[0], signal.SIGKILL)
    stdout, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, stdout
    return stdout


@pytest.mark.parametrize("max_attempts", [3, 1])
def test_a_worker_sigkilled_midway_is_retried_on_a_new_actor_up_to_max_attempts(max_attempts, fixture_zoo, tmp_path):
    out = tmp_path / "out"
    _kill_a_busy_worker_during([sys.executable, "-m", "ray_jobs.scan", str(fixture_zoo / "models"), "--out", str(out),
                                "--workers", "2", "--max-attempts", str(max_attempts), *cheap_config(tmp_path)])
    rows = TableSink(out / "scan", schema=SCAN_SCHEMA).read().to_pylist()
    assert len(rows) == 6 and len({r["uri"] for r in rows}) == 6
    if max_attempts > 1:  # the killed worker's checkpoint was redone on a new actor, not lost
        assert all(r["error"] is None for r in rows)
        assert sorted(r["attempts"] for r in rows) == [1, 1, 1, 1, 1, 2]
    else:  # no retry left: one error row naming the checkpoint, and the batch went on
        lost = [r for r in rows if r["error"]]
        assert len(lost) == 1 and lost[0]["error_category"] == "worker_lost" and lost[0]["verdict"] == "error"
        assert lost[0]["uri"] in lost[0]["error"] and "died on each of 1 attempts" in lost[0]["error"]
        assert all(r["attempts"] == 1 for r in rows)


def test_a_slow_checkpoint_gets_a_timeout_row_and_the_batch_goes_on(ray_local, fixture_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(fixture_zoo / "models" / "clean-twin-a", zoo / "a-slow")  # the default detector: ~15 s
    shutil.copytree(fixture_zoo / "models" / "clean-twin-a", zoo / "b-corrupt")
    (zoo / "b-corrupt" / WEIGHTS).write_bytes(b"\0" * 100)
    result = CliRunner().invoke(app, ["scan", str(zoo), "--out", str(tmp_path / "out"), "--workers", "1",
                                      "--timeout", "3"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in TableSink(tmp_path / "out" / "scan", schema=SCAN_SCHEMA).read().to_pylist()}
    assert rows["a-slow"]["verdict"] == "timeout" and rows["a-slow"]["error_category"] == "timeout"
    assert "not finished after 3 s" in rows["a-slow"]["error"] and str(zoo / "a-slow") in rows["a-slow"]["error"]
    assert rows["b-corrupt"]["verdict"] == "error" and rows["b-corrupt"]["error_category"] == "corrupt"


@pytest.fixture(scope="module")
def two_node_ray(tmp_path_factory):
    """infra/local/ray-two-node.sh: a head and a worker node on this machine, 1 CPU each, token auth on."""
    token = tmp_path_factory.mktemp("ray") / "token"
    env = {**os.environ, "RAY_PORT": str(free_port()), "RAY_DASHBOARD_PORT": str(free_port()),
           "RAY_AUTH_TOKEN_PATH": str(token), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = str(ROOT / "infra" / "local" / "ray-two-node.sh")
    started = subprocess.run(["bash", script, "start"], capture_output=True, text=True, env=env, timeout=180)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        info = dict(line.split("=", 1) for line in started.stdout.split())
        yield info["RAY_ADDRESS"], info["DASHBOARD"], {**env, "RAY_AUTH_MODE": "token"}
    finally:
        subprocess.run(["bash", script, "stop"], env=env, timeout=60)


def test_two_node_cluster_spreads_the_work_across_nodes(two_node_ray, fixture_zoo, tmp_path):
    address, _, env = two_node_ray
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", "from ray_jobs.cli import main; main()", "scan",
                           str(fixture_zoo / "models"), "--out", str(out), "--address", address, "--workers", "2",
                           *cheap_config(tmp_path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    rows = TableSink(out / "scan", schema=SCAN_SCHEMA).read().to_pylist()
    assert len(rows) == 6 and len({r["node"] for r in rows}) == 2  # one worker per 1-CPU node


def test_ray_job_submit_and_zoo_audit_submit_run_the_entry_point_and_write_the_table(two_node_ray, fixture_zoo,
                                                                                       tmp_path):
    _, dashboard, env = two_node_ray
    excludes = json.dumps({"excludes": [".venv/", ".git/", "tests/fixtures/", "benchmarks/zoo/", "benchmarks/holdout/"]})
    job_args = [str(fixture_zoo / "models"), "--workers", "2", *cheap_config(tmp_path)]
    ray_bin = str(Path(sys.executable).parent / "ray")
    deadline = time.monotonic() + 90
    while True:  # a fresh cluster refuses jobs ("No available agent") until a node's job agent is up
        submitted = subprocess.run([ray_bin, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT),
                                    "--runtime-env-json", excludes, "--", "python", "-m", "ray_jobs.scan", *job_args,
                                    "--out", str(tmp_path / "a")], capture_output=True, text=True, env=env, timeout=300)
        if "No available agent" not in submitted.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert submitted.returncode == 0 and "succeeded" in submitted.stdout + submitted.stderr, submitted.stderr[-3000:]
    assert TableSink(tmp_path / "a" / "scan", schema=SCAN_SCHEMA).read().num_rows == 6

    sdk = subprocess.run([sys.executable, "-c", "from ray_jobs.cli import main; main()", "submit", "scan",
                          "--address", dashboard, "--working-dir", str(ROOT), *job_args, "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert sdk.returncode == 0 and "SUCCEEDED" in sdk.stdout, sdk.stdout[-3000:] + sdk.stderr[-2000:]
    assert TableSink(tmp_path / "b" / "scan", schema=SCAN_SCHEMA).read().num_rows == 6
