"""proj_S by name: the registry of projectors and the one factory that builds them.

    projector = make_projector("polygon", device="cpu", threads=1)   # ConvexProjector
    projector = make_projector("gradient", seed=3, steps=200)        # GradientProjector

Every command and harness that takes `--projector NAME` builds it here.
"""

from __future__ import annotations

import dataclasses

from sam_convex import validation
from sam_convex.gradient import GradientProjector
from sam_convex.projection import ConvexProjector

Projector = ConvexProjector | GradientProjector
# name -> class; both are dataclasses with `fit(targets, logits=...) -> ConvexFit`.
PROJECTORS: dict[str, type[Projector]] = {"polygon": ConvexProjector, "gradient": GradientProjector}


def with_seed(projector: Projector, seed: int | None) -> Projector:
    """`projector` with `seed` if it draws random numbers (has a `seed` setting:
    `GradientProjector`); a deterministic one (`ConvexProjector`) is returned as it is.
    This is the one place that decides which projectors take a seed."""
    if seed is None or "seed" not in {f.name for f in dataclasses.fields(projector)}:
        return projector
    return dataclasses.replace(projector, seed=validation.integer("seed", seed))


def make_projector(kind: str, seed: int | None = None, **settings) -> Projector:
    """The projector registered as `kind` ("polygon" or "gradient"), built with
    `settings` (its dataclass fields; an unknown one is a TypeError naming it) and
    seeded with `seed` where it takes one (see `with_seed`)."""
    validation.choice("projector", kind, tuple(PROJECTORS))
    return with_seed(PROJECTORS[kind](**settings), seed)
