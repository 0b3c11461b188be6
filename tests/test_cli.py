"""The CLI through the CLI: exit codes, one row per checkpoint, the demo, all on a real local Ray."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ray_jobs.cli import app
from tests.test_loading import WEIGHTS, plant_pickle


def run_console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script's code path (`main`), which maps usage errors to exit 4."""
    return subprocess.run([sys.executable, "-c", "from ray_jobs.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def mixed_zoo(pipeline_template, tmp_path) -> tuple[Path, Path]:
    zoo, marker = tmp_path / "zoo", tmp_path / "pwned"
    for name in ("good-a", "good-b", "corrupt", "pickled"):
        shutil.copytree(pipeline_template, zoo / name)
    f = zoo / "corrupt" / WEIGHTS
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    (zoo / "pickled" / WEIGHTS).unlink()
    plant_pickle(zoo / "pickled" / "unet" / "diffusion_pytorch_model.bin", marker)
    return zoo, marker


def test_inventory_gives_one_row_per_checkpoint_and_exit_2_on_errors(ray_local, mixed_zoo, tmp_path):
    zoo, marker = mixed_zoo
    rows_path = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["inventory", str(zoo), "--workers", "2", "--json", str(rows_path)])
    assert result.exit_code == 2, result.output
    rows = {r["uri"]: r for r in map(json.loads, rows_path.read_text().splitlines())}
    assert sorted(rows) == ["corrupt", "good-a", "good-b", "pickled"]
    assert [rows[n]["status"] for n in ("good-a", "good-b")] == ["ok", "ok"]
    assert rows["corrupt"]["error_category"] == "corrupt" and "truncated" in rows["corrupt"]["error"]
    assert rows["pickled"]["error_category"] == "unsafe_format"
    assert not marker.exists()


def test_inventory_of_good_models_exits_0(ray_local, pipeline_template, tmp_path):
    shutil.copytree(pipeline_template, tmp_path / "zoo" / "m")
    result = CliRunner().invoke(app, ["inventory", str(tmp_path / "zoo")])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_demo_shows_the_manifest_and_loads_every_model(ray_local, fixture_zoo, fixture_manifest):
    result = CliRunner().invoke(app, ["demo", "--zoo", str(fixture_zoo)], env={"COLUMNS": "200"})  # no folding
    assert result.exit_code == 0, result.output
    for m in fixture_manifest["models"]:
        assert m["name"] in result.output
    assert result.output.count("│ ok") == len(fixture_manifest["models"])


def test_console_exit_codes_for_usage_and_nothing_to_scan(tmp_path):
    root = Path(__file__).parents[1]
    assert run_console("inventory", str(tmp_path / "absent"), cwd=root).returncode == 4
    assert run_console("inventory", cwd=root).returncode == 4  # missing argument
    assert run_console("inventory", "--workers", "0", str(tmp_path), cwd=root).returncode == 4
    (tmp_path / "empty").mkdir()
    done = run_console("inventory", str(tmp_path / "empty"), cwd=root)
    assert done.returncode == 3 and "nothing to scan" in done.stdout
