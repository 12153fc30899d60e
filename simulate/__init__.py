"""Imaging, data writing and evaluation for nmosim phantoms.

Uses :mod:`nmosim.phantoms` through its public API only.
"""
