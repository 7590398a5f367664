# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_wcce_ndr: the struct codec against impacket's classes in _ndr (the reference), real lab replies and hostile
stubs."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from impacket.dcerpc.v5.ndr import NDRPOINTER

from ansible_collections.adcs.enrollment.plugins.module_utils import _errors, _ndr, _orpc, _rpc_conn
from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce_ndr as w
from ansible_collections.adcs.enrollment.plugins.module_utils._orpc import MalformedReply

from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_replies import OPNUMS, REPLIES

CID = bytes(range(16))
LONG_ATTRS = 'CertificateTemplate:WebServer\nSAN:dns=host%d.lab.adcs.test&upn=u@lab.adcs.test\n' * 40


def _windows_referents(call):
    """impacket draws referent IDs at random: number them as _wcce_ndr (and Windows) does, in wire order."""
    state = [w.REFERENT_BASE]

    def walk(obj):
        if isinstance(obj, NDRPOINTER) and obj.fields.get('ReferentID'):
            obj.fields['ReferentID'] = state[0]
            state[0] += 4
        for value in getattr(obj, 'fields', {}).values():
            if hasattr(value, 'fields'):
                walk(value)

    for name, _kind in call.commonHdr + call.structure:
        walk(call.fields[name])
    return call


def _impacket(name, values):
    call = getattr(_ndr, name)()
    call['ORPCthis'] = _orpc.new_orpcthis(CID)
    for key, value in values.items():
        if key == 'pctbRequest':
            call[key] = _ndr.make_blob(value)
        elif key.startswith('pwsz'):
            call[key] = _ndr.wstr(value) if value is not None else _ndr.NULL
        else:
            call[key] = value
    return _windows_referents(call).getData()


CASES = [
    dict(pwszAuthority='LAB-CA', dwFlags=_ndr.CR_IN_PKCS10, pdwRequestId=0, pwszAttributes='', pctbRequest=b''),
    dict(pwszAuthority='LAB-CA1', dwFlags=0x40100, pdwRequestId=41, pwszAttributes=None, pctbRequest=b''),
    dict(pwszAuthority='X', dwFlags=0, pdwRequestId=0xFFFFFFFF, pwszAttributes='A', pctbRequest=b'\x30'),
    dict(pwszAuthority='lab\\LAB-CA', dwFlags=_ndr.CR_IN_PKCS7, pdwRequestId=7, pwszAttributes='AB',
         pctbRequest=b'\x30\x82'),
    dict(pwszAuthority='LAB-CA', dwFlags=_ndr.CR_IN_CMC, pdwRequestId=1, pwszAttributes=LONG_ATTRS,
         pctbRequest=b'\x30\x82\x01'),
    dict(pwszAuthority='Ünïcode CA', dwFlags=_ndr.CR_IN_PKCS10 | _ndr.CR_IN_MACHINE, pdwRequestId=2,
         pwszAttributes='CertificateTemplate:Web\u00e9', pctbRequest=b'z' * 301),
    dict(pwszAuthority='LAB-CA', dwFlags=_ndr.CR_IN_PKCS10, pdwRequestId=0, pwszAttributes='CertificateTemplate:W',
         pctbRequest=b'\x30' * 4096),
]


@pytest.mark.parametrize('values', CASES)
@pytest.mark.parametrize('serial', [None, '1a2b', '123'])
def test_requests_are_byte_identical_to_impacket(values, serial):
    fast = w.Request(**values)
    fast['ORPCthis'] = w.orpcthis(CID)
    assert fast.opnum == 3 and fast.getData() == _impacket('Request', values)
    values2 = dict(values, pwszSerialNumber=serial)
    fast2 = w.Request2(**values2)
    fast2['ORPCthis'] = w.orpcthis(CID)
    assert fast2.opnum == 6 and fast2.getData() == _impacket('Request2', values2)


def test_an_impacket_orpcthis_is_coded_as_impacket_codes_it():
    fast = w.Request2(**CASES[4])
    fast['ORPCthis'] = _orpc.new_orpcthis(CID, flags=1)
    ours = w.Request2(**CASES[4])
    ours['ORPCthis'] = w.orpcthis(CID, flags=1)
    assert fast.getData() == ours.getData() and ours.getData()[:8] == b'\x05\x00\x07\x00\x01\x00\x00\x00'
    assert len(w.orpcthis()) == 32 and w.orpcthis()[12:28] != w.orpcthis()[12:28]     # a new causality ID
    with pytest.raises(KeyError):
        fast['pwszSerialNumer'] = 'typo'
    with pytest.raises(KeyError):
        w.Request(pwszSerialNumber='1a')          # a Request2 parameter


def _reference(name, data, params):
    resp = getattr(_ndr, name)(data)
    out = {'ORPCthat': resp['ORPCthat']['flags'], 'ErrorCode': resp['ErrorCode']}
    for key, kind in params:
        out[key] = resp[key] if kind == 'dword' else _ndr.blob_bytes(resp[key])
    return out


def _reply_class(name):
    return (w.Request2Response, w.REQUEST2_OUT) if OPNUMS[name] == 6 else (w.RequestResponse, w.REQUEST_OUT)


@pytest.mark.parametrize('name', sorted(REPLIES))
def test_real_replies_decode_to_impacket_values(name):
    cls, params = _reply_class(name)
    data = REPLIES[name]
    got = cls(data)
    assert dict(got) == _reference(cls.__name__, data, params)
    if name.endswith('issued'):
        assert got['pdwDisposition'] == 3 and got['pctbEncodedCert'][:1] == b'\x30'
    else:
        assert got['pdwDisposition'] == 0x80094800 and got['pctbEncodedCert'] == b''
    assert got['pctbDispositionMessage'].decode('utf-16-le').rstrip('\x00')


def test_trailing_bytes_are_left_to_the_status_check_as_with_impacket():
    data = REPLIES['request2_issued'] + b'\x00\x00\x00\x00\x07'
    assert dict(w.Request2Response(data)) == _reference('Request2Response', data, w.REQUEST2_OUT) == \
        dict(w.Request2Response(REPLIES['request2_issued']))


def test_orpcthat_with_extensions_goes_to_the_general_decoder():
    body = REPLIES['request2_denied'][8:]
    data = struct.pack('<LLLLL', 1, w.REFERENT_BASE, 0, 0, 0) + body     # ORPC_EXTENT_ARRAY of no extents
    got = w.Request2Response(data)
    assert got['ORPCthat'] == 1 and got == dict(w.Request2Response(REPLIES['request2_denied']), ORPCthat=1)
    with pytest.raises(ValueError, match='NDR64'):
        w.Request2Response(REPLIES['request2_denied'], isNDR64=True)


def _blob_offsets(data):
    """Offsets of the three (cb, pointer) pairs of a reply stub."""
    offsets, off = [], 16
    for _i in range(3):
        offsets.append(off)
        size, pointer = struct.unpack_from('<LL', data, off)
        off += 8 + (4 + size + (4 - size % 4) % 4 if pointer else 0)
    return offsets


def _patched(data, off, fmt, *values):
    out = bytearray(data)
    struct.pack_into(fmt, out, off, *values)
    return bytes(out)


def _hostile():
    good = REPLIES['request2_issued']
    full, cert, message = _blob_offsets(good)
    return [
        ('max count above the bytes left', _patched(good, full, '<LLL', 0x7FFFFFF0, 0x20000, 0x7FFFFFF0)),
        ('huge count', _patched(good, cert, '<LLL', 0xFFFFFFFF, 0x20004, 0xFFFFFFFF)),
        ('cb and max count differ', _patched(good, cert, '<L', 12)),
        ('max count and cb differ', _patched(good, message + 8, '<L', 2)),
        ('cb behind a NULL pointer', _patched(good, message, '<LL', 14, 0)),
        ('count cut', good[:full + 10]),
        ('no HRESULT', good[:-4]),
    ]


@pytest.mark.parametrize('what, data', _hostile(), ids=[h[0] for h in _hostile()])
def test_hostile_replies_are_refused(what, data):
    with pytest.raises(MalformedReply, match='Request2Response: '):
        w.Request2Response(data)


@pytest.mark.parametrize('name', sorted(REPLIES))
def test_every_truncation_is_refused_without_reading_past_the_end(name):
    cls, _params = _reply_class(name)
    data = REPLIES[name]
    for size in range(len(data)):
        with pytest.raises(MalformedReply):
            cls(data[:size])


class _Canned(_rpc_conn._NdrCalls):
    """_rpc_conn's request/reply hook over a canned (already verified) reply stub."""

    address, failure = 'ca1', None

    def __init__(self, stub):
        self.stub = stub

    def call(self, opnum, stub, object_uuid=None):
        self.sent = (opnum, stub)
        return self.stub


def test_the_connection_finds_the_struct_reply_class():
    conn = _Canned(REPLIES['request2_issued'])
    resp = conn.request(w.Request2(**CASES[0]))
    assert isinstance(resp, w.Request2Response) and resp['pdwDisposition'] == 3 and conn.sent[0] == 6
    resp = _Canned(REPLIES['request_issued']).request(w.Request(**CASES[0]))
    assert isinstance(resp, w.RequestResponse) and len(resp['pctbCertChain']) > 1000


@pytest.mark.parametrize('what, data', _hostile(), ids=[h[0] for h in _hostile()])
def test_hostile_replies_through_the_connection_are_verification_errors(what, data):
    conn = _Canned(data)
    with pytest.raises(_errors.ReplyVerificationError,
                       match=r'could not be decoded \(a malformed or truncated Request2 reply\)') as info:
        conn.request(w.Request2(**CASES[0]))
    assert info.value.detail == '%s.MalformedReply' % _orpc.__name__
    assert conn.failure == 'a reply that could not be decoded'


def test_trailing_garbage_fails_the_status_check():
    conn = _Canned(REPLIES['request2_issued'] + b'\x05\x00\x07\x80')
    with pytest.raises(_errors.RpcFault) as info:
        conn.request(w.Request2(**CASES[0]))
    assert info.value.error_code == 0x80070005 and info.value.packet['pdwDisposition'] == 3
