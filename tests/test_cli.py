import subprocess
import sys

import pytest

from mmsim_cli import main


def test_console_script_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "mmsim_cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("synth", "preprocess", "convert", "train", "evaluate", "generate", "experiments", "app"):
        assert cmd in out.stdout


def test_preprocess_rejects_missing_folder_with_a_message(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert code != 0
    assert "nope" in capsys.readouterr().err


def test_delegated_subcommand_gets_leading_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--help"])
    assert e.value.code == 0
    assert "--index" in capsys.readouterr().out
