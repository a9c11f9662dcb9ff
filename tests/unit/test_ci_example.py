"""The CI example calls `drainctl deploy` with options the command has."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from drainctl.cli import main

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "github-actions-deploy.yml"


def test_the_workflow_deploy_command_parses() -> None:
    """Every `drainctl ...` run line of the workflow parses with the real CLI (no unknown or
    malformed option), and the deploy prints JSON, waits for a held lock and checks out history."""
    text = WORKFLOW.read_text()
    runs = [
        line.split("run:", 1)[1].split(">")[0].strip()
        for line in text.splitlines()
        if line.strip().startswith("run: drainctl ")
    ]
    assert runs == ["drainctl deploy --remote heroku --wait-lock 300 --json"]
    for run in runs:
        args = shlex.split(run)[1:]
        group = main.make_context("drainctl", args, resilient_parsing=False)
        command = main.get_command(group, args[0])
        assert isinstance(command, click.Command)
        params = command.make_context(args[0], args[1:], parent=group).params
        assert params["as_json"] is True
        assert params["wait_lock"] == 300.0
    assert "fetch-depth: 0" in text
    assert "cancel-in-progress: false" in text
