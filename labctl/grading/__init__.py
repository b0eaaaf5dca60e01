"""Grading: checks over SSH against a live lab, grouped by the certification's criteria.

A grading spec (`grading/<scenario>.yml`) lists checks; `load_grading_spec` validates it,
`grade` runs it against a lab through one `NodeSession` per node, and `labctl.grading.report`
renders the resulting `GradeReport` for a jury (terminal table, JSON, JUnit XML).
"""

from labctl.grading.grader import grade
from labctl.grading.loader import load_grading_spec
from labctl.grading.results import CheckResult, GradeReport, Outcome
from labctl.grading.session import CommandResult, CommandTimeout, NodeSession, NodeUnreachable
from labctl.grading.spec import GradingSpec, grading_json_schema

__all__ = [
    "CheckResult",
    "CommandResult",
    "CommandTimeout",
    "GradeReport",
    "GradingSpec",
    "NodeSession",
    "NodeUnreachable",
    "Outcome",
    "grade",
    "grading_json_schema",
    "load_grading_spec",
]
