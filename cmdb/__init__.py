"""The CMDB: configuration items, their dependency graph, and alert-to-CI mapping."""

from cmdb.graph import Cmdb, PathStep, describe_path
from cmdb.holder import CmdbHolder
from cmdb.loader import CmdbError, load_cmdb, load_cmdb_docs, validate_cmdb
from cmdb.model import CI, CRITICALITIES, RELATIONS, MatchBlock
from cmdb.stage import CmdbStage

__all__ = [
    "CI", "CRITICALITIES", "RELATIONS", "Cmdb", "CmdbError", "CmdbHolder", "CmdbStage",
    "MatchBlock", "PathStep", "describe_path", "load_cmdb", "load_cmdb_docs", "validate_cmdb",
]
