"""`zoo-audit`: the admin CLI.

Exit codes (modelscan's convention): 0 all clean / loaded, 1 backdoor findings, 2 errors
(errors win over findings), 3 nothing found to scan, 4 usage error.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, Optional

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
    jobs: int = typer.Option(1, "--jobs", min=1, help="Models fine-tuned at once; above 1, one process and one torch thread each (1: this process, torch's threads)."),
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


Workers = Annotated[int, typer.Option("--workers", min=1, help="Ray actors, one checkpoint in flight each.")]
CpusPerWorker = Annotated[float, typer.Option("--cpus-per-worker", min=0.01, help="CPUs (and torch threads) per actor.")]
GpusPerWorker = Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="GPUs per actor, fractional (0.25 packs four on a GPU); 0 = CPU.")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds per checkpoint before it gets a timeout row.")]
MaxAttempts = Annotated[int, typer.Option("--max-attempts", min=1, help="Workers a checkpoint may outlive before an error row.")]
EndpointUrl = Annotated[Optional[str], typer.Option("--endpoint-url", help="S3 endpoint for non-AWS stores (MinIO, moto); default AWS_ENDPOINT_URL.")]
Address = Annotated[Optional[str], typer.Option("--address", help="Ray cluster address; default: start a local Ray.")]
CacheDir = Annotated[str, typer.Option("--cache-dir", help="Where workers download s3 checkpoints (per node).")]
Source = Annotated[str, typer.Argument(help="A directory, file:// or s3://bucket/prefix, searched recursively for checkpoints.")]
Out = Annotated[str, typer.Option("--out", help="A directory or s3:// prefix for the tables (OUT/<job>/) and artifacts.")]


def _engine(workers: int, cpus_per_worker: float, gpus_per_worker: float, timeout: float, max_attempts: int,
            cache_dir: str, endpoint_url: str | None):
    from ray_jobs.engine import EngineConfig
    from scanner.store import S3Options

    return EngineConfig(workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                        timeout_s=timeout, max_attempts=max_attempts, cache_dir=cache_dir,
                        s3=S3Options(endpoint_url=endpoint_url))


def _toml(config: Path | None) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(config.read_text()) if config else {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {config}: {exc}") from None


@app.command()
def scan(
    source: Source,
    out: Out,
    detector: Optional[str] = typer.Option(None, "--detector", help="Detector name (default: the registry's default)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [detectors.<name>] table overrides that detector's settings."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Detector seed (overrides the config)."),
    workers: Workers = 2, cpus_per_worker: CpusPerWorker = 1.0, gpus_per_worker: GpusPerWorker = 0.0,
    timeout: Timeout = 3600.0, max_attempts: MaxAttempts = 3, endpoint_url: EndpointUrl = None,
    address: Address = None, cache_dir: CacheDir = "/tmp/zoo-audit-cache",
) -> None:
    """Scan every checkpoint under SOURCE for a backdoor on Ray; one Parquet row per checkpoint in OUT/scan/.

    A rerun skips every checkpoint already in the table (same content, detector config and version).
    """
    raise typer.Exit(_scan(source, out, detector=detector, config=config, seed=seed,
                           engine=(workers, cpus_per_worker, gpus_per_worker, timeout, max_attempts, cache_dir, endpoint_url),
                           address=address))


def _scan(source: str, out: str, *, detector: str | None, config: Path | None, seed: int | None, engine: tuple,
          address: str | None) -> int:
    from ray_jobs.progress import BatchProgress
    from ray_jobs.scan import ScanRequest, exit_code, run_scan
    from scanner.detect import DEFAULT_DETECTOR
    from scanner.store import S3Options

    try:
        eng = _engine(*engine)
        overrides = {**_toml(config).get("detectors", {}).get(detector or DEFAULT_DETECTOR, {}),
                     **({"seed": seed} if seed is not None else {})}
        request = ScanRequest(source=source, out=out, detector=detector, overrides=overrides,
                              s3=S3Options(endpoint_url=engine[-1]))
        with BatchProgress(console, what="scan", flagged=lambda r: r["verdict"] == "backdoored") as bar:
            rows, result = run_scan(request, engine=eng, address=address, on_start=bar.on_start, on_row=bar.on_row)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return ExitCode.USAGE
    if not rows:
        console.print(f"nothing to scan: no checkpoint under {source}")
        return ExitCode.NOTHING
    console.print(_table(f"Scan of {source}", rows, ["uri", "verdict", "score", "unet_evals", "seconds", "error"]))
    console.print(f"{result.total} checkpoints, {result.skipped} already in {out}, {len(result.rows)} scanned now",
                  soft_wrap=True)
    return exit_code(rows)


@app.command()
def repair(
    source: Source,
    out: Out,
    scan_table: Optional[str] = typer.Option(None, "--scan-table", help="An existing scan table (OUT/scan of `zoo-audit scan`); default: scan first into OUT/scan/."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [repair] table overrides the repair settings, [detectors.<name>] the scan's."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Repair (and scan) seed."),
    workers: Workers = 2, cpus_per_worker: CpusPerWorker = 1.0, gpus_per_worker: GpusPerWorker = 0.0,
    timeout: Timeout = 3600.0, max_attempts: MaxAttempts = 3, endpoint_url: EndpointUrl = None,
    address: Address = None, cache_dir: CacheDir = "/tmp/zoo-audit-cache",
) -> None:
    """Repair every checkpoint the scan flagged, by trigger-guided pruning, on Ray; clean models are left alone."""
    raise typer.Exit(_repair(source, out, scan_table=scan_table, config=config, seed=seed, address=address,
                             engine=(workers, cpus_per_worker, gpus_per_worker, timeout, max_attempts, cache_dir, endpoint_url)))


def _repair(source: str, out: str, *, scan_table: str | None, config: Path | None, seed: int | None, engine: tuple,
            address: str | None) -> int:
    from ray_jobs.progress import BatchProgress
    from ray_jobs.repair import RepairRequest, run_repair
    from ray_jobs.scan import ScanRequest
    from scanner.detect import DEFAULT_DETECTOR
    from scanner.repair import RepairConfig
    from scanner.results import SCAN_SCHEMA, read_table
    from scanner.store import S3Options

    s3 = S3Options(endpoint_url=engine[-1])
    try:
        eng, settings = _engine(*engine), _toml(config)
        overrides = {**settings.get("repair", {}), **({"seed": seed} if seed is not None else {})}
        RepairConfig(**overrides)  # validate before any work (run_repair loads a named quality metric first)
        scan_first = ScanRequest(source=source, out=out, s3=s3, overrides={
            **settings.get("detectors", {}).get(DEFAULT_DETECTOR, {}), **({"seed": seed} if seed is not None else {})})
        request = RepairRequest(source=source, out=out, scan_table=scan_table, overrides=overrides, scan=scan_first, s3=s3)
        with BatchProgress(console, what="repair", flagged=lambda r: False) as bar:
            rows, result = run_repair(request, engine=eng, address=address, on_start=bar.on_start, on_row=bar.on_row)
        scanned = read_table(scan_table or f"{out.rstrip('/')}/scan", schema=SCAN_SCHEMA, s3=s3).to_pylist()
    except (OSError, ValueError, TypeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return ExitCode.USAGE
    console.print(_table(f"Repair of {result.total} flagged ({result.skipped} already repaired)", rows,
                         ["uri", "pruned_channels", "asr_before", "asr_after", "quality_before", "quality_after", "error"]))
    errors = any(r.get("error") for r in rows) or any(r["verdict"] in ("error", "timeout") for r in scanned)
    return ExitCode.ERRORS if errors else ExitCode.CLEAN


@app.command()
def compress(
    source: Source,
    out: Out,
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", help="Share of channels to remove, in (0, 1); rounded to whole GroupNorm groups (default 0.3).")] = None,
    importance: Annotated[Optional[str], typer.Option("--importance", help="Channel importance: spp (default), magnitude or taylor.")] = None,
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file; its [compress] table (and [compress.recover]) overrides the settings."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Compression seed."),
    workers: Workers = 2, cpus_per_worker: CpusPerWorker = 1.0, gpus_per_worker: GpusPerWorker = 0.0,
    timeout: Timeout = 3600.0, max_attempts: MaxAttempts = 3, endpoint_url: EndpointUrl = None,
    address: Address = None, cache_dir: CacheDir = "/tmp/zoo-audit-cache",
) -> None:
    """Compress every checkpoint under SOURCE: SPP-scored channel pruning, recovery, stock-diffusers output, on Ray."""
    raise typer.Exit(_compress(source, out, config=config, address=address,
                               flags={"sparsity": sparsity, "importance": importance, "seed": seed},
                               engine=(workers, cpus_per_worker, gpus_per_worker, timeout, max_attempts, cache_dir,
                                       endpoint_url)))


def _compress(source: str, out: str, *, config: Path | None, flags: dict[str, Any], engine: tuple,
              address: str | None) -> int:
    from ray_jobs.compress import CompressRequest, run_compress
    from ray_jobs.progress import BatchProgress
    from scanner.compress import CompressConfig
    from scanner.store import S3Options

    try:
        eng = _engine(*engine)
        overrides = {**_toml(config).get("compress", {}), **{k: v for k, v in flags.items() if v is not None}}
        CompressConfig(**overrides)  # validate before any work
        request = CompressRequest(source=source, out=out, overrides=overrides, s3=S3Options(endpoint_url=engine[-1]))
        with BatchProgress(console, what="compress", flagged=lambda r: False) as bar:
            rows, result = run_compress(request, engine=eng, address=address, on_start=bar.on_start, on_row=bar.on_row)
    except (OSError, ValueError, TypeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return ExitCode.USAGE
    if not rows:
        console.print(f"nothing to compress: no checkpoint under {source}")
        return ExitCode.NOTHING
    console.print(_table(f"Compression of {source} ({result.skipped} already done)", rows,
                         ["uri", "params_before", "params_after", "macs_after", "quality_before", "quality_after",
                          "error"]))
    return ExitCode.ERRORS if any(r.get("error") for r in rows) else ExitCode.CLEAN


@app.command()
def report(
    out: Annotated[str, typer.Argument(help="A run's OUT (directory or s3:// prefix) holding scan/ (and repair/).")],
    html_dir: Optional[Path] = typer.Option(None, "--html", help="Where to write index.html and schema.html; default OUT/report (./zoo-audit-report for s3)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scan rows as JSON."),
    sarif_out: Optional[Path] = typer.Option(None, "--sarif", help="Also write a SARIF 2.1.0 log of flagged/failed models."),
    endpoint_url: EndpointUrl = None,
) -> None:
    """Summarise a run: print the table, write an offline HTML report with a gallery of flagged models."""
    from scanner.results import REPAIR_SCHEMA, SCAN_SCHEMA, read_table
    from scanner.results.report import render_html, render_schema_html, summary, to_json, to_sarif
    from scanner.store import S3Options, parse_uri, read_bytes

    s3 = S3Options(endpoint_url=endpoint_url)
    loc = parse_uri(out)
    rows = read_table(loc.child("scan"), schema=SCAN_SCHEMA, s3=s3).to_pylist()
    if not rows:
        console.print(f"nothing to report: no scan rows under {loc.child('scan')}")
        raise typer.Exit(ExitCode.NOTHING)
    repaired = read_table(loc.child("repair"), schema=REPAIR_SCHEMA, s3=s3).to_pylist()
    target = html_dir or (Path("zoo-audit-report") if loc.is_s3 else Path(loc.path) / "report")
    target.mkdir(parents=True, exist_ok=True)
    (target / "index.html").write_text(render_html(rows, read=lambda p: read_bytes(p, s3=s3), title=f"zoo-audit: {out}",
                                                   repair_rows=repaired))
    (target / "schema.html").write_text(render_schema_html())
    if json_out:
        json_out.write_text(to_json(rows))
    if sarif_out:
        sarif_out.write_text(json.dumps(to_sarif(rows), indent=1))
    console.print(_table(f"{out}: " + ", ".join(f"{v} {k}" for k, v in summary(rows).items()),
                         sorted(rows, key=lambda r: (r["verdict"] == "clean", -r["score"])),
                         ["uri", "verdict", "score", "hypothesis", "seconds", "error"]))
    console.print(f"report: {target / 'index.html'}")
    flagged = any(r["verdict"] == "backdoored" for r in rows)
    raise typer.Exit(ExitCode.ERRORS if any(r["verdict"] in ("error", "timeout") for r in rows)
                     else ExitCode.FINDINGS if flagged else ExitCode.CLEAN)


@app.command()
def schema(table: Annotated[str, typer.Argument(help="scan, repair or compress")] = "scan") -> None:
    """Print a result table's columns, types and meanings as Markdown (docs/results.md is made from it)."""
    from scanner.results import SCHEMAS, column_docs

    if table not in SCHEMAS:
        console.print(f"[red]error:[/red] unknown table {table!r}; known: {sorted(SCHEMAS)}")
        raise typer.Exit(ExitCode.USAGE)
    print("| column | type | meaning |\n|---|---|---|")
    for name, dtype, doc in column_docs(SCHEMAS[table]):
        print(f"| `{name}` | `{dtype}` | {doc.replace('|', '&#124;')} |")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="scan, repair or compress: runs `python -m ray_jobs.<job>` with the remaining arguments.")],
    address: Annotated[str, typer.Option("--address", help="Ray dashboard/Jobs address, e.g. http://127.0.0.1:8265.")] = "http://127.0.0.1:8265",
    working_dir: Annotated[Path, typer.Option("--working-dir", help="Uploaded as the job's working_dir (weights and fixtures excluded).")] = Path("."),
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job's logs until it ends.")] = True,
) -> None:
    """Submit a zoo-audit job to a Ray cluster through the Ray Jobs SDK (what `ray job submit` does)."""
    from ray_jobs.submit import JOBS, submit_job

    if job not in JOBS:
        console.print(f"[red]error:[/red] unknown job {job!r}; known: {sorted(JOBS)}")
        raise typer.Exit(ExitCode.USAGE)
    status, code = submit_job(job, list(ctx.args), address=address, working_dir=working_dir, wait=wait, log=print)
    console.print(f"job {status}")
    raise typer.Exit(code)


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
