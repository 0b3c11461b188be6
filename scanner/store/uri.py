"""Where a checkpoint or a table lives: a local path or an s3:// prefix, parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True, kw_only=True)
class Location:
    """`scheme` is "file" or "s3"; for s3, `bucket` and `key` (no leading slash); for file, `path`."""

    scheme: str
    bucket: str = ""
    key: str = ""
    path: str = ""

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def child(self, *parts: str) -> "Location":
        """This location with `parts` appended ("a/b" + "c" -> "a/b/c")."""
        if self.is_s3:
            key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
            return Location(scheme="s3", bucket=self.bucket, key=key)
        return Location(scheme="file", path=str(Path(self.path, *parts)))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else self.path


def parse_uri(uri: str | Path) -> Location:
    """`s3://bucket/prefix`, `file:///abs/path` or a plain path; anything else raises ValueError naming it."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{text!r}: an s3 URI needs a bucket (s3://bucket/prefix)")
        return Location(scheme="s3", bucket=parsed.netloc, key=parsed.path.lstrip("/").rstrip("/"))
    if parsed.scheme == "file":
        return Location(scheme="file", path=parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" is a drive, not a scheme
        raise ValueError(f"{text!r}: unsupported scheme {parsed.scheme!r}; use s3://, file:// or a path")
    return Location(scheme="file", path=text)


def folder_names(uris: list[str]) -> list[str]:
    """An output folder name per uri: its last path component; a name two uris share gets a hash of the uri."""
    import hashlib

    names = [u.rstrip("/").rsplit("/", 1)[-1] for u in uris]
    return [f"{n}-{hashlib.sha256(u.encode()).hexdigest()[:12]}" if names.count(n) > 1 else n
            for n, u in zip(names, uris)]
