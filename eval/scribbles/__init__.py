"""`python -m eval.scribbles`: scribble-trained CNN/FCN, sequential vs joint convexity.

For every image, net (CNN, FCN) and input feature set, one predictor is trained on the
image's scribbles in two modes:

* sequential: BCE only, then proj_S(p) with `ConvexProjector` (convex output = the
  projection's mask {G <= 0}, rendered at full resolution);
* joint: BCE + lambda * dist(p, S) with a `ConvexityRegularizer` trained along, same
  number of steps (convex output = the regulariser's own mask {G <= 0}, rendered at
  full resolution; no projection afterwards).

IoU against the ground truth is reported for the raw predictor (p > 0.5) and for the
convex output. Outputs in --out: scribbles.csv (one row per image x net x features x
mode), scribbles.md (table in the paper's layout with the paper's numbers, per-column
verdicts, run metadata), scribbles.png (qualitative results).

Modules: `harness` (the run), `nets` (CNN/FCN and the two training modes), `features`
(semantic input channels), `report` (table and figure), `__main__` (the command).
"""

from eval.scribbles.harness import Settings, run

__all__ = ["Settings", "run"]
