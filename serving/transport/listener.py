"""The listening socket's side of a zero-loss drain.

Closing a listening socket resets every connection still in its accept queue: the client's
handshake finished and its request may already be in the kernel, yet it gets a reset. So the
drain first makes the listener ignore new handshakes (a socket filter that drops every packet
reaching the LISTENING socket; connections already established are separate sockets and keep
working), lets the server accept what is queued, and only then closes it. A client whose SYN is
dropped retries it, meets the closed port and gets "connection refused": none of its bytes
reached this process, so it can safely go elsewhere.
"""

from __future__ import annotations

import ctypes
import socket
import struct

_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_BPF_RET_K = 0x06  # BPF_RET | BPF_K: "return k bytes of the packet"; k = 0 drops it


def bind_listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound TCP socket (not yet listening); with ``reuse_port`` several processes each bind
    their own on the same port and the kernel spreads new connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def refuse_new_connections(fd: int) -> bool:
    """Attach a drop-everything filter to the listening socket ``fd``: handshakes not yet
    queued are ignored from now on. False where the platform has no socket filters."""
    instruction = struct.pack("HBBI", _BPF_RET_K, 0, 0, 0)
    program = ctypes.create_string_buffer(instruction)
    fprog = struct.pack("@HP", 1, ctypes.addressof(program))
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    finally:
        sock.detach()  # the fd stays owned by the server
    return True
