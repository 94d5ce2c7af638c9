"""Block-wise supernet training (DNA; the loop is shared by later methods)."""
