"""The CLI's live progress bar: done/total, rate, ETA and how many were flagged (or failed)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class BatchProgress:
    """`on_start(total, already_done)` then `on_row(row)` per row; a context manager around the run."""

    def __init__(self, console: Console, *, what: str, flagged: Any) -> None:
        self.flagged_of, self.flagged, self.errors = flagged, 0, 0
        self.progress = Progress(TextColumn(f"{what}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("elapsed"), TimeElapsedColumn(),
                                 TextColumn("[red]{task.fields[flagged]} flagged[/red], {task.fields[errors]} errors"),
                                 console=console, transient=False)
        self.task = self.progress.add_task(what, total=None, rate="", flagged=0, errors=0)

    def __enter__(self) -> "BatchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def on_start(self, total: int, done: int) -> None:
        self.progress.update(self.task, total=total, completed=done)

    def on_row(self, row: dict[str, Any]) -> None:
        self.flagged += bool(self.flagged_of(row))
        self.errors += bool(row.get("error"))
        t = self.progress.tasks[0]
        rate = f"{t.speed * 3600:.0f}/h" if t.speed else ""
        self.progress.update(self.task, advance=1, rate=rate, flagged=self.flagged, errors=self.errors)
