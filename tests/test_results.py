"""Result schemas are documented, and the report / SARIF views say what the rows say."""

from __future__ import annotations

from pathlib import Path

from scanner.results import SCHEMAS, column_docs
from scanner.results.report import render_html, to_sarif

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_every_column_has_a_meaning_and_docs_results_lists_it_with_its_type():
    page = DOCS.read_text()
    for schema in SCHEMAS.values():
        for name, dtype, doc in column_docs(schema):
            assert doc, f"column {name} has no doc"
            assert f"| `{name}` | `{dtype}` |" in page, f"docs/results.md lacks {name} ({dtype})"


def _row(uri: str, verdict: str, **kw) -> dict:
    return {"uri": uri, "verdict": verdict, "score": kw.pop("score", 0.5), "seconds": 1.0, "unet_evals": 10,
            "error": kw.pop("error", None), "hypothesis": "trojan", "gamma": 0.5, **kw}


def test_sarif_has_one_result_per_flagged_failed_or_timed_out_model_with_its_level():
    rows = [_row("s3://z/clean", "clean", score=0.01), _row("s3://z/bad", "backdoored", score=0.97),
            _row("s3://z/broken", "error", error="s3://z/broken: truncated"), _row("s3://z/slow", "timeout", error="late")]
    log = to_sarif(rows)
    results = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in log["runs"][0]["results"]}
    assert sorted(results) == ["s3://z/bad", "s3://z/broken", "s3://z/slow"]
    assert (results["s3://z/bad"]["ruleId"], results["s3://z/bad"]["level"]) == ("ZA001", "error")
    assert results["s3://z/broken"]["level"] == "warning" and "truncated" in results["s3://z/broken"]["message"]["text"]
    assert {r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]} == {"ZA001", "ZA002", "ZA003"}


def test_the_html_report_escapes_names_from_the_bucket_and_marks_missing_images():
    rows = [_row("s3://z/<script>alert(1)</script>", "backdoored", score=0.9, trigger_path="s3://z/a/trigger.safetensors")]

    def read(path: str) -> bytes:
        raise FileNotFoundError(path)

    page = render_html(rows, read=read, title="t")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "inverted trigger: missing" in page and page.count("<div class=card>") == 1
