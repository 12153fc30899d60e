"""Imaging, data writing and evaluation for nmosim phantoms.

Uses :mod:`phantoms` through its public API only.
"""
