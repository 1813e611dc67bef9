"""msgpack-rpc over Unix sockets, in layers: framing, messages, connection, server and client.

``pistond.rpc.client`` is public; the server side is what the daemon wires together.
"""

from __future__ import annotations

from pistond.rpc.client import NotificationOverflow as NotificationOverflow
from pistond.rpc.client import RemoteError as RemoteError
from pistond.rpc.client import RpcClient as RpcClient
from pistond.rpc.client import Subscription as Subscription
from pistond.rpc.client import error_from_wire as error_from_wire
from pistond.rpc.client import open_rpc_client as open_rpc_client
from pistond.rpc.connection import Connection as Connection
from pistond.rpc.connection import ConnectionLost as ConnectionLost
from pistond.rpc.connection import Dispatcher as Dispatcher
from pistond.rpc.connection import Peer as Peer
from pistond.rpc.connection import PeerCredentials as PeerCredentials
from pistond.rpc.framing import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from pistond.rpc.messages import Notification as Notification
from pistond.rpc.server import serve_rpc as serve_rpc
