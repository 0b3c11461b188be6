"""infra/: the manifests parse and run our entry points with the engine's options."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ray_jobs.scan import add_engine_arguments

INFRA = Path(__file__).resolve().parents[1] / "infra"


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob-scan.yaml", "cluster-launcher/aws-gpu.yaml"])
def test_manifests_parse_and_pin_the_ray_version_we_test(name):
    import ray

    doc = yaml.safe_load((INFRA / name).read_text())
    text = (INFRA / name).read_text()
    assert doc and ("rayVersion" not in text or f'"{ray.__version__}"' in text)
    assert "zoo-audit:0.1.0" in text and "RAY_AUTH_MODE" in text


def test_the_rayjob_entry_point_uses_only_options_the_scan_entry_point_has():
    import argparse
    import shlex

    entry = yaml.safe_load((INFRA / "kuberay" / "rayjob-scan.yaml").read_text())["spec"]["entrypoint"]
    argv = shlex.split(entry)
    assert argv[:3] == ["python", "-m", "ray_jobs.scan"]
    ap = argparse.ArgumentParser(exit_on_error=False)
    ap.add_argument("source")
    ap.add_argument("--out", required=True)
    add_engine_arguments(ap)
    args = ap.parse_args(argv[3:])
    assert args.gpus_per_worker == 0.25 and args.out == "s3://zoo/results/"
