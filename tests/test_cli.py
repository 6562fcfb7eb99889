import subprocess
import sys

import pytest

from mmsim_cli import build_parser, main


def test_help_lists_every_subcommand():
    text = build_parser().format_help()
    for cmd in ("synth", "preprocess", "train", "evaluate", "generate", "app"):
        assert cmd in text


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "mmsim_cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "preprocess" in out.stdout


def test_preprocess_rejects_missing_folder_with_a_message(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert code != 0
    assert "nope" in capsys.readouterr().err


def test_bad_flag_value_is_reported():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "out", "--subjects", "many"])


def test_delegated_subcommand_gets_leading_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--help"])
    assert e.value.code == 0
    assert "--index" in capsys.readouterr().out
