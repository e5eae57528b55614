"""Helpers shared by the test files: tiny corpora, a tiny test recipe, reference checks.

Test files import helpers from here, never from another `*_test.py` file.
"""
