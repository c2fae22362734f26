"""Implementations graded by tests/test_check.py: written from the papers (paper_*.py), and the exercises' answers."""
