"""The lab CA's web publication point: CRLs and CA certificates over HTTP/1.1 (port 80) and HTTPS (port 443).

Serves ``<state>/ca/CertEnroll/`` at ``/CertEnroll/`` the way IIS serves a Windows CA's CertEnroll folder (the CDP
and AIA URLs in issued certificates point here). Connections are persistent (HTTP/1.1 keep-alive), and the server
counts connections and requests per client so tests can check that a client reused its connection:
``GET /_lab/stats`` returns them as JSON, ``POST /_lab/stats/reset`` clears them.

    python -m adcslab.http --state-dir DIR --address 127.0.0.12 [--port 80] [--tls-port 443]
"""

import argparse
import json
import logging
import os
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("adcslab.http")

CONTENT_TYPES = {".crl": "application/pkix-crl", ".crt": "application/pkix-cert", ".cer": "application/pkix-cert",
                 ".p7b": "application/x-pkcs7-certificates"}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.connections = 0
            self.requests = 0
            self.by_path = {}

    def connection(self):
        with self.lock:
            self.connections += 1

    def request(self, path):
        with self.lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections, "requests": self.requests, "by_path": dict(self.by_path)}


def make_handler(root, stats, scheme):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-IIS/10.0"
        sys_version = ""
        timeout = 30

        def setup(self):
            super().setup()
            stats.connection()

        def log_message(self, fmt, *args):
            LOG.info("%s %s %s", scheme, self.address_string(), fmt % args)

        def _send(self, code, body, content_type="text/plain", head=False):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _serve(self, head):
            path = self.path.split("?", 1)[0]
            stats.request(path)
            if path == "/_lab/stats":
                return self._send(200, json.dumps(stats.snapshot()).encode(), "application/json", head)
            if not path.startswith("/CertEnroll/"):
                return self._send(404, b"not found\n", head=head)
            name = os.path.basename(path[len("/CertEnroll/"):].replace("%20", " ").replace("%2B", "+"))
            full = os.path.join(root, name)
            if not name or not os.path.isfile(full):
                return self._send(404, b"not found\n", head=head)
            with open(full, "rb") as handle:
                body = handle.read()
            return self._send(200, body, CONTENT_TYPES.get(os.path.splitext(name)[1].lower(),
                                                          "application/octet-stream"), head)

        def do_GET(self):  # noqa: N802 (http.server naming)
            self._serve(head=False)

        def do_HEAD(self):  # noqa: N802
            self._serve(head=True)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path == "/_lab/stats/reset":
                stats.reset()
                return self._send(200, b"{}", "application/json")
            return self._send(405, b"method not allowed\n")

    return Handler


def serve(state_dir, address, port, tls_port, tls_cert, tls_key):
    root = os.path.join(state_dir, "ca", "CertEnroll")
    os.makedirs(root, exist_ok=True)
    stats = Stats()
    servers = []
    plain = ThreadingHTTPServer((address, port), make_handler(root, stats, "http"))
    plain.daemon_threads = True
    servers.append(plain)
    if tls_port:
        secure = ThreadingHTTPServer((address, tls_port), make_handler(root, stats, "https"))
        secure.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
        secure.socket = context.wrap_socket(secure.socket, server_side=True)
        servers.append(secure)
    threads = [threading.Thread(target=s.serve_forever, name="http-%d" % s.server_address[1], daemon=True)
               for s in servers]
    for thread in threads:
        thread.start()
    return servers


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adcslab.http")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--address", default="127.0.0.12")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--tls-port", type=int, default=443)
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir)
    logging.basicConfig(filename=os.path.join(state_dir, "log", "http.log"), level=logging.INFO,
                        format="%(asctime)s %(name)s %(message)s")
    from adcslab.pki import ensure_pki
    pki = ensure_pki(state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        servers = serve(state_dir, args.address, args.port, args.tls_port, pki.ca_tls_cert_path,
                        pki.ca_tls_key_path)
    except OSError as exc:
        print("adcslab.http: %s" % exc, file=sys.stderr)
        return 1
    while not stop.wait(1.0):
        pass
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
