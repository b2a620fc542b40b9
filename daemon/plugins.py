"""Imports the packages that add commands, routes, checks and result sections.

One list, so a reader sees every extension of the core in one place.
"""
