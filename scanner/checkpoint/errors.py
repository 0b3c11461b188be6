"""Typed, picklable load errors: every refusal names the file, the category and the reason."""

from __future__ import annotations

from typing import Any

CATEGORIES = ("unsafe_format", "corrupt", "bad_config", "missing_file", "not_a_model")


class LoadError(Exception):
    """A checkpoint that cannot be loaded; becomes one `error` row, never a lost batch.

    Args:
        category: one of CATEGORIES.
        path: the file or directory at fault.
        reason: what is wrong and what was expected.
    """

    def __init__(self, category: str, path: str, reason: str) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"`category` must be one of {CATEGORIES}, got {category!r}")
        super().__init__(f"[{category}] {path}: {reason}")
        self.category, self.path, self.reason = category, str(path), reason

    def __reduce__(self):  # survive pickling across process boundaries (Ray, multiprocessing)
        return (LoadError, (self.category, self.path, self.reason))

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "path": self.path, "reason": self.reason}
