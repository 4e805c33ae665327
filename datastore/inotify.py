"""inotify through ctypes on libc: enough to watch one directory for files being replaced or closed.

No dependency beyond the C library; `available()` says whether this kernel and libc offer inotify, and
the watcher falls back to polling when they do not.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

from proto.record import record

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; the name follows, NUL-padded to len


@record(frozen=True, slots=True)
class InotifyEvent:
    wd: int
    mask: int
    name: str


def _libc() -> ctypes.CDLL | None:
    try:
        # the process's own symbols, libc's among them: ctypes.util.find_library would run ldconfig
        # and bring shutil, tempfile, bz2 and lzma into every daemon
        lib = ctypes.CDLL(None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


class Inotify:
    """One inotify instance; `fileno()` can be waited on with select/poll or an event loop."""

    def __init__(self) -> None:
        if _LIBC is None:
            raise OSError("inotify is not available in this C library")
        fd = _LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        assert _LIBC is not None
        wd = _LIBC.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        return wd

    def fileno(self) -> int:
        return self.fd

    def read(self) -> Iterator[InotifyEvent]:
        """The events queued now (none if nothing is pending)."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size
            name = data[pos:pos + length].rstrip(b"\0").decode(errors="surrogateescape")
            pos += length
            yield InotifyEvent(wd, mask, name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
