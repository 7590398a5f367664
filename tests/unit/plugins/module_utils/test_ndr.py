# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every MS-WCCE call and reply: encode with the _ndr structures, decode the bytes back, compare."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import struct

import pytest
from impacket.dcerpc.v5.dcomrt import ORPCTHAT, ORPCTHIS
from impacket.dcerpc.v5.dtypes import NULL
from impacket.uuid import generate

from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr as n


def orpcthis():
    o = ORPCTHIS()
    o['cid'] = generate()
    o['extensions'] = NULL
    o['flags'] = 0
    return o


def orpcthat():
    o = ORPCTHAT()
    o['flags'] = 0
    o['extensions'] = NULL
    return o


def roundtrip(obj):
    obj_bytes = obj.getData()
    again = type(obj)(obj_bytes)
    assert again.getData() == obj_bytes
    return again, obj_bytes


CSR = bytes(range(256)) * 3 + b'\x01'   # odd length: exercises padding


def test_uuids_and_opnums():
    assert n.CLSID_CCertRequestD == n.string_to_bin('D99E6E74-FC88-11D0-B498-00A0C90312F3')
    assert n.IID_ICertRequestD[:16] == n.string_to_bin('D99E6E70-FC88-11D0-B498-00A0C90312F3')
    assert n.IID_ICertRequestD2[:16] == n.string_to_bin('5422FD3A-D4B8-4CEF-A12E-E87D4CA22E90')
    assert n.IID_ICertRequestD[16:] == b'\x00\x00\x00\x00'  # version 0.0
    assert dict((k, v[0].opnum) for k, v in n.OPNUMS.items()) == dict((k, k) for k in range(3, 10))
    for call, reply in n.OPNUMS.values():
        assert reply.__name__ == call.__name__ + 'Response'   # _rpc_conn.RpcConnection.request relies on this


def test_request_call():
    req = n.Request()
    req['ORPCthis'] = orpcthis()
    req['dwFlags'] = n.CR_IN_PKCS10 | n.CR_IN_MACHINE
    req['pwszAuthority'] = n.wstr('LAB-CA')
    req['pdwRequestId'] = 0
    req['pwszAttributes'] = n.wstr('CertificateTemplate:WebServer\nSAN:dns=a.example')
    req['pctbRequest'] = n.make_blob(CSR)
    got, raw = roundtrip(req)
    assert got['dwFlags'] == 0x100100
    assert got['pwszAuthority'] == 'LAB-CA\x00'
    assert got['pwszAttributes'] == 'CertificateTemplate:WebServer\nSAN:dns=a.example\x00'
    assert n.blob_bytes(got['pctbRequest']) == CSR
    # the authority string is marshalled as UTF-16LE conformant varying string
    assert 'LAB-CA\x00'.encode('utf-16-le') in raw


def test_request_reply_issued():
    resp = n.RequestResponse()
    resp['ORPCthat'] = orpcthat()
    resp['pdwRequestId'] = 17
    resp['pdwDisposition'] = 3
    resp['pctbCertChain'] = n.make_blob(b'\x30\x82chain')
    resp['pctbEncodedCert'] = n.make_blob(b'\x30\x82cert')
    resp['pctbDispositionMessage'] = n.make_blob(n.utf16z('Issued'))
    resp['ErrorCode'] = 0
    got, raw = roundtrip(resp)
    assert got['pdwRequestId'] == 17 and got['pdwDisposition'] == 3
    assert n.blob_bytes(got['pctbCertChain']) == b'\x30\x82chain'
    assert n.blob_bytes(got['pctbEncodedCert']) == b'\x30\x82cert'
    assert n.decode_utf16z(n.blob_bytes(got['pctbDispositionMessage'])) == 'Issued'
    assert raw[-4:] == b'\x00\x00\x00\x00'


def test_request_reply_denied_hresult_disposition():
    resp = n.RequestResponse()
    resp['ORPCthat'] = orpcthat()
    resp['pdwRequestId'] = 18
    resp['pdwDisposition'] = 0x80094012
    resp['pctbCertChain'] = n.make_blob(b'')
    resp['pctbEncodedCert'] = n.make_blob(None)
    resp['pctbDispositionMessage'] = n.make_blob(n.utf16z('Denied by Policy Module'))
    resp['ErrorCode'] = 0
    got, _raw = roundtrip(resp)
    assert got['pdwDisposition'] == 0x80094012
    assert n.blob_bytes(got['pctbCertChain']) == b'' and n.blob_bytes(got['pctbEncodedCert']) == b''


def test_get_ca_cert():
    req = n.GetCACert()
    req['ORPCthis'] = orpcthis()
    req['fchain'] = n.GETCERT_CAXCHGCERT
    req['pwszAuthority'] = n.wstr('LAB-CA')
    got, _raw = roundtrip(req)
    assert got['fchain'] == 1 and got['pwszAuthority'] == 'LAB-CA\x00'
    resp = n.GetCACertResponse()
    resp['ORPCthat'] = orpcthat()
    resp['pctbOut'] = n.make_blob(b'cacert')
    resp['ErrorCode'] = 0
    got, _raw = roundtrip(resp)
    assert n.blob_bytes(got['pctbOut']) == b'cacert'


@pytest.mark.parametrize('cls', [n.Ping, n.Ping2])
def test_ping(cls):
    req = cls()
    req['ORPCthis'] = orpcthis()
    req['pwszAuthority'] = n.wstr('LAB-CA')
    got, _raw = roundtrip(req)
    assert got['pwszAuthority'] == 'LAB-CA\x00'
    resp = getattr(n, cls.__name__ + 'Response')()
    resp['ORPCthat'] = orpcthat()
    resp['ErrorCode'] = 0x80070057
    got, raw = roundtrip(resp)
    assert got['ErrorCode'] == 0x80070057 and struct.unpack('<L', raw[-4:])[0] == 0x80070057


def test_request2_call_and_reply():
    req = n.Request2()
    req['ORPCthis'] = orpcthis()
    req['pwszAuthority'] = n.wstr('LAB-CA')
    req['dwFlags'] = n.CR_IN_PKCS7
    req['pwszSerialNumber'] = NULL
    req['pdwRequestId'] = 0
    req['pwszAttributes'] = n.wstr('')
    req['pctbRequest'] = n.make_blob(CSR)
    got, raw = roundtrip(req)
    assert got['dwFlags'] == 0x300 and got['pwszAuthority'] == 'LAB-CA\x00'
    assert n.blob_bytes(got['pctbRequest']) == CSR
    assert got['pwszAttributes'] == '\x00'
    # parameter order differs from Request: authority first, then flags
    req1 = n.Request()
    req1['ORPCthis'] = orpcthis()
    req1['dwFlags'] = n.CR_IN_PKCS7
    req1['pwszAuthority'] = n.wstr('LAB-CA')
    req1['pdwRequestId'] = 0
    req1['pwszAttributes'] = n.wstr('')
    req1['pctbRequest'] = n.make_blob(CSR)
    orpc_len = len(req['ORPCthis'].getData())
    assert raw[orpc_len:orpc_len + 4] != req1.getData()[orpc_len:orpc_len + 4]

    resp = n.Request2Response()
    resp['ORPCthat'] = orpcthat()
    resp['pdwRequestId'] = 5
    resp['pdwDisposition'] = 5
    resp['pctbFullResponse'] = n.make_blob(b'full')
    resp['pctbEncodedCert'] = n.make_blob(b'')
    resp['pctbDispositionMessage'] = n.make_blob(n.utf16z('Taken Under Submission'))
    resp['ErrorCode'] = 0
    got, _raw = roundtrip(resp)
    assert got['pdwDisposition'] == 5 and n.blob_bytes(got['pctbFullResponse']) == b'full'


def test_request2_with_serial_number():
    req = n.Request2()
    req['ORPCthis'] = orpcthis()
    req['pwszAuthority'] = n.wstr('LAB-CA')
    req['dwFlags'] = 0
    req['pwszSerialNumber'] = n.wstr('1a2b')
    req['pdwRequestId'] = 0
    req['pwszAttributes'] = NULL
    req['pctbRequest'] = n.make_blob(b'')
    got, _raw = roundtrip(req)
    assert got['pwszSerialNumber'] == '1a2b\x00'


@pytest.mark.parametrize('prop_id, prop_type, value', [
    (n.CR_PROP_CANAME, n.PROPTYPE_STRING, u'LAB-CA'),
    (n.CR_PROP_CATYPE, n.PROPTYPE_LONG, 0),
    (n.CR_PROP_CASIGCERTCOUNT, n.PROPTYPE_LONG, -1),
    (n.CR_PROP_CAXCHGCERT, n.PROPTYPE_BINARY, b'\x30\x82\x01\x00xchg'),
    (n.CR_PROP_TEMPLATES, n.PROPTYPE_STRING, u'User\n1.3.6.1.4.1.311.21.8.1.1\nWebServer\n1.3.6.1.4.1.311.21.8.1.2\n'),
    (0x99, n.PROPTYPE_DATE, 133800000000000000),
])
def test_get_ca_property(prop_id, prop_type, value):
    req = n.GetCAProperty()
    req['ORPCthis'] = orpcthis()
    req['pwszAuthority'] = n.wstr('LAB-CA')
    req['PropID'] = prop_id
    req['PropIndex'] = 0
    req['PropType'] = prop_type
    got, _raw = roundtrip(req)
    assert (got['PropID'], got['PropIndex'], got['PropType']) == (prop_id, 0, prop_type)
    resp = n.GetCAPropertyResponse()
    resp['ORPCthat'] = orpcthat()
    resp['pctbPropertyValue'] = n.make_blob(n.encode_property_value(value, prop_type))
    resp['ErrorCode'] = 0
    got, _raw = roundtrip(resp)
    assert n.decode_property_value(n.blob_bytes(got['pctbPropertyValue']), prop_type) == value


def test_get_ca_property_info():
    props = [{'prop_id': 6, 'type': n.PROPTYPE_STRING, 'indexed': False, 'display_name': 'CA Name'},
             {'prop_id': 0xC, 'type': n.PROPTYPE_BINARY, 'indexed': True, 'display_name': u'CA Signature Cert'},
             {'prop_id': 0x1D, 'type': n.PROPTYPE_STRING, 'indexed': False, 'display_name': ''}]
    req = n.GetCAPropertyInfo()
    req['ORPCthis'] = orpcthis()
    req['pwszAuthority'] = n.wstr('LAB-CA')
    got, _raw = roundtrip(req)
    assert got['pwszAuthority'] == 'LAB-CA\x00'
    resp = n.GetCAPropertyInfoResponse()
    resp['ORPCthat'] = orpcthat()
    resp['pcProperty'] = len(props)
    resp['pctbPropInfo'] = n.make_blob(n.encode_catransprop(props))
    resp['ErrorCode'] = 0
    got, _raw = roundtrip(resp)
    decoded = n.decode_catransprop(n.blob_bytes(got['pctbPropInfo']), got['pcProperty'])
    assert [(d['prop_id'], d['type'], d['indexed'], d['display_name']) for d in decoded] == \
        [(6, 4, False, 'CA Name'), (0xC, 3, True, 'CA Signature Cert'), (0x1D, 4, False, '')]


def test_catransprop_errors():
    with pytest.raises(ValueError):
        n.decode_catransprop(b'\x00' * 11, 1)
    bad = struct.pack('<lBBHL', 6, 4, 0, 0, 500)
    with pytest.raises(ValueError):
        n.decode_catransprop(bad, 1)


def test_helpers():
    blob = n.make_blob(None)
    assert blob['cb'] == 0 and n.blob_bytes(blob) == b''
    assert n.blob_bytes(None) == b''
    assert n.utf16z('ab') == b'a\x00b\x00\x00\x00'
    assert n.decode_utf16z(b'a\x00b\x00\x00\x00junk') == 'ab'
    assert n.decode_utf16z(b'a\x00b') == 'a'
    assert n.decode_utf16z(b'') == ''
    assert n.wstr('x') == 'x\x00' and n.wstr('x\x00') == 'x\x00' and n.wstr(None) == NULL
    assert n.parse_templates_property('User\n1.2\nWebServer\n1.3\n') == [('User', '1.2'), ('WebServer', '1.3')]
    assert n.parse_templates_property('') == []
    assert n.parse_templates_property('Odd\n') == [('Odd', '')]
    # version 1 templates have an empty OID line: the pairs keep their places
    assert n.parse_templates_property('User\n\nWebServer\n\nWebServerECC\n1.3.6.1.4.1.311.21.8.1.2\n') == [
        ('User', ''), ('WebServer', ''), ('WebServerECC', '1.3.6.1.4.1.311.21.8.1.2')]
    assert n.CR_PROP_KRACERTCOUNT == 0x19 and n.CR_PROP_KRACERT == 0x1A
    with pytest.raises(ValueError):
        n.decode_property_value(b'\x01', n.PROPTYPE_LONG)
