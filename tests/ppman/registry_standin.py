"""A package registry stand-in on loopback: HTTPS with a certificate from a private CA.

It plays the part of a private mirror (or a TLS-intercepting proxy) that the host's npm and pip
reach: ``/<name>`` answers an npm packument and ``/tarballs/<file>`` the tarball; ``/simple/``
a PEP 503 index with ``/files/<file>`` behind it. The CA and the server certificate (for
``127.0.0.1``) are made with the ``openssl`` command in the test's own directory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import io
import json
import ssl
import subprocess
import tarfile
import threading
import zipfile
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@attrs.frozen
class PrivateCA:
    """A CA certificate and a server certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


def make_private_ca(directory: Path) -> PrivateCA:
    """Make a throw-away CA and a server certificate for ``127.0.0.1`` signed by it."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=pistond test private CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
    )  # fmt: skip
    return PrivateCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")


@attrs.define(eq=False)
class Registry:
    """What the stand-in serves, by path; filled in before or while it runs."""

    files: dict[str, bytes] = attrs.field(factory=dict)
    requests: list[str] = attrs.field(factory=list)
    url: str = ""

    def add_npm_tarball(self, tarball: bytes) -> str:
        """Serve an npm tarball and its packument; returns the package name."""
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            member = archive.extractfile("package/package.json")
            assert member is not None
            manifest: dict[str, Any] = json.load(member)
        name, version = manifest["name"], manifest["version"]
        file = f"{name.replace('/', '-')}-{version}.tgz"
        self.files[f"/tarballs/{file}"] = tarball
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        entry = {
            **manifest,
            "dist": {
                "tarball": f"{self.url}/tarballs/{file}",
                "shasum": hashlib.sha1(tarball).hexdigest(),
                "integrity": integrity,
            },
        }
        packument = {
            "name": name,
            "dist-tags": {"latest": version},
            "versions": {version: entry},
        }
        self.files[f"/{name.replace('/', '%2f')}"] = json.dumps(packument).encode()
        return str(name)

    def add_wheel(self, name: str, wheel_name: str, wheel: bytes) -> None:
        """Serve a wheel in a PEP 503 index under ``/simple/<name>/``."""
        digest = hashlib.sha256(wheel).hexdigest()
        self.files[f"/files/{wheel_name}"] = wheel
        self.files["/simple/"] = f'<a href="{name}/">{name}</a>'.encode()
        self.files[f"/simple/{name}/"] = (
            f'<a href="{self.url}/files/{wheel_name}#sha256={digest}">{wheel_name}</a>'.encode()
        )


def npm_tarball(name: str, version: str, files: dict[str, str]) -> bytes:
    """A minimal npm package tarball (``package/package.json`` plus ``files``)."""
    buffer = io.BytesIO()
    manifest = json.dumps({"name": name, "version": version, "license": "MIT"})
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, text in {"package.json": manifest, **files}.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{path}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pure_wheel(name: str, version: str, module: str) -> tuple[str, bytes]:
    """A minimal pure-Python wheel holding ``<name>.py`` = ``module``; its file name and bytes."""
    dist_info = f"{name}-{version}.dist-info"
    entries = {
        f"{name}.py": module,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: pistond-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in entries) + f"{dist_info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in {**entries, f"{dist_info}/RECORD": record}.items():
            archive.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


@contextlib.contextmanager
def serve_registry(ca: PrivateCA) -> Iterator[Registry]:
    """Serve a :class:`Registry` over HTTPS on 127.0.0.1 (a free port) until the block ends."""
    registry = Registry()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            registry.requests.append(self.path)
            body = registry.files.get(self.path.split("?")[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            kind = "application/json" if body.startswith(b"{") else "application/octet-stream"
            if self.path.startswith("/simple/"):
                kind = "text/html"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(ca.cert), str(ca.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    registry.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
