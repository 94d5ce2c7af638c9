"""Exact constrained search over a block-wise space (DNA, Sec. 4 / Algorithm 2).

Architectures are one path per block; score and costs are sums over blocks, so the problem is a
multiple-choice knapsack: per-block Pareto fronts merged block by block (`pareto.py`) answer one
budget exactly, branch-and-bound on those fronts (`bnb.py`) answers several budgets and top-K,
brute force (`brute.py`) is the test oracle and the paper's pruned depth-first walk (`dfs.py`) the
baseline.
"""
