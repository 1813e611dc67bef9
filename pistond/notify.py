"""sd_notify: tell systemd that the daemon is ready, is stopping, or what it is doing.

A :class:`Notifier` sends one datagram per call to the socket named by ``NOTIFY_SOCKET`` (a path,
or ``@name`` for an abstract socket). Without that variable every call is a no-op. Sending never
blocks and never raises into the daemon: a failure is logged at debug level and forgotten, as
systemd's own ``sd_notify`` does.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from typing import Final

import attrs

logger = logging.getLogger(__name__)

NOTIFY_VARIABLE: Final = "NOTIFY_SOCKET"
MAX_STATUS_LENGTH: Final = 1024
"""Characters of a STATUS text kept; status lines are for humans in ``systemctl status``."""


def _notify_address(value: str) -> str | None:
    """The socket address of a NOTIFY_SOCKET value, or None if it is not one we can use."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


@attrs.define(eq=False)
class Notifier:
    """Sends sd_notify messages to systemd; a no-op when the daemon was not started by it.

    Build it with :meth:`from_environ` once at startup; the methods are cheap, synchronous and
    safe to call from trio tasks (a Unix datagram send does not block).
    """

    address: str | None
    """Socket address (abstract names start with NUL); None disables the notifier."""
    _socket: socket.socket | None = attrs.field(default=None, init=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``NOTIFY_SOCKET``, which is then removed from the environment.

        The variable is removed from ``os.environ`` (and from ``environ`` if it is mutable), so
        neither the fork server nor any sandbox inherits the address.

        Args:
            environ: the environment to read; ``os.environ`` when omitted.
        """
        source = os.environ if environ is None else environ
        value = source.get(NOTIFY_VARIABLE)
        if isinstance(source, MutableMapping):
            source.pop(NOTIFY_VARIABLE, None)
        os.environ.pop(NOTIFY_VARIABLE, None)
        if not value:
            return cls(None)
        address = _notify_address(value)
        if address is None:
            logger.debug("unsupported NOTIFY_SOCKET %r; notifications disabled", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        """Whether messages are sent anywhere."""
        return self.address is not None

    def ready(self) -> None:
        """Report that startup finished and the daemon accepts requests (READY=1)."""
        self.notify("READY=1")

    def stopping(self) -> None:
        """Report that the daemon began shutting down (STOPPING=1)."""
        self.notify("STOPPING=1")

    def status(self, text: str) -> None:
        """Set the one-line status text shown by ``systemctl status`` (STATUS=...)."""
        line = " ".join(text.split())[:MAX_STATUS_LENGTH]
        self.notify(f"STATUS={line}")

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` assignments in one datagram; never raises.

        Args:
            assignments: lines such as ``"READY=1"``; none may contain a newline.
        """
        if self.address is None or not assignments:
            return
        message = "\n".join(assignments).encode("utf-8", errors="replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message, self.address)
        except OSError as exc:
            logger.debug("sd_notify %r failed: %s", assignments[0], exc)

    def close(self) -> None:
        """Close the sending socket; later messages open a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
