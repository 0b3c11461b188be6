"""Check a safetensors file's header against its size before any tensor is read.

Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
data_offsets: [begin, end]}}, then the data; offsets are relative to the data start.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from scanner.checkpoint.errors import LoadError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2; torch's zip container


def read_safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Return {tensor name: (dtype, shape)}; raise LoadError("corrupt" | "unsafe_format") otherwise."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if head[:1] in (b"\x80",) or head[:4] == PICKLE_MAGIC[1]:
            raise LoadError("unsafe_format", str(path), "named .safetensors but starts like a pickle/zip "
                            "archive; refusing to read it")
        if len(head) < 8:
            raise LoadError("corrupt", str(path), f"file has {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise LoadError("corrupt", str(path), f"header length {n} exceeds the file's {size - 8} remaining bytes")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoadError("corrupt", str(path), f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise LoadError("corrupt", str(path), "header is not a JSON object")
    tensors, data_end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
            nbytes = math.prod(int(d) for d in shape) * DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            raise LoadError("corrupt", str(path), f"tensor {name!r} has a malformed header entry") from None
        if end - begin != nbytes or begin < 0:
            raise LoadError("corrupt", str(path), f"tensor {name!r} spans bytes [{begin}, {end}) but "
                            f"{dtype}{shape} needs {nbytes}")
        tensors[name], data_end = (dtype, shape), max(data_end, end)
    if 8 + n + data_end != size:
        raise LoadError("corrupt", str(path), f"header says the data ends at byte {8 + n + data_end} "
                        f"but the file has {size} bytes (truncated or padded)")
    return tensors
