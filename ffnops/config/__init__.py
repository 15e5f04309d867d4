"""Typed schemas of every config group and their registration with Hydra's ConfigStore."""
