"""Data: named volumes (image, labels, mask) and, later, training examples around coordinates."""
