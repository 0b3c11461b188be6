"""Real image data that ships inside a package (nothing is downloaded)."""

from scanner.data.digits import load_digits_images

__all__ = ["load_digits_images"]
