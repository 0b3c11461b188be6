"""Result tables: one Parquet schema per job kind, written as write-once part files."""

from scanner.results.table import REPAIR_SCHEMA, SCAN_SCHEMA, read_table, write_part

__all__ = ["REPAIR_SCHEMA", "SCAN_SCHEMA", "read_table", "write_part"]
