"""Result tables: one documented Parquet schema per job kind, written as write-once parts."""

from scanner.results.keys import row_key
from scanner.results.sink import TableSink
from scanner.results.table import COMPRESS_SCHEMA, REPAIR_SCHEMA, SCAN_SCHEMA, SCHEMAS, column_docs, read_table, write_part

__all__ = ["COMPRESS_SCHEMA", "REPAIR_SCHEMA", "SCAN_SCHEMA", "SCHEMAS", "TableSink", "column_docs", "read_table", "row_key", "write_part"]
