"""Data: the built-in digits set (no download) and ImageFolder layouts with timm's transforms."""

from dnatool.data.datasets import Splits, epoch_loader, load_splits, set_epoch

__all__ = ["Splits", "epoch_loader", "load_splits", "set_epoch"]
