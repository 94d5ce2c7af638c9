"""The single source of truth for search spaces and architectures (pure Python, no torch)."""

from dnatool.arch.space import SearchSpace, list_spaces, load_space
from dnatool.arch.spec import ArchSpec, BlockSpec, parse_block

__all__ = ["ArchSpec", "BlockSpec", "SearchSpace", "load_space", "list_spaces", "parse_block"]
