"""Hydra configs shipped with ffnops (found as ``pkg://ffnops.conf``)."""
