"""End-to-end workflows built from ffnops commands (quickstart, the FIB-25 recipe)."""
