"""Imports the packages that add commands, routes, checks and result sections.

One list, so a reader sees every extension of the core in one place.
"""

from cmdb.service import check_cmdb, report_cmdb, warn_cmdb
from daemon.auth import check_auth, configure_hash_token, run_hash_token
from daemon.checks import register_checker
from daemon.cli import register_subcommand
from daemon.notify.config import check_notify
from daemon.problems.report import configure_problems_command, run_problems_command
from daemon.problems.result import problems_section
from daemon.problems.service import check_problems
from daemon.replay import register_result_section
from daemon.sla import check_sla
from detectors.api import anomalies_section
from detectors.config import check_detectors
from rules.daemon import check_rules
from rules.testing import configure_test_rules, run_test_rules_command

register_checker("cmdb", check_cmdb, ("correlation",), report=report_cmdb, warn=warn_cmdb)
register_checker("rules", check_rules, ("changes",))
register_checker("detectors", check_detectors, ("detectors", "prometheus"))
register_result_section("anomalies", anomalies_section)
register_checker("problems", check_problems, ("problems",))
register_checker("notify", check_notify, ("receivers", "teams", "escalation_policies", "notify"))
register_checker("sla", check_sla, ("sla",))
register_checker("auth", check_auth, ("auth", "tls"))
register_subcommand("hash-token", "print the SHA-256 of an API token (auth.tokens[].token_sha256)",
                    configure_hash_token, run_hash_token)
register_subcommand("test-rules", "run rule unit tests (YAML)", configure_test_rules, run_test_rules_command)
register_subcommand("problems", "problem management: the review report", configure_problems_command,
                    run_problems_command)
register_result_section("problems", problems_section)
