"""Runtime resolution: name or alias, semver range, highest version wins, atomic reloads."""

from __future__ import annotations

import pytest

from pistond.errors import RuntimeUnknown
from pistond.models import RuntimeInfo
from pistond.runtimes import Runtime, RuntimeRegistry
from pistond.sandbox.spec import RootView


def make_runtime(
    language: str, version: str, aliases: tuple[str, ...] = (), package: str | None = None
) -> Runtime:
    return Runtime(
        language=language,
        version=version,
        aliases=aliases,
        package=package,
        compiled=False,
        root=RootView(),
        compile_argv=None,
        run_argv=("/bin/bash", f"/piston/packages/{language}/{version}/run"),
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.fixture
def registry() -> RuntimeRegistry:
    return RuntimeRegistry(
        lambda: [
            make_runtime("python", "3.9.4", ("py", "python3")),
            make_runtime("python", "3.12.0", ("py", "python3")),
            make_runtime("python", "3.10.0", ("py", "python3")),
            make_runtime("python", "3.13.0-rc.1", ("py",)),
            make_runtime("c++", "12.2.0", ("cpp", "g++"), package="gcc"),
        ]
    )


def test_runtimes_resolve_by_name(registry: RuntimeRegistry) -> None:
    """The language name with an exact version finds that runtime."""
    assert registry.resolve("python", "3.10.0").version == "3.10.0"


def test_runtimes_resolve_by_alias(registry: RuntimeRegistry) -> None:
    """An alias finds the runtime; the runtime reports its own language, never the alias."""
    runtime = registry.resolve("cpp", "*")
    assert (runtime.language, runtime.version, runtime.package) == ("c++", "12.2.0", "gcc")


def test_runtimes_resolve_highest_wins(registry: RuntimeRegistry) -> None:
    """Among the versions a range matches, the highest wins, whatever the load order."""
    assert registry.resolve("py", "*").version == "3.12.0"
    assert registry.resolve("python", "3.x").version == "3.12.0"
    assert registry.resolve("python", "<3.12").version == "3.10.0"
    assert registry.resolve("python3", "~3.9").version == "3.9.4"


def test_runtimes_resolve_prerelease_only_exact(registry: RuntimeRegistry) -> None:
    """A prerelease is reached only by its own version, never by `*`."""
    assert registry.resolve("python", "3.13.0-rc.1").version == "3.13.0-rc.1"
    assert registry.resolve("python", ">=3.12").version == "3.12.0"


@pytest.mark.parametrize(
    ("language", "version"),
    [("python", "4"), ("python", "latest"), ("ruby", "*"), ("Python", "*"), ("gcc", "*")],
)
def test_runtimes_resolve_unknown_message(
    registry: RuntimeRegistry, language: str, version: str
) -> None:
    """No match raises RuntimeUnknown with Piston's text; names are case-sensitive."""
    with pytest.raises(RuntimeUnknown, match="runtime is unknown") as caught:
        registry.resolve(language, version)
    assert caught.value.message == f"{language}-{version} runtime is unknown"


def test_runtimes_list_in_load_order(registry: RuntimeRegistry) -> None:
    """runtimes() keeps the plugins' load order (Piston does not sort)."""
    assert [r.version for r in registry.runtimes()][:3] == ["3.9.4", "3.12.0", "3.10.0"]


def test_runtimes_reload_swaps_snapshot() -> None:
    """reload() replaces the whole set; duplicates of (language, version) keep the first."""
    batches = [[make_runtime("bash", "5.2.15")], []]
    registry = RuntimeRegistry(lambda: batches[0])
    assert [r.language for r in registry.runtimes()] == ["bash"]
    batches[0] = [make_runtime("lua", "5.4.4", ("lua5.4",)), make_runtime("lua", "5.4.4")]
    registry.reload()
    assert [(r.language, r.aliases) for r in registry.runtimes()] == [("lua", ("lua5.4",))]
    with pytest.raises(RuntimeUnknown):
        registry.resolve("bash", "*")


def test_runtimes_info_and_immutable_env() -> None:
    """info() is the PROTOCOL.md entry; env and limit overrides cannot be changed."""
    runtime = make_runtime("c", "12.2.0", ("gcc",), package="gcc")
    assert runtime.info() == RuntimeInfo("c", "12.2.0", ("gcc",), "gcc", False)
    with pytest.raises(TypeError):
        runtime.env["PATH"] = "/evil"  # type: ignore[index]
