"""Segmentation quality as labs report it: VOI and adapted Rand error, expected run length over
skeletons, and the list of errors worst first (docs/evaluation.md)."""
