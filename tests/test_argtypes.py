"""Numeric options of every command: NaN, infinities, negatives and zero where it means nothing are argparse
errors that name the option (exit status 2), never a traceback."""

import pytest

from hwbench_pipeline.cli import build_parser, main

#: integer options whose range the command checks itself, in one line with exit status 2 (host cores, port
#: range, the warehouse's retention rule); tested in tests/bench/test_paired.py, tests/test_api.py and
#: tests/test_db_cli.py
CHECKED_BY_THE_COMMAND = {("compare", "--threads"), ("serve", "--port"), ("db", "retain", "--keep-runs")}


def _refusal(capsys, argv: list[str]) -> str:
    """The error line argparse printed for ``argv`` (after checking that it exited with status 2)."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def _numeric_options(parser, path: tuple[str, ...] = ()):
    """(subcommand path, action) of every option that converts its value, in every subcommand."""
    for action in parser._actions:
        if isinstance(action.choices, dict):  # a subcommand: its name -> its parser
            for name, subparser in action.choices.items():
                yield from _numeric_options(subparser, (*path, name))
        elif action.option_strings and action.type is not None:
            yield path, action


def test_every_numeric_option_refuses_nan_infinity_and_negatives_at_parse_time(capsys):
    options = list(_numeric_options(build_parser()))
    assert len(options) > 20  # the walk reached the subcommands
    for path, action in options:
        option = action.option_strings[0]
        assert action.type is not float, f"{' '.join(path)} {option}: bare float accepts nan; use commands/argtypes.py"
        values = ["nan", "inf", "-inf", "1e999"] + ([] if (*path, option) in CHECKED_BY_THE_COMMAND else ["-1"])
        for value in values:
            line = _refusal(capsys, [*path, f"{option}={value}"])
            assert f"error: argument {option}: " in line and repr(value) in line, (path, option, value, line)


@pytest.mark.parametrize("argv, option, expected", [
    (["bench", "--timeout", "nan"], "--timeout", "expected a number of seconds > 0 and <= 2147483, got 'nan'"),
    (["bench", "--timeout", "inf"], "--timeout", "got 'inf'"),
    (["bench", "--timeout", "-1"], "--timeout", "got '-1'"),
    (["bench", "--timeout", "3000000"], "--timeout", "got '3000000'"),
    (["bench", "--threads", "0"], "--threads", "expected a positive integer, got '0'"),
    (["bench", "--processes", "0"], "--processes", "expected a positive integer, got '0'"),
    (["bench", "--max-processes", "0"], "--max-processes", "expected a positive integer, got '0'"),
    (["bench", "--ci-target", "1"], "--ci-target", "expected a number between 0 and 1, got '1'"),
    (["bench", "--max-seconds", "0"], "--max-seconds", "expected a positive number, got '0'"),
    (["compare", "--pairs", "0"], "--pairs", "expected a positive integer, got '0'"),
    (["compare", "--seq", "-16"], "--seq", "expected a positive integer, got '-16'"),
    (["compare", "--threshold", "nan"], "--threshold", "expected a positive number, got 'nan'"),
    (["compare", "--timeout", "1e300"], "--timeout", "got '1e300'"),
    (["recommend", "--top", "0"], "--top", "expected a positive integer, got '0'"),
    (["recommend", "--seq", "0"], "--seq", "expected a positive integer, got '0'"),
    (["recommend", "--budget-per-hour", "nan"], "--budget-per-hour", "expected a number >= 0, got 'nan'"),
    (["recommend", "--memory-gb", "inf"], "--memory-gb", "expected a positive number, got 'inf'"),
    (["db", "compact", "--small-mb", "nan"], "--small-mb", "expected a positive number, got 'nan'"),
    (["db", "compact", "--target-mb", "0"], "--target-mb", "expected a positive number, got '0'"),
    (["db", "retain", "--older-than-days", "-1"], "--older-than-days", "expected a number of days >= 0"),
    (["db", "retain", "--older-than-days", "1e9"], "--older-than-days", "and <= 100000, got '1e9'"),
    (["serve", "--max-rows", "0"], "--max-rows", "expected a positive integer, got '0'"),
    (["serve", "--max-seconds", "1e300"], "--max-seconds", "got '1e300'"),
    (["report", "--alpha", "nan"], "--alpha", "expected a number between 0 and 1, got 'nan'"),
    (["query", "compare", "--model", "bert", "--batch", "-1"], "--batch", "expected a positive integer, got '-1'"),
])
def test_a_bad_number_is_one_argparse_error_naming_the_option(capsys, argv, option, expected):
    line = _refusal(capsys, argv)
    assert line.startswith("hwbench ") and f"error: argument {option}: " in line and expected in line, line


@pytest.mark.parametrize("argv, expected", [
    (["bench", "--model", "bert", "--processes", "4", "--max-processes", "3"],
     "--processes 4 is more than --max-processes 3"),
    (["bench", "--model", "bert", "--batch", "1,1"], "--batch lists 1 more than once, got '1,1'"),
    (["bench", "--model", "bert", "--seq", "16,32,16"], "--seq lists 16 more than once"),
    (["compare", "--model", "bert", "--precision", "fp32,bf16", "--threads", "-1"], "--threads must be between 1"),
    (["serve", "--port", "-1"], "--port must be between 1 and 65535, got -1"),
    (["recommend", "--model", "bert", "--batch", "8,1,8"], "--batch lists 8 more than once, got '8,1,8'"),
])
def test_options_checked_together_or_against_the_host_are_one_line_exit_2(capsys, monkeypatch, tmp_path, argv,
                                                                          expected):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("HWBENCH_API_TOKEN", raising=False)
    assert main([*argv, *(["--data-dir", str(tmp_path)] if argv[0] in ("serve", "recommend") else [])]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
