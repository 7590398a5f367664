# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certipy `req -dcom` with its DCE/RPC traffic counted: impacket's TCP transport (the transport this collection
used before it had its own, and the one Certipy uses) is wrapped to count connections, PDUs each way, bytes,
security handshakes (NTLM NEGOTIATE messages in bind/alter_context) and the time from the first connect to the last
PDU received. Run with Certipy's Python: ``python certipy_wire.py OUT.json certipy-arguments...``; the figures are
written to OUT.json and Certipy's exit code is returned."""

import json
import struct
import sys
import time

from impacket.dcerpc.v5 import transport

FIGURES = {'connections': 0, 'pdus_sent': 0, 'pdus_received': 0, 'bytes_sent': 0, 'bytes_received': 0,
           'handshakes': 0, 'first': None, 'last': None}
BIND, ALTER_CONTEXT = 11, 14


def _handshake(pdu):
    """Whether ``pdu`` is a bind/alter_context whose auth value opens a security context (NTLM NEGOTIATE, or a
    SPNEGO/Kerberos token: anything but NTLM's AUTHENTICATE leg)."""
    if len(pdu) < 16 or pdu[2] not in (BIND, ALTER_CONTEXT):
        return False
    auth_length = struct.unpack('<H', pdu[10:12])[0]
    if not auth_length:
        return False
    value = pdu[-auth_length:]
    return not (value.startswith(b'NTLMSSP\0') and value[8:12] != b'\x01\0\0\0')


def _wrap():
    connect, send, recv = transport.TCPTransport.connect, transport.TCPTransport.send, transport.TCPTransport.recv

    def counted_connect(self, *args, **kwargs):
        FIGURES['connections'] += 1
        if FIGURES['first'] is None:
            FIGURES['first'] = time.perf_counter()
        return connect(self, *args, **kwargs)

    def counted_send(self, data, *args, **kwargs):
        FIGURES['pdus_sent'] += 1
        FIGURES['bytes_sent'] += len(data)
        FIGURES['handshakes'] += 1 if _handshake(bytes(data)) else 0
        return send(self, data, *args, **kwargs)

    def counted_recv(self, *args, **kwargs):
        # DCERPC_v5 reads a PDU in two calls (the 16-byte header, then the rest): a PDU is counted at its header
        data = recv(self, *args, **kwargs) or b''
        pending = getattr(self, '_bench_pending', 0)
        if pending:
            self._bench_pending = max(0, pending - len(data))
        elif len(data) >= 16:
            FIGURES['pdus_received'] += 1
            self._bench_pending = max(0, struct.unpack('<H', data[8:10])[0] - len(data))
        FIGURES['bytes_received'] += len(data)
        FIGURES['last'] = time.perf_counter()
        return data

    transport.TCPTransport.connect = counted_connect
    transport.TCPTransport.send = counted_send
    transport.TCPTransport.recv = counted_recv


def main():
    out = sys.argv[1]
    sys.argv = ['certipy'] + sys.argv[2:]
    _wrap()
    from certipy.entry import main as certipy_main
    try:
        code = certipy_main()
    except SystemExit as exc:
        code = exc.code
    first, last = FIGURES.pop('first'), FIGURES.pop('last')
    FIGURES['seconds'] = (last - first) if first is not None and last is not None else None
    with open(out, 'w') as handle:
        json.dump(FIGURES, handle)
    return code or 0


if __name__ == '__main__':
    sys.exit(main())
