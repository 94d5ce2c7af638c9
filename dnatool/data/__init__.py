"""Data: the built-in digits set (no download) and ImageFolder layouts with timm's transforms."""

from dnatool.data.datasets import Splits, load_splits, set_epoch

__all__ = ["Splits", "load_splits", "set_epoch"]
