"""The CLI's --laterality reaches the case spec, and a bad value is refused by argparse."""

from __future__ import annotations

import pytest

from nmosim.cli import _spec, build_parser


def test_laterality_option_reaches_the_case_spec():
    args = build_parser().parse_args(
        ["phantom", "--phase", "c", "--laterality", "bilateral_left", "--out", "x"]
    )
    assert _spec(args).laterality == "bilateral_left"
    args = build_parser().parse_args(["phantom", "--phase", "c", "--out", "x"])
    assert _spec(args).laterality is None


def test_unknown_laterality_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["phantom", "--laterality", "both", "--out", "x"])
    assert "laterality" in capsys.readouterr().err
