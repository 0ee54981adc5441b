"""A loopback TCP proxy that the fault tests can cut or stall at will.

The store connects to the proxy, the proxy to the real server; the outage
happens in between, so the database servers themselves are never stopped
or reconfigured. Modes:

- pass: bytes flow both ways.
- ``cut()``: every open connection is closed at once, and new ones are
  reset as soon as they are accepted, until ``restore()``: a server that
  went down, or a network that dropped every connection.
- ``stall()``: connections stay open but no byte moves either way, and new
  ones are accepted but get no answer, until ``restore()``: a server or a
  middlebox that hangs while the host's TCP stack still answers. Bytes
  sent meanwhile wait in the sockets and move on after ``restore()``.

One thread accepts; one thread per connection forwards both directions.
Only 127.0.0.1 is used, for listening and as the target.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Dict, List, Optional

LOOPBACK = "127.0.0.1"
# How long a thread waits before looking at the mode again: the proxy's
# reaction time to cut(), restore() and close().
_POLL = 0.05
# Upper bounds, so that no proxy thread can hang a test run.
_CONNECT_TIMEOUT = 5.0
_SEND_TIMEOUT = 5.0
_JOIN_TIMEOUT = 5.0
_CHUNK = 65536


class _Link:
    """One client connection and, once it flows, its upstream connection."""

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: Optional[socket.socket] = None
        # Held while a chunk is forwarded: stall() and cut() take it to know
        # that no chunk is in flight once they return.
        self.lock = threading.Lock()
        self.closed = False

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client

    def kill(self) -> None:
        """Shut both sockets now; the link's own thread closes them."""
        with self.lock:
            self.closed = True
            for sock in (self.client, self.upstream):
                _shutdown(sock)

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``.

    Use it as a context manager, or call ``close()``: it stops accepting,
    closes every connection and joins its threads.
    """

    def __init__(self, target_port: int):
        self.target = (LOOPBACK, int(target_port))
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(_POLL)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = "pass"
        self._flowing = threading.Event()
        self._flowing.set()
        self._closing = threading.Event()
        self._links: List[_Link] = []
        self._threads: List[threading.Thread] = []
        self._counts = dict(accepted=0, forwarded=0, refused=0, cut=0, failed=0)
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"faultproxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.port} -> {self.target[1]}, {self._mode})"

    # -- faults ------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def cut(self) -> int:
        """Close every open connection; reset new ones. Returns how many."""
        with self._lock:
            self._mode = "cut"
            self._flowing.clear()
            links = list(self._links)
            self._counts["cut"] += len(links)
        for link in links:
            link.kill()
        return len(links)

    def stall(self) -> None:
        """Stop every byte, both ways, on open and new connections."""
        with self._lock:
            self._mode = "stall"
            self._flowing.clear()
            links = list(self._links)
        for link in links:
            with link.lock:  # wait out a chunk that was being forwarded
                pass

    def restore(self) -> None:
        """Back to forwarding; stalled bytes and connections move on."""
        with self._lock:
            self._mode = "pass"
            self._flowing.set()

    def counts(self) -> Dict[str, int]:
        """Connections accepted, forwarded, refused, cut, failed, open now."""
        with self._lock:
            return dict(self._counts, open=len(self._links))

    def close(self) -> None:
        self._closing.set()
        self._acceptor.join(_JOIN_TIMEOUT)
        self._listener.close()
        with self._lock:
            links = list(self._links)
            threads = list(self._threads)
        for link in links:
            link.kill()
        alive = [t.name for t in threads if not _joined(t)]
        if alive or self._acceptor.is_alive():
            raise RuntimeError(f"proxy threads did not end: {alive}")

    # -- threads -----------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _address = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # the listener was closed
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            self._counts["accepted"] += 1
            if self._mode == "cut":
                self._counts["refused"] += 1
                _reset(client)
                return
            link = _Link(client)
            self._links.append(link)
            thread = threading.Thread(
                target=self._serve,
                args=(link,),
                daemon=True,
                name=f"faultproxy-{self.port}-link{self._counts['accepted']}",
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _serve(self, link: _Link) -> None:
        try:
            # A connection accepted during a stall reaches no server until
            # restore(): it is accepted, and silent.
            if not self._wait_to_flow(link):
                return
            link.upstream = self._connect_upstream(link)
            if link.upstream is not None:
                self._pump(link)
        finally:
            link.close()
            with self._lock:
                self._links.remove(link)

    def _wait_to_flow(self, link: _Link) -> bool:
        while not (link.closed or self._closing.is_set()):
            if self._flowing.wait(_POLL):
                return not link.closed
        return False

    def _connect_upstream(self, link: _Link) -> Optional[socket.socket]:
        try:
            upstream = socket.create_connection(self.target, _CONNECT_TIMEOUT)
        except OSError:
            with self._lock:
                self._counts["failed"] += 1
            return None
        upstream.settimeout(_SEND_TIMEOUT)
        link.client.settimeout(_SEND_TIMEOUT)
        with self._lock:
            self._counts["forwarded"] += 1
        if link.closed:  # cut while connecting
            upstream.close()
            return None
        return upstream

    def _pump(self, link: _Link) -> None:
        sockets = [link.client, link.upstream]
        while not (link.closed or self._closing.is_set()):
            if not self._flowing.wait(_POLL):
                continue  # stalled: leave the bytes in the sockets
            try:
                ready, _, _ = select.select(sockets, [], [], _POLL)
            except (OSError, ValueError):
                return
            with link.lock:
                if link.closed or not self._flowing.is_set():
                    continue
                for sock in ready:
                    if not _forward(sock, link.peer(sock)):
                        return


def _forward(source: socket.socket, target: socket.socket) -> bool:
    """Move one chunk; False when either side is gone."""
    try:
        data = source.recv(_CHUNK)
        if not data:
            return False
        target.sendall(data)
        return True
    except OSError:
        return False


def _shutdown(sock: Optional[socket.socket]) -> None:
    # shutdown() sends the FIN now and wakes the thread blocked in select()
    # on this socket; close() from another thread would do neither.
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    # A zero linger time makes close() send a RST: the client is refused at
    # once, as by a port nobody listens on, instead of waiting for a reply.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _joined(thread: threading.Thread) -> bool:
    thread.join(_JOIN_TIMEOUT)
    return not thread.is_alive()
