"""Rating every path of every cell (DNA Algorithm 1) and ranking metrics."""
