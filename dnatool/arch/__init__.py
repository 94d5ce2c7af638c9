"""The single source of truth for search spaces and architectures (pure Python, no torch)."""

from dnatool.arch.spec import ArchSpec, BlockSpec, parse_block
from dnatool.arch.space import SearchSpace, load_space, list_spaces

__all__ = ["ArchSpec", "BlockSpec", "SearchSpace", "load_space", "list_spaces", "parse_block"]
