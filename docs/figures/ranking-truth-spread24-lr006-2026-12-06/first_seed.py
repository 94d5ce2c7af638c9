"""One-off record (2026-12-06): each method's Kendall tau against the lr-0.006 truth's first seed
(its 24 networks trained once), beside the same against the lr-0.003 spread truth's first seed
and seed mean; the methods' supernets and scores are those of "Every method on the spread truth"
(ranking.md), unchanged: only the accuracies they are compared with differ.

    python docs/figures/ranking-truth-spread24-lr006-2026-12-06/first_seed.py OUT/truth \
        docs/figures/ranking-truth-spread24-2026-12-05/truth.json METHODS_OUT/methods
"""

import json
import sys

import numpy as np
from scipy.stats import kendalltau

from dnatool.bench.truth import load_truth, truth_status

new_dir, old_path, methods = sys.argv[1:4]
old = load_truth(old_path)
state = truth_status(new_dir)
n = len(old["archs"])
new_s0 = np.array([state["top1"][str(i)][0] for i in range(n)])
old_s0 = np.array([a["top1"][0] for a in old["archs"]])
old_mean = np.array([a["mean_top1"] for a in old["archs"]])
groups = {
    "dna": ["dna", "dna@seed1", "dna@seed2"],
    "spos": ["spos", "spos@seed1"],
    "dna++": ["dna++"],
    "bossnas": ["bossnas"],
    "spos@e24": ["spos@e24"],
}


def tau(scores: list, accuracy: np.ndarray) -> float:
    return float(kendalltau(-np.asarray(scores), accuracy)[0])


out: dict = {
    "archs": n,
    "tau_new_s0_vs_old_s0": float(kendalltau(new_s0, old_s0)[0]),
    "tau_new_s0_vs_old_mean": float(kendalltau(new_s0, old_mean)[0]),
}
for group, runs in groups.items():
    sets = [json.load(open(f"{methods}/{run}/ratings.json"))["scores"] for run in runs]
    out[group] = {
        name: float(np.mean([tau(s, acc) for s in sets]))
        for name, acc in (("new_s0", new_s0), ("old_s0", old_s0), ("old_mean", old_mean))
    }
macs = [-a["macs"] for a in old["archs"]]
out["macs"] = {"new_s0": tau(macs, new_s0), "old_s0": tau(macs, old_s0), "old_mean": tau(macs, old_mean)}
out["dna_minus_spos"] = {k: out["dna"][k] - out["spos"][k] for k in out["dna"]}
print(json.dumps(out, indent=1))
