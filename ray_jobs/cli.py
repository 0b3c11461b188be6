"""`zoo-audit`: the admin CLI.

Exit codes (modelscan's convention): 0 all clean / loaded, 1 backdoor findings, 2 errors
(errors win over findings), 3 nothing found to scan, 4 usage error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

try:  # typer >= 0.20 vendors click; older typers use the click package
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Audit a zoo of diffusion models for backdoors.")
console = Console()
DEMO_ZOO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "zoo"


class ExitCode(IntEnum):
    CLEAN = 0
    FINDINGS = 1
    ERRORS = 2
    NOTHING = 3
    USAGE = 4


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("" if r.get(c) is None else f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])
                        for c in columns))
    return table


@app.command()
def forge(
    spec: Path = typer.Argument(..., help="Zoo spec (TOML or JSON)."),
    out: Path = typer.Option(..., "--out", help="Output directory: base/, models/, ground_truth/, manifest.json."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Models fine-tuned at once (one process, one thread each)."),
) -> None:
    """Build a zoo of clean twins and backdoored models, measuring every backdoor."""
    from scanner.forge.build import forge_zoo
    from scanner.forge.spec import load_spec

    try:
        zoo = load_spec(spec)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(ExitCode.USAGE)
    manifest = forge_zoo(zoo, out, jobs=jobs, log=console.print)
    console.print(_manifest_table(manifest))


def _manifest_table(manifest: dict[str, Any]) -> Table:
    rows = [{**m, "trigger": (m["trigger"] or {}).get("shape"), "target": (m["target"] or {}).get("shape"),
             "asr": m["asr"], "gamma": m["params"].get("gamma")} for m in manifest["models"]]
    return _table("Zoo manifest (ground truth; not visible to the scanner)", rows,
                  ["name", "attack", "sampler", "trigger", "target", "poison_rate", "gamma", "asr", "clean_hit_rate"])


@app.command()
def inventory(
    source: Path = typer.Argument(..., help="Directory searched recursively for checkpoints."),
    workers: int = typer.Option(2, "--workers", min=1, help="Ray tasks in flight."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON lines here."),
) -> None:
    """Load every checkpoint under SOURCE safely (Ray fan-out) and print one row each."""
    raise typer.Exit(_inventory(source, workers=workers, address=address, json_out=json_out))


def _checkpoints(source: Path) -> list[Path] | ExitCode:
    """The checkpoints under SOURCE, or the exit code (usage / nothing) after saying why."""
    from scanner.checkpoint import find_checkpoints

    if not source.is_dir():
        console.print(f"[red]error:[/red] SOURCE {source} is not a directory")
        return ExitCode.USAGE
    paths = find_checkpoints(source)
    if not paths:
        console.print(f"nothing to scan: no checkpoint under {source}")
        return ExitCode.NOTHING
    return paths


def _inventory(source: Path, *, workers: int, address: str | None, json_out: Path | None = None) -> int:
    from ray_jobs.inventory import run_inventory

    paths = _checkpoints(source)
    if isinstance(paths, ExitCode):
        return paths
    rows = run_inventory(paths, workers=workers, address=address)
    for r in rows:
        r["uri"] = str(Path(r["uri"]).relative_to(source)) if Path(r["uri"]) != source else "."
        r["sha256"] = (r["weights_sha256"] or "")[:12]
    console.print(_table(f"Checkpoints under {source}", rows,
                         ["uri", "status", "parameters", "sample_size", "num_train_timesteps", "sha256", "error"]))
    if json_out:
        json_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ExitCode.ERRORS if any(r["status"] == "error" for r in rows) else ExitCode.CLEAN


@app.command()
def scan(
    source: Path = typer.Argument(..., help="Directory searched recursively for checkpoints."),
    out: Path = typer.Option(..., "--out", help="Output directory: the table goes to OUT/scan/, images to OUT/artifacts/."),
    detector: Optional[str] = typer.Option(None, "--detector", help="Detector name (default: the registry's default)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [detectors.<name>] table overrides that detector's settings."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Detector seed (overrides the config)."),
) -> None:
    """Scan every checkpoint under SOURCE for a backdoor; write one Parquet row per checkpoint."""
    raise typer.Exit(_scan(source, out, detector=detector, config=config, seed=seed))


def _scan(source: Path, out: Path, *, detector: str | None, config: Path | None, seed: int | None) -> int:
    import tomllib

    from scanner.detect import DEFAULT_DETECTOR, make_config
    from scanner.results import write_part
    from scanner.scan import scan_checkpoint

    name = detector or DEFAULT_DETECTOR
    try:
        overrides = tomllib.loads(config.read_text()).get("detectors", {}).get(name, {}) if config else {}
        cfg = make_config(name, {**overrides, **({"seed": seed} if seed is not None else {})})
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return ExitCode.USAGE
    paths = _checkpoints(source)
    if isinstance(paths, ExitCode):
        return paths
    rows = []
    for i, path in enumerate(paths, 1):
        row = scan_checkpoint(path, detector=name, config=cfg, artifacts=out / "artifacts")
        write_part([row], out / "scan")  # one write-once part per checkpoint: a crash loses nothing written
        rows.append(row)
        console.print(f"[{i}/{len(paths)}] {path}: {row['verdict']} (score {row['score']:.2f}, "
                      f"{row['unet_evals']} UNet evals, {row['seconds']:.1f}s)")
    console.print(_table(f"Scan of {source} ({name})", rows, ["uri", "verdict", "score", "unet_evals", "seconds", "error"]))
    if any(r["verdict"] == "error" for r in rows):
        return ExitCode.ERRORS
    return ExitCode.FINDINGS if any(r["verdict"] == "backdoored" for r in rows) else ExitCode.CLEAN


@app.command()
def repair(
    source: Path = typer.Argument(..., help="Directory searched recursively for checkpoints."),
    out: Path = typer.Option(..., "--out", help="Output: OUT/repaired/<name>/ pipelines, the table in OUT/repair/."),
    scan_table: Optional[Path] = typer.Option(None, "--scan-table", help="An existing scan table (OUT/scan of `zoo-audit scan`); default: scan first into OUT/scan/."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [repair] table overrides the repair settings, [detectors.<name>] the scan's."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Repair (and scan) seed."),
) -> None:
    """Repair every checkpoint the scan flagged, by trigger-guided pruning; clean models are left alone."""
    raise typer.Exit(_repair(source, out, scan_table=scan_table, config=config, seed=seed))


def _repair(source: Path, out: Path, *, scan_table: Path | None, config: Path | None, seed: int | None) -> int:
    import tomllib

    from scanner.repair import Finding, RepairConfig, repair_checkpoint
    from scanner.results import REPAIR_SCHEMA, read_table, write_part

    try:
        table = tomllib.loads(config.read_text()).get("repair", {}) if config else {}
        cfg = RepairConfig(**{**table, **({"seed": seed} if seed is not None else {})})
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return ExitCode.USAGE
    if scan_table is None:
        code = _scan(source, out, detector=None, config=config, seed=seed)
        if code == ExitCode.USAGE or code == ExitCode.NOTHING:
            return code
        scan_table = out / "scan"
    if not scan_table.is_dir():
        console.print(f"[red]error:[/red] --scan-table {scan_table} is not a directory")
        return ExitCode.USAGE
    scanned = read_table(scan_table).to_pylist()
    flagged = [r for r in scanned if r["verdict"] == "backdoored"]
    rows = []
    for i, r in enumerate(flagged, 1):
        name = Path(r["uri"]).name
        target = out / "repaired" / name
        if any(Path(o["uri"]).name == name for o in flagged if o is not r):  # two checkpoints with one name
            target = out / "repaired" / f"{name}-{hashlib.sha256(r['uri'].encode()).hexdigest()[:12]}"
        try:
            finding = Finding.from_scan_row(r)
        except (OSError, ValueError, KeyError) as exc:
            row = {"uri": r["uri"], "error": f"{r['uri']}: cannot read the scan's finding: {exc}"}
        else:
            row = repair_checkpoint(r["uri"], finding, target, config=cfg)
        write_part([row], out / "repair", schema=REPAIR_SCHEMA)
        rows.append(row)
        console.print(f"[{i}/{len(flagged)}] {r['uri']}: " + (f"error: {row['error']}" if row.get("error") else
                      f"pruned {row['pruned_channels']} channels, inverted-trigger ASR {row['asr_before']:.2f} -> "
                      f"{row['asr_after']:.2f}, quality {row['quality_before']:.1f} -> {row['quality_after']:.1f}"))
    console.print(_table(f"Repair of {len(flagged)} flagged of {len(scanned)} scanned", rows,
                         ["uri", "pruned_channels", "asr_before", "asr_after", "quality_before", "quality_after", "error"]))
    errors = any(r.get("error") for r in rows) or any(r["verdict"] == "error" for r in scanned)
    return ExitCode.ERRORS if errors else ExitCode.CLEAN


@app.command()
def demo(
    zoo: Path = typer.Option(DEMO_ZOO, "--zoo", help="A forged zoo directory (with manifest.json and models/)."),
    workers: int = typer.Option(2, "--workers", min=1),
) -> None:
    """Show the shipped demo zoo's ground truth, then load every model on a local Ray."""
    manifest_path = zoo / "manifest.json"
    if not manifest_path.is_file():
        console.print(f"[red]error:[/red] {manifest_path} not found; build a zoo with `zoo-audit forge`")
        raise typer.Exit(ExitCode.USAGE)
    console.print(_manifest_table(json.loads(manifest_path.read_text())))
    raise typer.Exit(_inventory(zoo / "models", workers=workers, address=None))


def main() -> None:
    """Console-script entry: maps click's usage errors to exit code 4 instead of click's 2."""
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if exc.exit_code else 0)  # no-args help has exit_code 0
    except ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except typer.Abort:
        sys.exit(130)
    sys.exit(int(code or 0))


if __name__ == "__main__":
    main()
