"""The retrieval diagnosis's attribute-blind ceilings, by hand."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from retrieval_diagnose import blind_ceilings  # noqa: E402


def test_blind_ceilings_hand_computed():
    parts = [{"colour": "red", "shape": "oval", "motion": "up"},
             {"colour": "red", "shape": "kite", "motion": "up"},
             {"colour": "blue", "shape": "oval", "motion": "up"}]
    got = blind_ceilings(parts)
    # shape-blind: clips 0 and 1 agree on (red, up) -> 1/2 each, clip 2 alone -> 1: mean 2/3
    assert got["shape_blind_r1"] == pytest.approx(100 * 2 / 3, abs=0.01)
    # colour-blind: clips 0 and 2 agree on (oval, up) -> 1/2 each, clip 1 alone: mean 2/3
    assert got["colour_blind_r1"] == pytest.approx(100 * 2 / 3, abs=0.01)
    # motion-blind: every (colour, shape) is unique
    assert got["motion_blind_r1"] == 100.0
