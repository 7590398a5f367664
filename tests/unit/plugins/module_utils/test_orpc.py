# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_orpc: ORPC headers and IRemUnknown calls byte for byte as impacket's independent dcomrt encodes them, OBJREF and
DUALSTRINGARRAY round trips, and hostile structures (cut, overlong, wrong signature or kind) refused."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.dtypes import NULL

from ansible_collections.adcs.enrollment.plugins.module_utils import _orpc as o
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

CID, IPID, IID = b'C' * 16, b'I' * 16, b'D' * 16 + b'\x00' * 4


def impacket_orpcthis():
    this = dcomrt.ORPCTHIS()
    this['cid'], this['extensions'], this['flags'] = CID, NULL, 0
    return this


def test_orpcthis_and_irem_unknown_calls_match_impacket():
    assert o.new_orpcthis(CID).getData() == impacket_orpcthis().getData()
    assert o.new_orpcthis().getData()[:8] == b'\x05\x00\x07\x00\x00\x00\x00\x00'      # COM 5.7, flags 0
    assert o.new_orpcthis()['cid'] != o.new_orpcthis()['cid']                        # a fresh causality ID
    theirs = dcomrt.RemQueryInterface()
    theirs['ORPCthis'], theirs['ripid'], theirs['cRefs'], theirs['cIids'] = impacket_orpcthis(), IPID, 1, 1
    iid = dcomrt.IID()
    iid['Data'] = IID
    theirs['iids'].append(iid)
    assert o.rem_query_interface(o.new_orpcthis(CID), IPID, IID).getData() == theirs.getData()
    theirs = dcomrt.RemRelease()
    theirs['ORPCthis'], theirs['cInterfaceRefs'] = impacket_orpcthis(), 2
    for ipid in (IPID, b'J' * 16):
        ref = dcomrt.REMINTERFACEREF()
        ref['ipid'], ref['cPublicRefs'], ref['cPrivateRefs'] = ipid, 1, 0
        theirs['InterfaceRefs'].append(ref)
    assert o.rem_release(o.new_orpcthis(CID), [IPID, b'J' * 16]).getData() == theirs.getData()
    assert o.IID_IRemUnknown == dcomrt.IID_IRemUnknown


def _qi_reply(hresult, with_extension=False):
    resp = dcomrt.RemQueryInterfaceResponse()
    that = dcomrt.ORPCTHAT()
    that['flags'] = 0
    if with_extension:
        ext = dcomrt.ORPC_EXTENT()
        ext['id'], ext['size'], ext['data'] = b'E' * 16, 8, list(b'12345678')
        pointer = dcomrt.PORPC_EXTENT()
        pointer['Data'] = ext
        that['extensions']['size'], that['extensions']['reserved'] = 1, 0
        that['extensions']['extent'].append(pointer)
    else:
        that['extensions'] = NULL
    resp['ORPCthat'] = that
    resp['ppQIResults']['hResult'] = hresult - (1 << 32) if hresult & 0x80000000 else hresult     # a signed LONG
    std = resp['ppQIResults']['std']
    std['flags'], std['cPublicRefs'], std['oxid'], std['oid'], std['ipid'] = 0, 5, 0x1234, 0x5678, IPID
    resp['ErrorCode'] = hresult
    return resp.getData()


def test_qi_reply_decoded_also_with_orpcthat_extensions():
    """Windows may add ORPC extents (e.g. error information) to ORPCTHAT: the fields after it still decode."""
    for extension in (False, True):
        resp = o.RemQueryInterfaceResponse(_qi_reply(0, extension))
        assert o.qi_result(resp) == (0, o.StdObjRef(0, 5, 0x1234, 0x5678, IPID))
    assert o.qi_result(o.RemQueryInterfaceResponse(_qi_reply(0x80004002))) == (0x80004002, None)


def test_objref_standard_round_trip_and_kinds():
    std = o.StdObjRef(0x1000, 5, 2 ** 64 - 1, 7, IPID)
    data = o.pack_objref_standard(IID[:16], std, [(7, 'CA1[49672]'), (7, '10.0.0.5[49672]')])
    ref = o.parse_objref(data)
    assert (ref.flags, ref.iid, ref.std, ref.clsid) == (1, IID[:16], std, None)
    for kind in (o.FLAGS_OBJREF_HANDLER, o.FLAGS_OBJREF_EXTENDED):      # the STDOBJREF sits at the same place
        assert o.parse_objref(data[:4] + struct.pack('<L', kind) + data[8:]).std == std
    custom = o.pack_objref_custom(IID[:16], b'K' * 16, b'payload')
    ref = o.parse_objref(custom)
    assert (ref.flags, ref.clsid, ref.data, ref.std) == (4, b'K' * 16, b'payload', None)


@pytest.mark.parametrize('mangle, cause', [
    (lambda d: b'MEOX' + d[4:], 'OBJREF: signature 0x584F454D instead of MEOW'),
    (lambda d: d[:4] + struct.pack('<L', 16) + d[8:], 'OBJREF: kind 16'),
    (lambda d: d[:50], 'OBJREF: 16 bytes needed at offset 48 of 50'),
    (lambda d: d[:10], 'OBJREF: 16 bytes needed at offset 8 of 10'),
])
def test_hostile_objref_refused(mangle, cause):
    data = o.pack_objref_standard(IID[:16], o.StdObjRef(0, 5, 1, 2, IPID))
    with pytest.raises(o.MalformedReply) as info:
        o.parse_objref(mangle(data))
    assert str(info.value) == cause and isinstance(info.value, AdcsError)


def test_objref_custom_sizes_checked():
    custom = o.pack_objref_custom(IID[:16], b'K' * 16, b'payload')
    with pytest.raises(o.MalformedReply, match='OBJREF_CUSTOM: object reference size 4'):
        o.parse_objref(custom[:44] + struct.pack('<L', 4) + custom[48:])
    with pytest.raises(o.MalformedReply, match='OBJREF: 107 bytes needed at offset 48 of 55'):
        o.parse_objref(custom[:44] + struct.pack('<L', 115) + custom[48:])


def test_dualstringarray_round_trip():
    strings = [(7, 'CA1[49672]'), (7, 'fd00::5[49672]'), (15, 'CA1')]
    security = [(9, ''), (10, 'LAB\\CA1$')]
    count, offset, words = o.pack_dualstringarray(strings, security)
    assert count == len(words) and words[offset - 1] == 0
    assert o.parse_dualstringarray(words, offset) == (strings, security)
    count, offset, words = o.pack_dualstringarray([])
    assert o.parse_dualstringarray(words, offset) == ([], [])


@pytest.mark.parametrize('words, offset, cause', [
    ([7, 0x41, 0x42], 3, 'a string binding without its terminating NUL'),
    ([7, 0x41, 0], 3, 'the string bindings are not terminated'),
    ([7, 0x41, 0, 0], 9, 'security offset 9 outside 4 entries'),
    ([7, 0x41, 0, 0], 0, 'security offset 0 outside 4 entries'),
    ([7, 0x41, 0, 0, 9, 0xFFFF, 0x41], 4, 'a security binding without its terminating NUL'),
])
def test_hostile_dualstringarray_refused(words, offset, cause):
    with pytest.raises(o.MalformedReply) as info:
        o.parse_dualstringarray(words, offset)
    assert str(info.value) == 'DUALSTRINGARRAY: ' + cause


def test_reader_bounds():
    r = o.Reader(b'\x01\x00\x00\x00\x02\x00', 'X')
    assert r.u32() == 1 and r.u16() == 2
    with pytest.raises(o.MalformedReply, match='X: 4 bytes needed at offset 6 of 6'):
        r.u32()
    r = o.Reader(struct.pack('<L', 11), 'Y')
    with pytest.raises(o.MalformedReply, match=r'Y: an array of 11 elements \(at most 10 expected\)'):
        r.count(10)
