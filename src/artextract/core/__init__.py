"""Plumbing shared by every stage: atomic writes, output folders, environment records, progress."""
