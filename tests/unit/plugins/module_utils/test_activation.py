# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_activation: RemoteCreateInstance as impacket's independent dcomrt sends it (referent IDs and padding bytes
aside), ActivationPropertiesOut decoded, hostile replies (cut, wrong lengths, wrong kinds) refused, and the object
exporter's port taken by an exact parse of the string bindings."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from impacket.dcerpc.v5 import dcomrt

from ansible_collections.adcs.enrollment.plugins.module_utils import _activation as a
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors as e
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr, _orpc
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import dcom as s

BINDINGS = [(7, 'CA1[49672]'), (7, '127.0.0.12[49672]')]


def test_constants_match_impacket():
    assert a.IID_IRemoteSCMActivator == dcomrt.IID_IRemoteSCMActivator
    assert a.IID_IActivationPropertiesIn == dcomrt.IID_IActivationPropertiesIn[:16]
    for name in ('ActivationPropertiesIn', 'ActivationPropertiesOut', 'PropsOutInfo', 'InstantiationInfo',
                 'ActivationContextInfo', 'ServerLocationInfo', 'ScmRequestInfo', 'ScmReplyInfo'):
        assert getattr(a, 'CLSID_' + name) == getattr(dcomrt, 'CLSID_' + name), name


def _impacket_request(clsid, iid):
    captured = {}

    class _Portmap(object):
        def bind(self, iface):
            captured['bind'] = iface

        def request(self, req):
            captured['req'] = req
            raise RuntimeError('captured')

    with pytest.raises(RuntimeError):
        dcomrt.IRemoteSCMActivator(_Portmap()).RemoteCreateInstance(clsid, iid)
    return captured


def _referents(stub):
    """Offsets of the NDR referent IDs and padding bytes (free values) in the RemoteCreateInstance stub."""
    return {0x24, 0x25, 0x26, 0x27, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2, 0xa3, 0x134, 0x135, 0x136, 0x137,
            0x154, 0x155, 0x156, 0x157, 0x1b4, 0x1b5, 0x1b6, 0x1b7, 0x1be, 0x1bf, 0x1c0, 0x1c1, 0x1c2, 0x1c3,
            0x1ca, 0x1cb, 0x1cc, 0x1cd, 0x1ce, 0x1cf}


@pytest.mark.parametrize('iid', [_ndr.IID_ICertRequestD2, _ndr.IID_ICertRequestD])
def test_remote_create_instance_as_impacket_sends_it(iid):
    theirs = _impacket_request(_ndr.CLSID_CCertRequestD, iid)
    assert theirs['bind'] == a.IID_IRemoteSCMActivator
    cid = bytes(theirs['req']['ORPCthis']['cid'])
    ours = a.remote_create_instance(_ndr.CLSID_CCertRequestD, iid, cid)
    assert ours.opnum == theirs['req'].opnum == 4
    mine, other = ours.getData(), theirs['req'].getData()
    assert len(mine) == len(other) == 464
    differ = set(i for i in range(len(mine)) if mine[i] != other[i])
    # impacket leaves InstantiationInfo.thisSize at 0 (it fills it in after marshaling); Windows sends the size
    assert differ - _referents(mine) == {0x138}
    assert struct.unpack_from('<L', mine, 0x138)[0] == 88
    assert mine[4:8] == b'\x01\x00\x00\x00'                                # ORPCF_LOCAL, as impacket
    assert s.ScriptedConn._asked_iid(ours) == iid[:16]


def test_properties_out_decoded():
    data = s.properties_out(_ndr.IID_ICertRequestD2, BINDINGS, ipid=b'\x61' * 16)
    act = a.parse_properties_out(data)
    assert act == a.Activated(0, s.std(b'\x61' * 16), s.OXID, s.IPID_REM_UNKNOWN, 6, BINDINGS)
    failed = a.parse_properties_out(s.properties_out(_ndr.IID_ICertRequestD2, BINDINGS, hresult=0x80004002))
    assert (failed.hresult, failed.std) == (0x80004002, None)


def test_properties_out_through_the_ndr_reply():
    resp = a.RemoteCreateInstanceResponse()
    resp['ORPCthat'] = s.orpcthat()
    data = s.properties_out(_ndr.IID_ICertRequestD, BINDINGS)
    resp['ppActProperties']['ulCntData'] = len(data)
    resp['ppActProperties']['abData'] = list(data)
    resp['ErrorCode'] = 0
    assert a.pointer_data(s.ndr_roundtrip(resp)) == data
    empty = a.RemoteCreateInstanceResponse()
    empty['ORPCthat'] = s.orpcthat()
    empty['ppActProperties'] = _orpc.NULL
    empty['ErrorCode'] = 0
    with pytest.raises(_orpc.MalformedReply, match='succeeded without activation properties'):
        a.pointer_data(s.ndr_roundtrip(empty))


def _blob(props_out=None, scm=None, parts=None):
    props_out = props_out if props_out is not None else s.props_out_info(
        _ndr.IID_ICertRequestD2, 0, _orpc.pack_objref_standard(_ndr.IID_ICertRequestD2[:16], s.std(b'\x61' * 16)))
    scm = scm if scm is not None else s.scm_reply_info(BINDINGS)
    blob = s.activation_blob(parts or [(a.CLSID_PropsOutInfo, props_out), (a.CLSID_ScmReplyInfo, scm)])
    return _orpc.pack_objref_custom(s.IID_IActivationPropertiesOut, a.CLSID_ActivationPropertiesOut, blob)


def _cut(data, at):
    return data[:at]


@pytest.mark.parametrize('data, cause', [
    (_orpc.pack_objref_custom(s.IID_IActivationPropertiesOut, a.CLSID_ActivationPropertiesIn, b'x' * 8),
     'the activation reply is not an ActivationPropertiesOut OBJREF_CUSTOM'),
    (_orpc.pack_objref_standard(b'A' * 16, s.std(b'B' * 16)),
     'the activation reply is not an ActivationPropertiesOut OBJREF_CUSTOM'),
    (_blob(parts=[(a.CLSID_PropsOutInfo, s.props_out_info(_ndr.IID_ICertRequestD2, 0x80004002, None))]),
     'ActivationPropertiesOut without ScmReplyInfo'),
    (_blob(props_out=s.ts1(struct.pack('<LLLL', 2, 1, 1, 1))), 'PropsOutInfo: 2 interfaces where 1 was asked for'),
    (_blob(props_out=s.ts1(struct.pack('<LLLL', 1, 1, 1, 1) + struct.pack('<L', 2))),
     'PropsOutInfo: an array of 2 elements (at most 1 expected)'),
    (_blob(props_out=s.props_out_info(_ndr.IID_ICertRequestD2, 0, b'')[:-4] + b'\x00' * 4),
     'PropsOutInfo: success without an interface pointer'),
    (_blob(props_out=s.ts1(struct.pack('<LLLLL', 1, 1, 1, 1, 1) + b'I' * 16 + struct.pack('<LLLLLL', 1, 0, 1, 1, 8, 9)
                           + b'x' * 8)),
     'PropsOutInfo: an MInterfacePointer whose size disagrees with its array'),
    (_blob(props_out=s.props_out_info(_ndr.IID_ICertRequestD2, 0,
                                      _orpc.pack_objref_custom(b'A' * 16, b'B' * 16, b''))),
     'PropsOutInfo: a custom-marshaled interface pointer'),
    (_blob(scm=s.ts1(struct.pack('<LL', 0, 0))), 'ScmReplyInfo without remoteReply'),
    (_blob(scm=s.ts1(s.scm_reply_info(BINDINGS)[16:60] + struct.pack('<LHH', 99, 98, 3))),
     'DUALSTRINGARRAY: 98 entries in an array of 99'),
    (_blob(scm=s.ts1(s.scm_reply_info(BINDINGS)[16:60] + struct.pack('<LHH', 0x9000, 0x9000, 3))),
     'ScmReplyInfo: an array of 36864 elements (at most 32768 expected)'),
    (_blob(scm=s.ts1(s.scm_reply_info(BINDINGS)[16:70])), 'ScmReplyInfo: 72 bytes needed at offset 52 of 54'),
    (_blob(scm=b'\x02' + s.scm_reply_info(BINDINGS)[1:]),
     'ScmReplyInfo: not a version 1 little-endian type serialization'),
    (_cut(_blob(), 200), 'OBJREF: 424 bytes needed at offset 48 of 200'),
])
def test_hostile_activation_replies_refused(data, cause):
    with pytest.raises(_orpc.MalformedReply) as info:
        a.parse_properties_out(data)
    assert str(info.value) == cause


def test_activation_blob_sizes_checked():
    good = _blob()
    blob_at = 48 + 8            # OBJREF_CUSTOM header, ACTIVATION_BLOB dwSize/dwReserved
    header = good[blob_at:]
    # the CustomHeader names a property bigger than the blob
    count_at = blob_at + 16 + 20 + 16 + 12
    sizes_at = count_at + 4 + 32 + 4
    bad = good[:sizes_at] + struct.pack('<L', 4096) + good[sizes_at + 4:]
    with pytest.raises(_orpc.MalformedReply, match='activation property of 4096 bytes beyond the'):
        a.parse_properties_out(bad)
    bad = good[:count_at] + struct.pack('<L', 3) + good[count_at + 4:]        # the CLSID array claims 3
    with pytest.raises(_orpc.MalformedReply, match='activation CustomHeader: 16 bytes needed at offset 84 of 96'):
        a.parse_properties_out(bad)
    assert header     # the layout above is the one the encoder wrote
    cifs_at = blob_at + 16 + 16
    bad = good[:cifs_at] + struct.pack('<L', 3) + good[cifs_at + 4:]
    with pytest.raises(_orpc.MalformedReply, match='activation CustomHeader: 3 properties with 2 CLSIDs and 2 sizes'):
        a.parse_properties_out(bad)
    bad = good[:cifs_at] + struct.pack('<L', 11) + good[cifs_at + 4:]
    with pytest.raises(_orpc.MalformedReply, match='activation CustomHeader: 11 properties'):
        a.parse_properties_out(bad)


# ---------------------------------------------------------------- the object exporter's port
def test_exporter_port_takes_only_the_port():
    bindings = [(7, 'CA1[49672]'), (7, '10.0.0.5[49672]'), (15, 'x')]
    assert a.exporter_port(bindings, '127.0.0.100') == 49672
    assert a.exporter_port([(7, 'CA1[1]'), (7, '10.0.0.5[2]')], '10.0.0.5') == 2
    assert a.exporter_port([(7, 'CA1[1]'), (7, 'fd00::5[3]')], 'FD00::5') == 3


def test_exporter_port_by_exact_address_not_substring():
    """'10.0.0.50' contains '10.0.0.5' and '10.0.0.5x' starts with it: neither is the address used."""
    bindings = [(7, '10.0.0.50[1111]'), (7, '10.0.0.5x[2222]'), (7, '10.0.0.5[3333]')]
    assert a.exporter_port(bindings, '10.0.0.5') == 3333
    assert a.exporter_port(bindings[:2], '10.0.0.5') == 1111        # no exact match: the first port, same address
    assert a.exporter_port([(7, '10.0.0.5[44]]'), (7, '10.0.0.5[4x4]'), (7, '10.0.0.5[55]')], '10.0.0.5') == 55


def test_exporter_port_missing():
    with pytest.raises(e.TransportError) as info:
        a.exporter_port([(7, 'CA1'), (7, 'CA1[99999]'), (15, 'x[5]'), (7, 'CA1[0]')], '10.0.0.5')
    assert info.value.to_message() == ('The CA announced no TCP port for its DCOM object exporter. What to do: '
                                       'Check that the host is an AD CS enterprise CA reachable over TCP.')
