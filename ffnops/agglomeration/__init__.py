"""After flood filling: combining segmentations and joining objects (docs/agglomeration.md)."""
