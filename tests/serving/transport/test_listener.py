"""The listening socket's side of a zero-loss drain: several workers can bind one port with
SO_REUSEPORT, and a drop-everything filter stops new handshakes while every connection already
queued or established keeps working."""

from __future__ import annotations

import errno
import select
import socket

import pytest

from serving.transport.listener import bind_listener, refuse_new_connections


def test_workers_bind_the_same_port_only_with_reuse_port() -> None:
    first = bind_listener("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    second = bind_listener("127.0.0.1", port, reuse_port=True)
    try:
        assert second.getsockname()[1] == port
        assert first.get_inheritable()  # handed to spawned workers
        first.listen()
        with pytest.raises(OSError, match="in use"):  # without it the port is taken
            bind_listener("127.0.0.1", port, reuse_port=False)
    finally:
        first.close()
        second.close()


def test_an_ipv6_host_gets_an_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        sock = bind_listener("::1", 0, reuse_port=False)
    except OSError:
        pytest.skip("::1 is not configured here")
    with sock:
        assert sock.family == socket.AF_INET6


def test_after_the_filter_queued_connections_are_served_and_new_ones_never_complete() -> None:
    listener = bind_listener("127.0.0.1", 0, reuse_port=False)
    listener.listen(16)
    address = listener.getsockname()
    queued = socket.create_connection(address, timeout=10)  # in the accept queue now
    late = socket.socket()
    try:
        assert refuse_new_connections(listener.fileno())
        assert listener.fileno() != -1  # the fd still belongs to the server
        accepted, _ = listener.accept()
        with accepted:
            queued.sendall(b"ping")
            assert accepted.recv(4) == b"ping"  # queued before the filter: served
        late.setblocking(False)
        assert late.connect_ex(address) == errno.EINPROGRESS  # the SYN is out
        # Its SYN is dropped: the handshake cannot complete, however long it is given (a
        # positive answer here would show at once; the wait only bounds the test).
        _, writable, _ = select.select([], [late], [], 0.5)
        assert writable == []
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # and nothing new reached the queue
    finally:
        queued.close()
        late.close()
        listener.close()
