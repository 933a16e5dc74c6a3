# SPDX-License-Identifier: Apache-2.0
"""A TLS server that accepts anything: the control proving a client really offers an old protocol
or a weak suite, so that a refusal by the server under test is the server's own doing."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

from tests.support.pki import TestCA


@contextlib.contextmanager
def permissive_server(pki: TestCA, *, rsa_key: bool = False) -> Iterator[int]:
    """A TLS server accepting anything (TLS 1.0 up, every cipher): the control showing that the
    client contexts below really offer what Bastion refuses."""
    server = pki.issue("permissive", "localhost", dns=("localhost",), rsa_key=rsa_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the loop notices `stop`
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.settimeout(5)
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
