"""Workflows raise plain errors: an ArgumentError (a UserError) names the Python argument (``limit=0: must be >= 1``)
when a workflow is called from Python; the command line prints the same message with the flag
(``--limit 0: must be >= 1``, dpcdvae.cli.error_line). No workflow writes a flag into its messages itself."""
from __future__ import annotations

import argparse
import ast
import pickle
from pathlib import Path

import pytest

from dpcdvae.cli import build_parser, error_line, flag_for
from dpcdvae.utils.errors import ArgumentError, UserError, mention

WORKFLOWS = Path(__file__).resolve().parents[2] / "dpcdvae" / "workflows"


def test_argument_error_python_and_flag_forms():
    cases = [  # (error, from Python, on the command line)
        (ArgumentError("limit", "0: must be >= 1"), "limit=0: must be >= 1", "--limit 0: must be >= 1"),
        (ArgumentError("batch_size", "0: must be >= 1"), "batch_size=0: must be >= 1", "--batch-size 0: must be >= 1"),
        (ArgumentError("dataset", " is needed (no card)"), "dataset is needed (no card)",
         "--dataset is needed (no card)"),
        (ArgumentError("devices", ": give a checkpoint path"), "devices: give a checkpoint path",
         "--devices: give a checkpoint path"),
        (ArgumentError("ema", ": x is a shipped model"), "ema: x is a shipped model",
         "--raw-weights: x is a shipped model"),
        (ArgumentError("steps", f"5: {mention('sampler')} eq7 runs all; use {mention('sampler')} ddim"),
         "steps=5: sampler eq7 runs all; use sampler ddim", "--steps 5: --sampler eq7 runs all; use --sampler ddim"),
        (ArgumentError("resume", f" /r: n was 1, now 2; or a new {mention('run_dir')}"),
         "resume /r: n was 1, now 2; or a new run_dir", "--resume /r: n was 1, now 2; or a new --out"),
    ]
    for exc, python, cli in cases:
        assert isinstance(exc, UserError) and isinstance(exc, ValueError)
        assert str(exc) == python and exc.render() == python
        assert error_line(exc) == cli and exc.render(flag_for) == cli
        back = pickle.loads(pickle.dumps(exc))  # e.g. raised in a worker process
        assert type(back) is ArgumentError and (back.arg, back.detail, str(back)) == (exc.arg, exc.detail, python)
    assert [flag_for(a) for a in ("type_update", "ema", "run_dir")] == ["--type-update", "--raw-weights", "--out"]


def test_reconstruct_split_from_python_names_the_argument():
    from dpcdvae.workflows import reconstruct_split

    for kwargs, arg, message in [({"limit": 0}, "limit", "limit=0: must be >= 1"),
                                 ({"batch_size": 0}, "batch_size", "batch_size=0: must be >= 1")]:
        with pytest.raises(ArgumentError) as exc:  # refused before the checkpoint is read
            reconstruct_split("no-such.ckpt", None, **kwargs)
        assert exc.value.arg == arg and str(exc.value) == message and "--" not in str(exc.value)
    with pytest.raises(ArgumentError) as exc:
        reconstruct_split("pretrained:carbon_24", None, ema=False)
    assert exc.value.arg == "ema" and str(exc.value).startswith("ema: pretrained:carbon_24 is a shipped model")
    assert error_line(exc.value).startswith("--raw-weights: pretrained:carbon_24 is a shipped model")


def test_run_sharded_from_python_names_the_argument():
    from dpcdvae.workflows.sharding import run_sharded

    with pytest.raises(ArgumentError, match=r"^strategy=fsdp: expected one of ddp$"):
        run_sharded({"job": "generate", "checkpoint": "x.ckpt"}, 2, strategy="fsdp")
    with pytest.raises(ArgumentError, match=r"^devices=0: must be >= 1$"):
        run_sharded({"job": "generate", "checkpoint": "x.ckpt"}, 0)


def _raises_in_workflows():
    """``(file, line, call)`` of every ``raise XError(...)`` in dpcdvae/workflows/."""
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name):
                yield path.name, node.lineno, node.exc


def _leading_text(node) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return ""


def test_no_workflow_message_names_a_flag_itself():
    flagged = [f"{name}:{line}" for name, line, call in _raises_in_workflows()
               if call.args and _leading_text(call.args[0]).lstrip().startswith("--")]
    assert not flagged, f"raise ArgumentError(arg, detail) instead of a message that names a flag: {flagged}"


def test_every_argument_named_has_a_flag():
    """The arguments the workflows name (ArgumentError(arg, ...) and mention(arg)) are command-line flags."""
    flags = set()
    stack = [build_parser()]
    while stack:
        parser = stack.pop()
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):  # the subcommands' parsers
                stack.extend(action.choices.values())
    named = set()
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("ArgumentError", "mention") and node.args and \
                    isinstance(node.args[0], ast.Constant):
                named.add(node.args[0].value)
    assert {"limit", "batch_size", "steps", "sampler", "ema", "devices", "resume", "run_dir"} <= named
    assert not {a: flag_for(a) for a in named if flag_for(a) not in flags}
