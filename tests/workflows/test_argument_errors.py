"""Workflows raise plain errors: an ArgumentError (a UserError) names the Python argument (``limit=0: must be >= 1``)
when a workflow is called from Python; the command line prints the same message with the flag
(``--limit 0: must be >= 1``, dpcdvae.cli.error_line). No library module below the CLI (dpcdvae/workflows/,
dpcdvae/eval/, dpcdvae/train.py, dpcdvae/config.py, dpcdvae/notebooks/) writes a flag into its messages itself."""
from __future__ import annotations

import argparse
import ast
import pickle
from pathlib import Path

import pytest

from dpcdvae.cli import build_parser, error_line, flag_for
from dpcdvae.utils.errors import (ArgumentError, CheckpointArgumentError, CheckpointError, ConfigArgumentError,
                                  ConfigError, UserError, mention)

PACKAGE = Path(__file__).resolve().parents[2] / "dpcdvae"
WORKFLOWS = PACKAGE / "workflows"
#: the library modules whose errors name Python arguments (ArgumentError), never flags
LIBRARY = sorted([*WORKFLOWS.glob("*.py"), *(PACKAGE / "eval").rglob("*.py"), PACKAGE / "train.py",
                  PACKAGE / "config.py", *(PACKAGE / "notebooks").rglob("*.py")])


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


def test_evaluate_from_python_names_the_argument(tmp_path):
    """dpcdvae.eval.evaluate refuses bad arguments before any data is read: ArgumentError naming the Python argument
    (the command line prints the flag, tests/cli/test_cli_errors.py)."""
    from dpcdvae.eval.evaluate import evaluate, read_checked_samples, resolve_eval_dataset

    cases = [  # (call, argument, from Python, on the command line)
        (lambda: evaluate("nope", "perov_5"), "task", "task=nope: one of recon, gen, baseline",
         "--task nope: one of recon, gen, baseline"),
        (lambda: evaluate("gen", "perov_5", breakdown=True), "breakdown",
         "breakdown applies to task recon only (got task gen)",
         "--breakdown applies to --task recon only (got --task gen)"),
        (lambda: evaluate("recon", "perov_5", property_model="x.pt"), "property_model",
         "property_model applies to task gen and baseline only (got task recon)",
         "--property-model applies to --task gen and baseline only (got --task recon)"),
        (lambda: evaluate("gen", "perov_5", n_generated=3), "n_generated",
         "n_generated applies to task baseline only (got task gen)",
         "--n-generated applies to --task baseline only (got --task gen)"),
        (lambda: evaluate("baseline", "perov_5", generated_split="bogus"), "generated_split",
         "generated_split=bogus: one of train, val, test", "--generated-split bogus: one of train, val, test"),
        (lambda: evaluate("baseline", "perov_5", n_generated=0), "n_generated",
         "n_generated=0: the number of crystals must be >= 1", "--n-generated 0: the number of crystals must be >= 1"),
        (lambda: evaluate("gen", "perov_5", property_model=str(tmp_path / "no.pt")), "property_model",
         f"property_model={tmp_path / 'no.pt'}: no such file", f"--property-model {tmp_path / 'no.pt'}: no such file"),
        (lambda: read_checked_samples(None, "gen"), "samples", "samples is required for task gen",
         "--samples is required for --task gen"),
        (lambda: read_checked_samples(str(tmp_path / "none"), "gen"), "samples",
         f"samples={tmp_path / 'none'}: ", f"--samples {tmp_path / 'none'}: "),
    ]
    for call, arg, python, cli in cases:
        with pytest.raises(ArgumentError) as exc:
            call()
        assert exc.value.arg == arg and str(exc.value).startswith(python) and "--" not in str(exc.value)
        assert error_line(exc.value).startswith(cli)
    with pytest.raises(ArgumentError) as exc:
        resolve_eval_dataset("perov_7")
    assert exc.value.arg == "dataset" and str(exc.value).startswith("dataset=perov_7: evaluate knows perov_5, ")
    assert error_line(exc.value).startswith("--dataset perov_7: evaluate knows perov_5, ")


def test_train_errors_name_the_argument_and_stay_what_they_were(tmp_path):
    """train's resume / init_from refusals: an ArgumentError naming the argument that is still the CheckpointError /
    ConfigError (a KeyError) its callers catch."""
    from dpcdvae.train import resume_checkpoint

    with pytest.raises(CheckpointError) as exc:
        resume_checkpoint(tmp_path)
    assert isinstance(exc.value, CheckpointArgumentError) and exc.value.arg == "resume"
    assert str(exc.value) == (f"resume: no last.ckpt or best.ckpt in {tmp_path} to resume from (run without resume "
                              f"to start a new training there)")
    assert error_line(exc.value) == (f"--resume: no last.ckpt or best.ckpt in {tmp_path} to resume from (run "
                                     f"without --resume to start a new training there)")
    err = ConfigArgumentError("init_from", "a.ckpt: parameter 'w' is (3,) there, (4,) in this model: the "
                                           "architecture differs")
    assert isinstance(err, ConfigError) and isinstance(err, KeyError) and isinstance(err, UserError)
    assert str(err) == "init_from=a.ckpt: parameter 'w' is (3,) there, (4,) in this model: the architecture differs"
    assert error_line(err).startswith("--init-from a.ckpt: parameter 'w'")
    for e in (exc.value, err):  # picklable, the same class and message
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)


def _raises_in_library():
    """``(file, line, call)`` of every ``raise XError(...)`` in :data:`LIBRARY`."""
    for path in LIBRARY:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name):
                yield str(path.relative_to(PACKAGE)), node.lineno, node.exc


def _leading_text(node) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return ""


def test_no_library_message_names_a_flag_itself():
    assert {"workflows/relax.py", "eval/evaluate.py", "eval/generation.py", "train.py", "config.py",
            "notebooks/runner.py", "notebooks/paper.py"} <= \
        {str(p.relative_to(PACKAGE)) for p in LIBRARY}
    flagged = [f"{name}:{line}" for name, line, call in _raises_in_library()
               if call.args and _leading_text(call.args[0]).lstrip().startswith("--")]
    assert not flagged, f"raise ArgumentError(arg, detail) instead of a message that names a flag: {flagged}"


def test_every_argument_named_has_a_flag():
    """The arguments the library names (ArgumentError(arg, ...), its subclasses, mention(arg)) are command-line
    flags."""
    flags = set()
    stack = [build_parser()]
    while stack:
        parser = stack.pop()
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):  # the subcommands' parsers
                stack.extend(action.choices.values())
    named = set()
    for path in LIBRARY:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    (node.func.id.endswith("ArgumentError") or node.func.id == "mention") and node.args and \
                    isinstance(node.args[0], ast.Constant):
                named.add(node.args[0].value)
    assert {"limit", "batch_size", "steps", "sampler", "ema", "devices", "resume", "run_dir"} <= named
    assert {"task", "dataset", "samples", "breakdown", "property_model", "generated_split", "n_generated",
            "init_from"} <= named  # dpcdvae/eval (evaluate, load_generated_split) and dpcdvae/train.py
    assert {"overrides", "table", "only", "notebooks", "samples", "n_workers"} <= named  # config, notebooks, csp
    assert not {a: flag_for(a) for a in named if flag_for(a) not in flags}


def test_an_argument_named_inside_the_message():
    """``lead=False``: the message is the detail alone, naming the argument where it belongs."""
    exc = ArgumentError("overrides", f"unknown config key 'a.b' ({mention('overrides')}); known sections: []",
                        lead=False)
    assert str(exc) == "unknown config key 'a.b' (overrides); known sections: []"
    assert error_line(exc) == "unknown config key 'a.b' (--set); known sections: []"
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is ArgumentError and (back.arg, back.lead, str(back)) == ("overrides", False, str(exc))


def test_config_and_notebook_runner_errors_name_the_argument(tmp_path):
    """An unknown --set key, a table no notebook reproduces, an --only that matches no row, a folder without
    notebooks: the Python argument from the library, the flag on the command line (the same line as before)."""
    from dpcdvae.config import load_config
    from dpcdvae.notebooks.paper import reproduce_paper
    from dpcdvae.notebooks.runner import notebooks_dir, reproduce

    with pytest.raises(ConfigError) as exc:
        load_config("tiny", overrides={"data.on_error": "skip"})
    assert isinstance(exc.value, ConfigArgumentError) and isinstance(exc.value, KeyError)
    assert exc.value.arg == "overrides" and str(exc.value) == \
        "unknown config key 'data.on_error' (overrides); known sections: ['model', 'train']"
    assert error_line(exc.value) == "unknown config key 'data.on_error' (--set); known sections: ['model', 'train']"
    with pytest.raises(ArgumentError) as exc:
        load_config("tiny", overrides={"model.nope": 1})
    assert str(exc.value).startswith("unknown config key 'model.nope' (overrides); known at this level: [")
    cases = [
        (lambda: reproduce("X", "perov_5"), "table", "table must be one of I, S1, II, III, got 'X'",
         "--table must be one of I, S1, II, III, got 'X'"),
        (lambda: reproduce_paper(only=["IX"], dry_run=True), "only", "only IX: no row of the paper matches (items: ",
         "--only IX: no row of the paper matches (items: "),
        (lambda: notebooks_dir(str(tmp_path)), "notebooks",
         f"no notebooks in {tmp_path}: the .ipynb files live in the source checkout's notebooks/ folder (pass "
         f"notebooks DIR)",
         f"no notebooks in {tmp_path}: the .ipynb files live in the source checkout's notebooks/ folder (pass "
         f"--notebooks DIR)"),
    ]
    for call, arg, python, cli in cases:
        with pytest.raises(ArgumentError) as exc:
            call()
        assert exc.value.arg == arg and str(exc.value).startswith(python) and "--" not in str(exc.value)
        assert error_line(exc.value).startswith(cli)


def test_the_notebook_commands_print_the_flag_line_as_before(tmp_path):
    """`dpcdvae reproduce` / `dpcdvae notebooks` end such an error as they always have: its line, exit status 1."""
    from dpcdvae.cli import main

    for argv, line in [(["reproduce", "--table", "X", "--dataset", "perov_5"],
                        "--table must be one of I, S1, II, III, got 'X'"),
                       (["reproduce", "--paper", "--dry-run", "--only", "IX"],
                        "--only IX: no row of the paper matches (items: TABLE[:DATASET[:MODEL]], e.g. I:perov_5, "
                        "II:carbon_24:CDVAE, III)"),
                       (["notebooks", "--list", "--notebooks", str(tmp_path)],
                        f"no notebooks in {tmp_path}: the .ipynb files live in the source checkout's notebooks/ "
                        f"folder (pass --notebooks DIR)")]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == line
