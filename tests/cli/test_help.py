"""``--help`` of the executable and of each command (true to the code: argparse's own)."""

from __future__ import annotations

import subprocess

import pytest

from kernelmon.cli import main
from kernelmon.cli.parser import SUMMARY

from .conftest import KERNELMON, Cli


@pytest.mark.parametrize("command", [*SUMMARY, "ls"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kernelmon {'list' if command == 'ls' else command} ")
    assert "Exit status: 0 done" in out


def test_help_runs_without_qt(cli: Cli):
    done = cli("--headless", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: kernelmon serve ")
    assert not cli.qt_log.exists()


def test_the_windows_help_names_the_commands(cli: Cli):
    env = {k: v for k, v in cli.env.items() if k != "PYTHONPATH"}  # the window needs Qt
    env["QT_QPA_PLATFORM"] = "offscreen"
    done = subprocess.run(
        [str(KERNELMON), "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--no-tray" in done.stdout  # the window's options...
    for command, text in SUMMARY.items():  # ...then the commands
        assert f"{command:<10} {text}" in done.stdout


def test_without_a_command_it_is_the_window_which_needs_qt(cli: Cli):
    """The blocker works: the window, which imports Qt, cannot start under it."""
    done = cli("--version")
    assert done.returncode != 0
    assert done.stderr.startswith("kernelmon cannot open its window (PySide6 is blocked")
    assert "Traceback" not in done.stderr
    assert cli.qt_log.read_text().startswith("PySide6")
    cli.qt_log.unlink()


def test_without_qt_help_shows_the_commands(cli: Cli):
    done = cli("--help")
    assert done.returncode == 0, done.stderr
    assert "Without a command, kernelmon opens its window." in " ".join(done.stdout.split())
    cli.qt_log.unlink()


def test_usage_errors_exit_2(cli: Cli):
    done = cli("stop")
    assert done.returncode == 2
    assert "the following arguments are required: ID" in done.stderr
