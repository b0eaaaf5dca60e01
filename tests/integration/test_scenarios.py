"""Every scenario verifies: its starting state fails as declared, its solution passes."""

from __future__ import annotations

import pytest

from labctl.scenario import scenario_names
from labctl.verify import verify

from .conftest import pytestmark_local

pytestmark = [pytestmark_local, pytest.mark.root, pytest.mark.slow]


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_verifies(name: str) -> None:
    outcome = verify(name)
    assert outcome.ok, outcome.summary()
