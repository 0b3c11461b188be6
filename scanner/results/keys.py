"""The result key: one row per (checkpoint uri, content, job, config), whatever happens to the run.

The key hashes the uri as well as the content: a zoo often holds byte-identical copies
under two names, and each uri must get its row. It hashes the content version, so a
checkpoint re-uploaded under the same uri is scanned again (the old row stays, with the
old content_version). The config hash already covers the detector, its settings and the
scanner version (scanner/scan.py: config_hash).
"""

from __future__ import annotations

import hashlib
import json


def row_key(*, uri: str, content_version: str, job: str, config_hash: str) -> str:
    text = json.dumps([uri, content_version, job, config_hash])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
