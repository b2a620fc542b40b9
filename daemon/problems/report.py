"""`incidentd problems report`: placeholder until the report lands."""

from __future__ import annotations

import argparse


def configure_problems_command(p: argparse.ArgumentParser) -> None:
    pass


def run_problems_command(args: argparse.Namespace) -> int:
    return 1
