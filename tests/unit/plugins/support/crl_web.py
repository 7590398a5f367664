# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Local servers and fakes for the CRL fetch tests: an HTTP/1.1 keep-alive server with routes (``Server``, also a
forward proxy), a raw TCP server whose handler does whatever a test wants (``RawServer``: drips, endless bodies,
TLS), and a CA client answering GetCAProperty from a dict (``FakeCaClient``)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import HttpClient

HTTP_ADDR = '127.0.0.71'
RAW_ADDR = '127.0.0.119'


class Server(object):
    """HTTP/1.1 keep-alive server: routes {path: (status, headers, body)} and files {path: body} (200);
    counts connections and requests."""

    def __init__(self, address=HTTP_ADDR, proxy=False):
        self.routes = {}
        self.files = {}
        self.connections = 0
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def setup(self):
                BaseHTTPRequestHandler.setup(self)
                owner.connections += 1

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                owner.requests.append((self.path, dict(self.headers)))
                path = urlsplit(self.path).path if proxy else self.path
                default = (200, {}, owner.files[path]) if path in owner.files else (404, {}, b'not found')
                status, headers, body = owner.routes.get(path, default)
                if callable(body):
                    body = body()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if headers.get('Connection') == 'close':
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, host=HTTP_ADDR):
        return 'http://%s:%d%s' % (host, self.port, path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def close_listener(sock):
    """Close a listening socket another thread is accept()ing on: shutdown wakes it (close alone does not on Linux,
    and the port would stay bound)."""
    import socket as socket_module
    try:
        sock.shutdown(socket_module.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class RawServer(object):
    """A TCP server on ``address`` whose ``serve(self, conn)`` does whatever the test wants after reading the
    request; ``sent`` is for the handler to count bytes sent."""

    def __init__(self, serve, address=RAW_ADDR, port=0):
        self.serve = serve
        self.address = address
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.recv(65536)
            self.serve(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, path='/x.crl'):
        return 'http://%s:%d%s' % (self.address, self.port, path)

    def close(self):
        self.stop.set()
        close_listener(self.sock)


class FakeCaClient(object):
    def __init__(self, props):
        self.props = props
        self.calls = []

    def get_ca_property(self, prop_id, index=0, prop_type=None):
        self.calls.append((prop_id, index, prop_type))
        value = self.props[prop_id]
        if isinstance(value, dict):  # an indexed property: {PropIndex: value}
            value = value[index]
        if isinstance(value, Exception):
            raise value
        return value


def http_client(**kwargs):
    """An HttpClient for tests: no proxy environment, 5 s unless told otherwise."""
    kwargs.setdefault('environ', {})
    kwargs.setdefault('timeout', 5)
    return HttpClient(**kwargs)
