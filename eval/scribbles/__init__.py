"""`python -m eval.scribbles`: scribble-trained CNN/FCN, sequential vs joint convexity.

For every image, net (CNN, FCN), input feature set and seed index k (K seeds), one
predictor is trained on the image's scribbles in two modes from the same start:

* sequential: BCE only, then proj_S(p) with `ConvexProjector` (convex output = the
  projection's mask {G <= 0}, rendered at full resolution);
* joint: BCE + lambda * dist(p, S) with a `ConvexityRegularizer` trained along, same
  number of steps (convex output = the regulariser's own mask {G <= 0}, rendered at
  full resolution); proj_S of the joint predictor is scored as well.

IoU against the ground truth is reported for the raw predictor (p > 0.5) and for the
convex outputs; joint − sequential is compared per image (mean over seeds) with a
bootstrap CI over images. The settings were chosen on a dev split
(`python -m eval.scribbles.tune`), the table is computed on a disjoint test split.
Outputs in --out: scribbles.csv (one row per image x net x features x seed x mode),
scribbles.md (the answer, paired differences, the paper's numbers, run metadata),
scribbles.png (qualitative results).

Modules: `harness` (splits, the run, cache), `nets` (CNN/FCN and the two training
modes), `features` (semantic input channels), `report` (statistics, tables, figure),
`tune` (the dev-split grid), `__main__` (the command).
"""

__all__ = ["Settings", "run"]


def __getattr__(name: str):
    """`Settings` and `run` from `harness`, imported on first use, so that
    `python -m eval.scribbles` can pin the CPU code paths before torch loads."""
    if name in __all__:
        from eval.scribbles import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'eval.scribbles' has no attribute {name!r}")
