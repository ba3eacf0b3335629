"""`python -m eval.corruptions --severity 5`: SAM vs proj_S(SAM) under image corruptions.

For every image of the benchmark and every condition (clean + the eight corruptions of
the paper at one severity) the predictor (SAM, or GrabCut where no checkpoint is
available) runs once from the same prompt, and four methods post-process its output:

    raw           the predictor's mask (logits > 0)
    remove_small  segment-anything's remove_small_regions (holes, then islands)
    convex_hull   convex hull of the raw mask
    proj_S        ConvexProjector fitted to the predictor's soft logits

Each result's IoU against the ground truth goes to a CSV (one row per image x condition
x method), a markdown table in the paper's layout and plots.

Modules: `harness` (the run: items, evaluation, cache), `corrupt` (the seeded image
corruptions), `prompts` (prompts from scribbles and ground truth), `report` (tables and
figures), `__main__` (the command).
"""

from eval.corruptions.harness import run

__all__ = ["run"]
