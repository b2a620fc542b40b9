"""Imports the packages that add commands, routes, checks and result sections.

One list, so a reader sees every extension of the core in one place.
"""

from cmdb.service import check_cmdb
from daemon.checks import register_checker

register_checker("cmdb", check_cmdb)
