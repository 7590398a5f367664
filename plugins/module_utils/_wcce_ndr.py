# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hot MS-WCCE calls in NDR 2.0 with ``struct``: one job, encode Request / Request2 and decode their replies.

An enrollment spends most of its client time in impacket's generic NDR machinery (issue 15), so the two calls of
every enrollment are declared here as data and coded with ``struct``; ``_ndr`` keeps the impacket classes of all
ICertRequestD / ICertRequestD2 calls (the others are not hot, and tests use them as the reference: the encoding is
byte-identical to theirs, the decoded values equal theirs).

* ``Request`` (ICertRequestD opnum 3, MS-WCCE 3.2.1.4.2.1) and ``Request2`` (ICertRequestD2 opnum 6, 3.2.1.4.3.1):
  ORPCTHIS, then the [in] parameters in order; an LPWSTR is a unique pointer with its conformant varying string
  right behind it, a CERTTRANSBLOB is ``cb`` + a unique pointer whose conformant byte array (max count = cb)
  follows; referent IDs 0x00020000, 0x00020004, ... as Windows numbers them.
* ``RequestResponse`` / ``Request2Response``: ORPCTHAT, pdwRequestId, pdwDisposition, three CERTTRANSBLOBs, the
  HRESULT; every count checked against the bytes that are left (``_orpc.MalformedReply`` else), a blob's max count
  must equal its cb and a NULL pointer needs cb 0. Bytes after the HRESULT are left to ``_rpc_conn`` (its status
  check reads the last four bytes), as with impacket. A reply is a dict: blobs as bytes, ``ORPCthat`` its flags.

``_rpc_conn.RpcConnection.request`` finds each reply class by the call's name + ``Response`` in this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import struct

from ansible_collections.adcs.enrollment.plugins.module_utils._orpc import COM_VERSION, MalformedReply, Reader

REFERENT_BASE = 0x00020000
ORPCTHIS = '<HHLL16sL'              # COMVERSION, flags, reserved1, cid, extensions (NULL)
# alignment fill before a parameter of each kind, as impacket writes it (any value is valid NDR)
PAD = {'dword': b'\xbf', 'wstr': b'\xaa', 'blob': b'\xab'}

# [in] parameters in wire order: (name, kind), kind 'dword', 'wstr' (LPWSTR) or 'blob' (CERTTRANSBLOB)
REQUEST_IN = (('dwFlags', 'dword'), ('pwszAuthority', 'wstr'), ('pdwRequestId', 'dword'),
              ('pwszAttributes', 'wstr'), ('pctbRequest', 'blob'))
REQUEST2_IN = (('pwszAuthority', 'wstr'), ('dwFlags', 'dword'), ('pwszSerialNumber', 'wstr'),
               ('pdwRequestId', 'dword'), ('pwszAttributes', 'wstr'), ('pctbRequest', 'blob'))
# [out] parameters between ORPCTHAT and the HRESULT
REQUEST_OUT = (('pdwRequestId', 'dword'), ('pdwDisposition', 'dword'), ('pctbCertChain', 'blob'),
               ('pctbEncodedCert', 'blob'), ('pctbDispositionMessage', 'blob'))
REQUEST2_OUT = REQUEST_OUT[:2] + (('pctbFullResponse', 'blob'),) + REQUEST_OUT[3:]


def orpcthis(cid=None, flags=0):
    """ORPCTHIS (MS-DCOM 2.2.13.1) of COM version 5.7 without extensions, causality ID ``cid`` (random if None)."""
    return struct.pack(ORPCTHIS, COM_VERSION[0], COM_VERSION[1], flags, 0, cid or os.urandom(16), 0)


def _orpc_bytes(value):
    """ORPCTHIS bytes of our own (bytes) or of an impacket ORPCTHIS (coded as impacket's NDRCALL codes its first
    parameter: the structure, then its referents)."""
    if isinstance(value, bytes):
        return value
    data = value.getData(0)
    data += value.getDataReferents(len(data))
    return data + value.getDataReferent(len(data))


def _pad(out, fill):
    if len(out) % 4:
        out += fill * (4 - len(out) % 4)


class Call(object):
    """One call: ``opnum``, the [in] values by name (``req[name]``), ``getData()`` the NDR stub."""

    opnum = None
    PARAMS = ()

    def __init__(self, **values):
        self.fields = {'ORPCthis': None}
        self.fields.update((name, None) for name, _kind in self.PARAMS)
        for name, value in values.items():
            self[name] = value

    def __setitem__(self, key, value):
        if key not in self.fields:
            raise KeyError(key)
        self.fields[key] = value

    def __getitem__(self, key):
        return self.fields[key]

    def getData(self):
        out = bytearray(_orpc_bytes(self.fields['ORPCthis'] or orpcthis()))
        referent = REFERENT_BASE
        for name, kind in self.PARAMS:
            value = self.fields[name]
            _pad(out, PAD[kind])
            if kind == 'dword':
                out += struct.pack('<L', (value or 0) & 0xFFFFFFFF)
            elif kind == 'wstr':
                if value is None:
                    out += b'\x00\x00\x00\x00'
                    continue
                text = value if value.endswith('\x00') else value + '\x00'
                data = text.encode('utf-16-le')
                out += struct.pack('<LLLL', referent, len(data) // 2, 0, len(data) // 2) + data
                referent += 4
            else:
                data = bytes(value or b'')
                if not data:
                    out += b'\x00' * 8
                    continue
                out += struct.pack('<LLL', len(data), referent, len(data)) + data
                referent += 4
        return bytes(out)


class Request(Call):
    """ICertRequestD::Request (MS-WCCE 3.2.1.4.2.1)."""
    opnum = 3
    PARAMS = REQUEST_IN


class Request2(Call):
    """ICertRequestD2::Request2 (MS-WCCE 3.2.1.4.3.1)."""
    opnum = 6
    PARAMS = REQUEST2_IN


def decode_reply(data, params, what):
    """{name: value} of a reply stub: ORPCTHAT flags as ``ORPCthat``, the ``params``, ``ErrorCode``; None when the
    ORPCTHAT carries extensions (then the caller decodes with the general NDR classes)."""
    r = Reader(data, what)
    flags, extensions = r.unpack('LL')
    if extensions:
        return None
    out = {'ORPCthat': flags}
    for name, kind in params:
        if kind == 'dword':
            out[name] = r.u32()
            continue
        size, pointer = r.unpack('LL')
        if not pointer:
            if size:
                raise MalformedReply('%s: %s of %d bytes behind a NULL pointer' % (what, name, size))
            out[name] = b''
            continue
        count = r.u32()
        if count != size:
            raise MalformedReply('%s: %s of %d bytes with an array of %d' % (what, name, size, count))
        out[name] = r.take(count)
        r.align(4)
    out['ErrorCode'] = r.u32()
    return out


class _Reply(dict):
    """A decoded reply (``_rpc_conn`` constructs it from the verified stub, as an impacket NDRCALL)."""

    PARAMS = ()
    GENERAL = None          # name of the _ndr class for replies whose ORPCTHAT carries extensions

    def __init__(self, data, isNDR64=False):
        if isNDR64:
            raise ValueError('NDR64 is not used by DCOM')
        values = decode_reply(data, self.PARAMS, type(self).__name__)
        if values is None:
            values = self._general(data)
        dict.__init__(self, values)

    def _general(self, data):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
        resp = getattr(_ndr, self.GENERAL)(data)
        out = {'ORPCthat': resp['ORPCthat']['flags'], 'ErrorCode': resp['ErrorCode']}
        for name, kind in self.PARAMS:
            out[name] = resp[name] if kind == 'dword' else _ndr.blob_bytes(resp[name])
        return out


class RequestResponse(_Reply):
    PARAMS = REQUEST_OUT
    GENERAL = 'RequestResponse'


class Request2Response(_Reply):
    PARAMS = REQUEST2_OUT
    GENERAL = 'Request2Response'
