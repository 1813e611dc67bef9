"""Case 6: a POSIX message queue outliving its job. argv[1]: ``create`` or ``open``."""

import ctypes
import os
import sys

from probe import say

rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
NAME = b"/pistond-probe"
SECRET = b"pistond-mqueue-secret"


def errname() -> str:
    import errno

    return errno.errorcode.get(ctypes.get_errno(), "?")


if sys.argv[1] == "create":
    fd = rt.mq_open(NAME, os.O_CREAT | os.O_RDWR, 0o666, None)
    if fd < 0:
        say("create", errname())
    else:
        say("create", "ok")
        say("send", "ok" if rt.mq_send(fd, SECRET, len(SECRET), 0) == 0 else errname())
else:
    fd = rt.mq_open(NAME, os.O_RDWR, 0, None)
    if fd < 0:
        say("open", errname())
    else:
        buffer = ctypes.create_string_buffer(8192)
        size = rt.mq_receive(fd, buffer, 8192, None)
        say("open", "ok")
        say("received", buffer.raw[:size] if size >= 0 else errname())
