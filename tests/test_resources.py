"""pistond.resources: shipped files come from the package, or from the checkout of an editable
install that holds the very package being run; never from a guessed path."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import attrs
import pytest

from pistond import resources

CHECKOUT = Path(__file__).resolve().parent.parent


@attrs.frozen
class FakeDistribution:
    """A distribution whose direct_url.json says what a test wants."""

    direct_url: str | None

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.direct_url


def _records(monkeypatch: pytest.MonkeyPatch, *direct_urls: str | None) -> None:
    def distributions(name: str) -> list[FakeDistribution]:
        assert name == "pistond"
        return [FakeDistribution(direct_url) for direct_url in direct_urls]

    monkeypatch.setattr(importlib.metadata, "distributions", distributions)


def test_resources_editable_install_uses_its_checkout() -> None:
    """This test run's editable install finds recipes and units in its checkout."""
    assert resources.editable_checkout() == CHECKOUT
    assert resources.shipped(resources.RECIPES) == CHECKOUT / "packages"
    assert resources.shipped(resources.UNITS) == CHECKOUT / "systemd"
    assert resources.shipped("no-such-file") is None


@pytest.mark.parametrize(
    "direct_url",
    [
        None,
        "not json",
        json.dumps({"url": CHECKOUT.as_uri(), "dir_info": {}}),
        json.dumps({"url": "https://example.invalid/pistond", "dir_info": {"editable": True}}),
        json.dumps({"url": "file:///elsewhere", "dir_info": {"editable": True}}),
    ],
    ids=["no record", "broken record", "not editable", "not a file URL", "another checkout"],
)
def test_resources_other_records_name_no_checkout(
    monkeypatch: pytest.MonkeyPatch, direct_url: str | None
) -> None:
    """Only an editable record of the checkout holding this very package counts."""
    _records(monkeypatch, direct_url)
    assert resources.editable_checkout() is None
    assert resources.shipped(resources.RECIPES) is None


def test_resources_a_shadowing_egg_info_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build's pistond.egg-info (no direct_url.json) found first does not hide the editable
    install's record."""
    editable = json.dumps({"url": CHECKOUT.as_uri(), "dir_info": {"editable": True}})
    _records(monkeypatch, None, editable)
    assert resources.editable_checkout() == CHECKOUT


def test_resources_package_share_comes_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A share/ directory inside the package (a wheel install) wins over any checkout."""
    package = tmp_path / "pistond"
    (package / "share" / "packages").mkdir(parents=True)
    monkeypatch.setattr(resources.importlib.resources, "files", lambda _name: package)
    assert resources.shipped(resources.RECIPES) == package / "share" / "packages"
