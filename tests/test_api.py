"""The RPC method table over a real connection (in memory) with a fake sandbox."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pistond._version import __version__
from pistond.api import Api
from pistond.config import load_config
from pistond.errors import (
    Forbidden,
    InvalidParams,
    JobNotFound,
    MethodNotFound,
    PackageNotFound,
)
from pistond.jobs import JobManager
from pistond.models import SandboxInfo
from pistond.rpc import Connection, PeerCredentials, RpcClient
from pistond.rpc.framing import MessageDecoder, pack
from pistond.runtimes import Runtime, RuntimeRegistry
from pistond.sandbox.spec import RootView
from pistond.testing.fake_sandbox import FakeSandbox, FakeStage, stage_result
from pistond.testing.memory_rpc import open_memory_rpc

PYTHON = Runtime(
    language="python",
    version="3.11.2",
    aliases=("py",),
    package=None,
    compiled=False,
    root=RootView(),
    compile_argv=None,
    run_argv=("/bin/bash", "/piston/packages/python/3.11.2/run"),
)
NOBODY = PeerCredentials(pid=1, uid=65534, gid=65534)


@attrs.define
class FakePackages:
    installs: list[tuple[str, str]] = attrs.field(factory=list)

    async def packages(self) -> list[dict[str, Any]]:
        return [{"language": "python", "version": "3.11.2", "installed": True, "source": "local"}]

    async def install(self, language: str, version: str, progress: Any) -> tuple[str, str]:
        if language != "python":
            raise PackageNotFound(f"Requested package {language}-{version} does not exist")
        await progress("building")
        self.installs.append((language, version))
        return language, "3.11.2"

    async def uninstall(self, language: str, version: str) -> tuple[str, str]:
        return language, "3.11.2"


def make_api(sandbox: FakeSandbox, **environ: str) -> Api:
    config = load_config(environ)
    registry = RuntimeRegistry(lambda: [PYTHON])
    return Api(
        config=config,
        jobs=JobManager.create(config, sandbox, registry),  # fake sandbox, same interface
        registry=registry,
        packages=FakePackages(),  # same interface as PackageManager
        sandbox_info=SandboxInfo(cgroup="hybrid", seccomp=True, network=False),
        admin_gid=None,
    )


FILES = [{"name": "main.py", "content": "print(1)"}]


async def test_api_ping() -> None:
    """ping answers the version and protocol 1."""
    async with open_memory_rpc(make_api(FakeSandbox())) as client:
        assert await client.call("ping") == {"version": __version__, "protocol": 1}
        with pytest.raises(InvalidParams, match="unknown field 'x'"):
            await client.call("ping", {"x": 1})


async def test_api_status_shape() -> None:
    """status reports uptime, job counters, sandbox, configured limits and the compile cache."""
    async with open_memory_rpc(make_api(FakeSandbox())) as client:
        status = await client.call("status")
    assert set(status) == {"version", "uptime", "jobs", "sandbox", "limits", "compile_cache"}
    assert status["compile_cache"] == {
        "enabled": False,
        "max_bytes": 0,
        "bytes": 0,
        "entries": 0,
        "hits": 0,
        "misses": 0,
        "stores": 0,
        "evictions": 0,
        "corrupt": 0,
    }
    assert status["jobs"] == {"running": 0, "queued": 0, "completed": 0, "failed": 0}
    assert status["sandbox"] == {"cgroup": "hybrid", "seccomp": True, "network": False}
    assert status["limits"]["run_timeout"] == 3000


async def test_api_runtimes() -> None:
    """runtimes lists language, version, aliases, runtime and compiled."""
    async with open_memory_rpc(make_api(FakeSandbox())) as client:
        runtimes = await client.call("runtimes")
    assert runtimes == [
        {
            "language": "python",
            "version": "3.11.2",
            "aliases": ["py"],
            "runtime": None,
            "compiled": False,
        }
    ]


async def test_api_execute_result_shape() -> None:
    """execute returns language, version, compile (nil) and run with every Stage field."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="1\n")))
    async with open_memory_rpc(make_api(sandbox)) as client:
        result = await client.call("execute", {"language": "py", "version": "3", "files": FILES})
    assert result["language"] == "python"
    assert result["version"] == "3.11.2"
    assert result["compile"] is None
    assert result["run"] == {
        "stdout": "1\n",
        "stderr": "",
        "output": "1\n",
        "code": 0,
        "signal": None,
        "status": None,
        "message": None,
        "cpu_time": 1,
        "wall_time": 2,
        "memory": 1_000_000,
        "cached": False,
    }
    assert result["tests"] is None


async def test_api_unknown_method_and_runtime() -> None:
    """An unknown method is method_not_found; an unknown runtime is runtime_unknown."""
    async with open_memory_rpc(make_api(FakeSandbox())) as client:
        with pytest.raises(MethodNotFound):
            await client.call("launch")
        with pytest.raises(Exception, match="ruby-\\* runtime is unknown") as caught:
            await client.call("execute", {"language": "ruby", "version": "*", "files": FILES})
        assert caught.value.code == "runtime_unknown"


async def test_api_package_changes_need_root_or_group() -> None:
    """packages.install and packages.uninstall are forbidden to other users."""
    api = make_api(FakeSandbox())
    async with open_memory_rpc(api, NOBODY) as client:
        assert len(await client.call("packages")) == 1
        with pytest.raises(Forbidden):
            await client.call("packages.install", {"language": "python", "version": "*"})
        with pytest.raises(Forbidden):
            await client.call("packages.uninstall", {"language": "python", "version": "*"})
    async with open_memory_rpc(api) as client:
        reply = await client.call("packages.install", {"language": "python", "version": "3"})
        assert reply == {"language": "python", "version": "3.11.2"}
        with pytest.raises(PackageNotFound):
            await client.call("packages.install", {"language": "cobol", "version": "*"})


async def test_api_package_group_member_is_admin() -> None:
    """A peer whose gid is the socket group may manage packages."""
    api = make_api(FakeSandbox())
    api.admin_gid = 4242
    async with open_memory_rpc(api, PeerCredentials(pid=1, uid=5000, gid=4242)) as client:
        reply = await client.call("packages.uninstall", {"language": "python", "version": "*"})
    assert reply["version"] == "3.11.2"


async def _events(client: RpcClient, job: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with client.subscribe("job.") as subscription:
        async for note in subscription:
            if note.params.get("job") == job:
                events.append((note.method, note.params))
            if len(events) == count:
                break
    return events


async def test_api_interactive_job_events_in_order() -> None:
    """job.start, then job.stage, job.output, job.exit, job.done; stdin reaches the program."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(echo=True))
    async with open_memory_rpc(make_api(sandbox)) as client:
        with client.subscribe("job.") as subscription:
            started = await client.call(
                "job.start", {"language": "py", "version": "*", "files": FILES, "stdin": "a"}
            )
            job = started["job"]
            assert started == {"job": job, "language": "python", "version": "3.11.2"}
            await client.call("job.write", {"job": job, "data": b"b"})
            await client.call("job.close_stdin", {"job": job})
            events = []
            async for note in subscription:
                events.append((note.method, note.params))
                if note.method == "job.done":
                    break
    methods = [method for method, _ in events]
    assert methods[0] == "job.stage"
    assert events[0][1] == {"job": job, "stage": "run"}
    assert methods[-2:] == ["job.exit", "job.done"]
    output = b"".join(p["data"] for m, p in events if m == "job.output")
    assert output == b"ab"
    exit_params = events[-2][1]
    assert exit_params["code"] == 0
    assert "stdout" not in exit_params
    assert events[-1][1] == {"job": job}
    assert bytes(sandbox.calls[0].stdin) == b"ab"


async def test_api_job_signal_and_kill() -> None:
    """job.signal reaches the running stage; job.kill ends it with SIGKILL."""
    sandbox = FakeSandbox(default=FakeStage(duration=math.inf))
    async with open_memory_rpc(make_api(sandbox)) as client:
        with client.subscribe("job.") as subscription:
            job = (
                await client.call("job.start", {"language": "py", "version": "*", "files": FILES})
            )["job"]
            async for note in subscription:
                if note.method == "job.stage":
                    break
            await client.call("job.signal", {"job": job, "signal": "SIGINT"})
            with pytest.raises(InvalidParams, match="signal must be a name from Piston"):
                await client.call("job.signal", {"job": job, "signal": "SIGNOPE"})
            await client.call("job.kill", {"job": job})
            async for note in subscription:
                if note.method == "job.exit":
                    assert note.params["signal"] == "SIGKILL"
                if note.method == "job.done":
                    break
    assert sandbox.calls[0].signals == [2]
    assert sandbox.calls[0].killed


async def test_api_jobs_belong_to_their_connection() -> None:
    """Another connection gets job_not_found; closing the owner kills its job."""
    sandbox = FakeSandbox(default=FakeStage(duration=math.inf))
    api = make_api(sandbox)
    async with open_memory_rpc(api) as owner:
        job = (await owner.call("job.start", {"language": "py", "version": "*", "files": FILES}))[
            "job"
        ]
        async with open_memory_rpc(api) as other:
            with pytest.raises(JobNotFound):
                await other.call("job.kill", {"job": job})
        await trio.testing.wait_all_tasks_blocked()
        assert api.jobs.counts().running == 1
    await trio.testing.wait_all_tasks_blocked()
    assert api.jobs.counts().running == 0
    assert sandbox.open_boxes == 0


async def test_api_job_of_a_client_that_does_not_read_is_killed() -> None:
    """Output nobody reads fills the connection's notification buffer: the job is killed and
    its job.done, after the output that fitted, says why."""
    chunks = tuple(("stdout", b"o" * 1000) for _ in range(50))
    sandbox = FakeSandbox(default=FakeStage(chunks=chunks, duration=math.inf))
    api = make_api(sandbox, PISTON_OUTPUT_MAX_SIZE="1000000")
    client, server = trio.testing.lockstep_stream_pair()
    connection = Connection(server, dispatcher=api, notification_buffer=8000)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        await client.send_all(
            pack([0, 1, "job.start", [{"language": "py", "version": "*", "files": FILES}]])
        )
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
            assert (api.jobs.counts().running, sandbox.open_boxes) == (0, 0)
            decoder = MessageDecoder()
            messages: list[Any] = []
            while not messages or messages[-1][1] != "job.done":
                decoder.feed(await client.receive_some(65536))
                messages.extend(decoder)
        nursery.cancel_scope.cancel()
    done = messages[-1][2][0]
    assert done["error"]["code"] == "killed"
    assert done["error"]["message"].startswith("job killed: its client did not read its output")
    outputs = [m for m in messages if m[:2] == [2, "job.output"]]
    assert 1 <= len(outputs) < 10
    assert sandbox.open_boxes == 0
