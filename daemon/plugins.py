"""Imports the packages that add commands, routes, checks and result sections.

One list, so a reader sees every extension of the core in one place.
"""

from cmdb.service import check_cmdb
from daemon.checks import register_checker
from daemon.cli import register_subcommand
from daemon.replay import register_result_section
from detectors.api import anomalies_section
from detectors.config import check_detectors
from rules.daemon import check_rules
from rules.testing import configure_test_rules, run_test_rules_command

register_checker("cmdb", check_cmdb)
register_checker("rules", check_rules)
register_checker("detectors", check_detectors)
register_result_section("anomalies", anomalies_section)
register_subcommand("test-rules", "run rule unit tests (YAML)", configure_test_rules, run_test_rules_command)
