"""Evaluation harness for sam_convex: corruption benchmark, scribble experiment, benchmarks."""
