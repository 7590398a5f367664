# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tampering DCE/RPC proxy for the tests: one job, sit between the client and the lab CA and alter replies.

``TamperProxy(listen, upstream, ports)`` listens on ``listen:port`` for each port (135 and the lab CA's object
exporter port) and forwards every connection to ``upstream:port``. Client-to-server bytes pass unchanged; the
server-to-client stream is cut into PDUs and the attack ``proxy.attack(mode, port, nth)`` is applied to the
``nth`` (1-based) authenticated response PDU of each connection on ``port``:

* ``flip_stub``: flip a byte of the (sealed) stub;
* ``flip_sig``: flip a byte of the verifier's checksum;
* ``strip``: remove the auth trailer (sec_trailer and verifier), keep the stub;
* ``plaintext``: replace the reply by a plaintext one (zeros, no trailer);
* ``replay``: send the previous whole reply of the same security context (else of the connection) again, call_id
  set to the current one, instead of this one (left alone when there is none);
* ``reorder``: swap this fragment with the next one of the same reply (a multi-fragment reply).

``proxy.log`` lists (port, ptype, flags, frag_len, auth_len, auth_ctx_id, action) of every server PDU and
``proxy.applied`` the attacks applied, so a test shows that the attack happened. Mode ``None`` passes everything through.
"""

import socket
import struct
import threading

RESPONSE = 2


class TamperProxy(object):
    def __init__(self, listen, upstream, ports):
        self.listen = listen
        self.upstream = upstream
        self.ports = list(ports)
        self.mode = None
        self.port = None
        self.nth = 1
        self.log = []
        self.applied = []
        self._servers = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def attack(self, mode, port=None, nth=1):
        self.mode, self.port, self.nth = mode, port, nth
        self.log = []
        self.applied = []

    def start(self):
        for port in self.ports:
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((self.listen, port))
            srv.listen(16)
            srv.settimeout(0.2)
            self._servers.append(srv)
            threading.Thread(target=self._accept, args=(srv, port), daemon=True).start()
        return self

    def stop(self):
        self._stop.set()
        for srv in self._servers:
            srv.close()

    def _accept(self, srv, port):
        while not self._stop.is_set():
            try:
                client, _addr = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection((self.upstream, port), timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, port), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _read_exact(sock, count):
        data = b''
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _read_pdu(self, sock):
        head = self._read_exact(sock, 16)
        if head is None:
            return None
        frag_len = struct.unpack('<H', head[8:10])[0]
        rest = self._read_exact(sock, frag_len - 16) if frag_len > 16 else b''
        return None if rest is None else head + rest

    def _replies(self, server, client, port):
        count = 0
        previous = {}
        held = None
        try:
            while True:
                pdu = self._read_pdu(server)
                if pdu is None:
                    break
                ptype, flags = pdu[2], pdu[3]
                frag_len, auth_len = struct.unpack('<HH', pdu[8:12])
                action = 'pass'
                out = [pdu]
                ctx = struct.unpack('<L', pdu[frag_len - auth_len - 4:frag_len - auth_len])[0] if auth_len else None
                if ptype == RESPONSE and auth_len:
                    count += 1
                    if held is not None:            # reorder: the next fragment goes first
                        out = [pdu, held]
                        held = None
                        action = 'reordered'
                    elif self.mode and (self.port in (None, port)) and count == self.nth:
                        out, action = self._tamper(pdu, previous.get(ctx, previous.get('any')))
                        if action == 'hold':
                            held = pdu
                            out = []
                    if flags & 0x03 == 0x03:         # a whole (single-fragment) reply
                        previous[ctx] = previous['any'] = pdu
                with self._lock:
                    self.log.append((port, ptype, flags, frag_len, auth_len, ctx, action))
                    if action not in ('pass', 'hold'):
                        self.applied.append((port, action))
                for item in out:
                    client.sendall(item)
        except OSError:
            pass
        finally:
            for sock in (server, client):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _tamper(self, pdu, previous):
        frag_len, auth_len = struct.unpack('<HH', pdu[8:12])
        mode = self.mode
        if mode == 'flip_stub':
            at = 24 + 4
            return [pdu[:at] + bytes([pdu[at] ^ 0x01]) + pdu[at + 1:]], mode
        if mode == 'flip_sig':
            at = frag_len - auth_len + 10     # NTLM: the checksum (bytes 4-11); Kerberos: SND_SEQ of the token
            return [pdu[:at] + bytes([pdu[at] ^ 0x01]) + pdu[at + 1:]], mode
        if mode == 'strip':
            body = pdu[24:frag_len - auth_len - 8]
            head = pdu[:8] + struct.pack('<HH', 24 + len(body), 0) + pdu[12:24]
            return [head + body], mode
        if mode == 'plaintext':
            body = b'\x00' * 32
            head = pdu[:8] + struct.pack('<HH', 24 + len(body), 0) + pdu[12:16] + struct.pack('<L', len(body)) + \
                pdu[20:24]
            return [head + body], mode
        if mode == 'replay':
            if previous is None:
                return [pdu], 'pass'
            return [previous[:12] + pdu[12:16] + previous[16:]], mode
        if mode == 'reorder':
            if pdu[3] & 0x02:                 # a single-fragment reply: nothing to reorder
                return [pdu], 'pass'
            return [], 'hold'
        raise ValueError(mode)
