"""Bridges to Google's FFN: its TensorFlow checkpoints and its inference requests."""
