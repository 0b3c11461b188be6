"""Safe checkpoint loading: inventory, validation, safetensors-only loading, discovery."""

from scanner.checkpoint.describe import describe_checkpoint
from scanner.checkpoint.discover import find_checkpoints
from scanner.checkpoint.errors import CATEGORIES, LoadError
from scanner.checkpoint.inventory import Inventory, inventory
from scanner.checkpoint.load import LoadedCheckpoint, load_checkpoint
from scanner.checkpoint.validate import Limits

__all__ = ["CATEGORIES", "describe_checkpoint", "Inventory", "Limits", "LoadError", "LoadedCheckpoint", "find_checkpoints",
           "inventory", "load_checkpoint"]
