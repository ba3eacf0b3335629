"""`python -m eval.corruptions --severity 5`: SAM vs proj_S(SAM) under image corruptions.

For every image of the benchmark and every condition (clean + the eight corruptions of
the paper at one severity) the predictor (SAM, or GrabCut where no checkpoint is
available) runs once from the same prompt, and every method of `methods.METHODS`
post-processes its output: raw (the predictor's mask), the baselines a user would try
(remove_small, convex hull, largest component and its hull) and proj_S (ConvexProjector
fitted to the predictor's soft logits). Each result's IoU against the ground truth goes to
a CSV (one row per image x condition x method), a markdown table in the paper's layout
and plots.

Modules: `methods` (what is compared: name -> function, label, colour), `items` (one
item: corrupt, segment, score; the serial executor), `harness` (the run: plan, cache,
report), `cluster` (the Ray executor), `corrupt` (the seeded image corruptions),
`prompts` (prompts from scribbles and ground truth), `report` (the CSV's columns, tables
and figures), `strata` (when proj_S helps: Δ by raw IoU and solidity, spill and miss),
`summary` (one table over several runs), `__main__` (the command).
"""

from eval.corruptions.harness import run

__all__ = ["run"]
