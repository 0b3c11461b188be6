"""Human and machine views of a result table: an offline HTML report with a gallery, JSON, SARIF.

The HTML embeds every image as a data: URI and carries its own CSS, so the page opens from a
laptop with no network and no access to the bucket. SARIF 2.1.0 is what CI systems (GitHub
code scanning, GitLab, Azure DevOps) ingest: one result per flagged, failed or timed-out model.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from datetime import datetime
from typing import Any, Callable

import scanner
from scanner.results.table import SCHEMAS, column_docs

ReadBytes = Callable[[str], bytes]
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:14px}
.card{display:inline-block;border:1px solid #bbb;border-radius:6px;padding:10px;margin:8px;vertical-align:top}
.card img{image-rendering:pixelated;height:112px;margin-right:6px;border:1px solid #eee}
.bad{color:#b00}.muted{color:#777;font-size:13px}code{font-size:13px}"""

RULES = {
    "backdoored": ("ZA001", "backdoor", "error", "Trigger inversion found a backdoor"),
    "error": ("ZA002", "not-scanned", "warning", "The checkpoint could not be scanned"),
    "timeout": ("ZA003", "timeout", "warning", "The scan did not finish within the time limit"),
}


def _img(read: ReadBytes, path: str | None, label: str) -> str:
    if not path:
        return ""
    try:
        data = base64.b64encode(read(path)).decode()
    except (OSError, ValueError):
        return f"<span class=muted>{html.escape(label)}: missing</span>"
    return f'<img alt="{html.escape(label)}" title="{html.escape(label)}" src="data:image/png;base64,{data}">'


def _png(path: str | None, name: str | None = None) -> str | None:
    if not path:
        return None
    stem = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    return stem + (name or path.rsplit("/", 1)[-1].replace(".safetensors", ".png"))


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["verdict"] for r in rows)
    return {"checkpoints": len(rows), **{v: counts.get(v, 0) for v in ("backdoored", "clean", "error", "timeout")}}


def render_html(scan_rows: list[dict[str, Any]], *, read: ReadBytes, title: str,
                repair_rows: list[dict[str, Any]] | None = None) -> str:
    repaired = {r["uri"]: r for r in repair_rows or []}
    flagged = sorted((r for r in scan_rows if r["verdict"] == "backdoored"), key=lambda r: -r["score"])
    cards = []
    for r in flagged:
        fix = repaired.get(r["uri"])
        fix_line = "" if fix is None else (
            f"<div>repair: {html.escape(fix['error'])}</div>" if fix.get("error") else
            f"<div>repaired: ASR {fix['asr_before']:.2f} → {fix['asr_after']:.2f}, pruned {fix['pruned_channels']}, "
            f"quality {fix['quality_before']:.1f} → {fix['quality_after']:.1f}</div>")
        cards.append(
            f"<div class=card><div><b class=bad>{html.escape(r['uri'])}</b></div>"
            f"<div class=muted>score {r['score']:.3f} · {html.escape(str(r.get('hypothesis')))} · gamma "
            f"{r.get('gamma') or 0:.2f} · {r['unet_evals']} UNet evals</div>"
            f"<div>{_img(read, _png(r.get('trigger_path')), 'inverted trigger')}"
            f"{_img(read, _png(r.get('target_path')), 'recovered target')}</div>"
            f"<div>{_img(read, _png(r.get('target_path'), 'samples.png'), 'samples from the inverted trigger')}</div>"
            f"<div class=muted>trigger · target · samples from the trigger</div>{fix_line}</div>")
    s = summary(scan_rows)
    head = "".join(f"<th>{k}</th>" for k in s)
    cells = "".join(f"<td>{v}</td>" for v in s.values())
    listing = "".join(
        f"<tr><td>{html.escape(r['uri'])}</td><td class={'bad' if r['verdict'] != 'clean' else ''}>{r['verdict']}</td>"
        f"<td>{r['score']:.3f}</td><td>{r['seconds']:.1f}</td><td>{html.escape(r.get('error') or '')}</td></tr>"
        for r in sorted(scan_rows, key=lambda r: r["uri"]))
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p class=muted>zoo-audit {scanner.__version__}, "
            f"{datetime.now().isoformat(timespec='seconds')} · <a href=schema.html>column reference</a></p>"
            f"<table><tr>{head}</tr><tr>{cells}</tr></table><h2>Flagged models ({len(flagged)})</h2>"
            f"{''.join(cards) or '<p>none</p>'}<h2>All checkpoints</h2><table><tr><th>uri</th><th>verdict</th>"
            f"<th>score</th><th>seconds</th><th>error</th></tr>{listing}</table></body></html>")


def render_schema_html() -> str:
    parts = []
    for name, schema in SCHEMAS.items():
        rows = "".join(f"<tr><td><code>{c}</code></td><td><code>{t}</code></td><td>{html.escape(d)}</td></tr>"
                       for c, t, d in column_docs(schema))
        parts.append(f"<h2>OUT/{name}/</h2><table><tr><th>column</th><th>type</th><th>meaning</th></tr>{rows}</table>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>zoo-audit columns</title><style>{CSS}</style>"
            f"</head><body><h1>Result columns</h1>{''.join(parts)}</body></html>")


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v), indent=1)


def to_sarif(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one result per backdoored, failed or timed-out checkpoint."""
    rules = [{"id": rid, "name": name, "shortDescription": {"text": text}, "defaultConfiguration": {"level": level}}
             for rid, name, level, text in RULES.values()]
    results = []
    for r in sorted(rows, key=lambda r: r["uri"]):
        if r["verdict"] not in RULES:
            continue
        rid, _, level, text = RULES[r["verdict"]]
        message = r.get("error") or f"{text}: score {r['score']:.3f}, hypothesis {r.get('hypothesis')}"
        results.append({"ruleId": rid, "level": level, "message": {"text": message},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": r["uri"]}}}],
                        "properties": {k: r.get(k) for k in ("score", "hypothesis", "gamma", "trigger_path",
                                                             "target_path", "content_sha256", "error_category")}})
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "zoo-audit", "version": scanner.__version__, "rules": rules}},
                      "results": results}]}
