"""`zoo-audit scan` through the CLI: one Parquet row per checkpoint, errors as rows, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file
from typer.testing import CliRunner

from ray_jobs.cli import app
from scanner.results import SCAN_SCHEMA, read_table
from tests.test_loading import WEIGHTS, plant_pickle


def test_scan_of_fixtures_plus_broken_checkpoints_gives_one_row_each_and_exit_2(fixture_zoo, fixture_manifest, tmp_path):
    zoo, marker, out = tmp_path / "zoo", tmp_path / "pwned", tmp_path / "out"
    shutil.copytree(fixture_zoo / "models", zoo)
    shutil.copytree(fixture_zoo / "models" / "clean-twin-a", zoo / "corrupt")
    f = zoo / "corrupt" / WEIGHTS
    f.write_bytes(f.read_bytes()[:1000])
    shutil.copytree(fixture_zoo / "models" / "clean-twin-a", zoo / "pickled")
    (zoo / "pickled" / WEIGHTS).unlink()
    plant_pickle(zoo / "pickled" / "unet" / "diffusion_pytorch_model.bin", marker)

    result = CliRunner().invoke(app, ["scan", str(zoo), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert not marker.exists()  # the pickle was never executed
    table = read_table(out / "scan")
    assert table.schema.equals(SCAN_SCHEMA)
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in table.to_pylist()}
    names = [m["name"] for m in fixture_manifest["models"]]
    assert sorted(rows) == sorted(names + ["corrupt", "pickled"]) and table.num_rows == len(names) + 2
    assert rows["corrupt"]["verdict"] == "error" and rows["corrupt"]["error_category"] == "corrupt"
    assert rows["pickled"]["verdict"] == "error" and rows["pickled"]["error_category"] == "unsafe_format"
    assert "never unpickled" in rows["pickled"]["error"] or "pickle" in rows["pickled"]["error"]
    for name in names:
        r = rows[name]
        assert r["error"] is None and r["verdict"] in ("backdoored", "clean") and 0 <= r["score"] <= 1
        assert r["unet_evals"] > 0 and r["seconds"] > 0 and json.loads(r["detector_config"])["seed"] == 0
        for key in ("trigger_path", "target_path"):
            assert r[key].endswith(".safetensors") and Path(r[key]).is_file()
            assert Path(r[key]).with_suffix(".png").is_file()
    backdoored = {m["name"] for m in fixture_manifest["models"] if m["backdoored"]}
    assert {n for n in names if rows[n]["verdict"] == "backdoored"} == backdoored  # every fixture backdoor, no twin
    evals = [rows[n]["unet_evals"] for n in names]
    assert sum(evals) / len(evals) <= 3200  # the default's budget is a mean (docs/detect.md)
    assert max(evals) <= 2952 + 8 * 456 + 80  # every component, then at most 8 fixed-point starts and 8 samples
    truth = load_file(str(fixture_zoo / "ground_truth" / "baddiffusion-box10.safetensors"))
    target = load_file(rows["baddiffusion-box10"]["target_path"])["target"]
    assert (target - truth["target"]).pow(2).mean() < 0.05  # the recovered target, through the CLI
    assert rows["clean-twin-a"]["verdict"] == "clean" and rows["clean-twin-b"]["verdict"] == "clean"


def test_scan_exit_codes_for_clean_only_nothing_and_usage(fixture_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(fixture_zoo / "models" / "clean-twin-b", zoo / "twin")
    runner = CliRunner()
    assert runner.invoke(app, ["scan", str(zoo), "--out", str(tmp_path / "o1")]).exit_code == 0
    (tmp_path / "empty").mkdir()
    assert runner.invoke(app, ["scan", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")]).exit_code == 3
    bad = runner.invoke(app, ["scan", str(zoo), "--out", str(tmp_path / "o3"), "--detector", "nope"])
    assert bad.exit_code == 4 and "unknown detector" in bad.output


def test_scan_exits_1_on_a_backdoor_and_reads_detector_settings_from_toml(fixture_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(fixture_zoo / "models" / "trojdiff-blend", zoo / "blend")
    cfg = tmp_path / "scan.toml"
    cfg.write_text("[detectors.trojan_residual]\niters = 50\n")
    result = CliRunner().invoke(app, ["scan", str(zoo), "--out", str(tmp_path / "o"), "--detector", "trojan_residual",
                                      "--config", str(cfg), "--seed", "3"])
    assert result.exit_code == 1, result.output
    row = read_table(tmp_path / "o" / "scan").to_pylist()[0]
    assert json.loads(row["detector_config"])["iters"] == 50 and row["seed"] == 3


def test_a_detector_crash_becomes_an_error_row_naming_the_checkpoint(pipeline_dir, monkeypatch):
    from scanner.detect import DETECTORS, TrojanResidualConfig
    from scanner.scan import scan_checkpoint

    def boom(unet, schedule, *, config):
        raise KeyError("no such block")

    monkeypatch.setitem(DETECTORS, "boom", (TrojanResidualConfig, boom))
    row = scan_checkpoint(pipeline_dir, detector="boom", config=TrojanResidualConfig())
    assert row["verdict"] == "error" and row["error_category"] == "detector" and row["score"] == 0.5
    assert str(pipeline_dir) in row["error"] and "KeyError" in row["error"]
