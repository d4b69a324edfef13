"""A TCP proxy to a real server that a test can cut and restore, to stage a genuine outage."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int], *, up: bool = True) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        if up:
            self._up.set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Connections forwarded so far.
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:  # a cut (or close) since the check above: this pair is dropped too, never left open
                if not self._up.is_set() or self._closed:
                    client.close()
                    upstream.close()
                    continue
                self._conns += [client, upstream]
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Stage an outage: drop live connections and refuse new ones."""
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        """End the outage."""
        self._up.set()

    def pause(self) -> None:
        """Stage a stall: connections stay open but nothing more is forwarded, either way."""
        self._flowing.clear()

    def resume(self) -> None:
        """End the stall: what was held back is forwarded."""
        self._flowing.set()

    def close(self) -> None:
        """Stop the proxy."""
        self._closed = True
        self._flowing.set()
        self.cut()
        self._listener.close()
