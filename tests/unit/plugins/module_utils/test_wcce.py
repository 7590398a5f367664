# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CertRequestClient against an in-memory CA: every call and reply goes through NDR bytes both ways."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from impacket.dcerpc.v5.dcomrt import ORPCTHAT
from impacket.dcerpc.v5.dtypes import NULL

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _dcom, _errors, _hresults, _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce_ndr
from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import CertRequestClient, EnrollmentResult

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import csr as support_csr


class Ref(object):
    def __init__(self, name, iid):
        self.name = name
        self.iid = iid


class FakeCaSession(object):
    """Stands in for DcomSession. Requests are serialized, re-parsed from bytes by impacket's classes (_ndr),
    answered by handler methods with impacket's reply class, serialized again and parsed from bytes by the
    client's decoder (_wcce_ndr for Request/Request2, impacket's class else)."""

    def __init__(self, has_d2=True, has_request2=True):
        self.base = Ref('ICertRequestD', _ndr.IID_ICertRequestD)
        self.has_d2 = has_d2
        self.has_request2 = has_request2
        self.calls = []
        self.pending = {}
        self.next_id = 40
        p = wcce_pki.pki()
        self.pki = p
        self.chain = pkcs7.serialize_certificates([p.ca, p.root], serialization.Encoding.DER)

    def query_interface(self, iid, name):
        self.calls.append(('QI', name))
        if not self.has_d2:
            raise _errors.exception_for_hresult(_hresults.E_NOINTERFACE, summary='QueryInterface for %s failed' % name,
                                                default_class=_errors.TransportError)
        return Ref(name, iid)

    def call(self, ref, request):
        raw = request.getData()
        parsed = _ndr.OPNUMS[request.opnum][0](raw)
        opnum = request.opnum
        self.calls.append((ref.name, opnum, parsed))
        if opnum >= 6 and ref.name != 'ICertRequestD2':
            raise AssertionError('opnum %d sent on %s' % (opnum, ref.name))
        if opnum == 6 and not self.has_request2:
            raise _dcom.translate_exception(_errors.RpcFault(0x1C010002),
                                            'ICertRequestD2.Request2', 'ca1')
        reply_cls = _ndr.OPNUMS[opnum][1]
        reply = reply_cls()
        orpc = ORPCTHAT()
        orpc['flags'] = 0
        orpc['extensions'] = NULL
        reply['ORPCthat'] = orpc
        reply['ErrorCode'] = 0
        getattr(self, 'op%d' % opnum)(parsed, reply)
        reply_bytes = reply.getData()
        decoded = getattr(_wcce_ndr, reply_cls.__name__, reply_cls)(reply_bytes)
        if decoded['ErrorCode']:
            raise _errors.exception_for_hresult(decoded['ErrorCode'], summary='%s failed' % type(request).__name__)
        return decoded

    # ---- CA behaviour ----
    def _enroll(self, parsed, reply, chain_field):
        authority = parsed['pwszAuthority']
        if authority != 'LAB-CA\x00':
            reply['ErrorCode'] = 0x80070057
            for f in ('pdwRequestId', 'pdwDisposition'):
                reply[f] = 0
            for f in (chain_field, 'pctbEncodedCert', 'pctbDispositionMessage'):
                reply[f] = _ndr.make_blob(b'')
            return
        csr = _ndr.blob_bytes(parsed['pctbRequest'])
        attrs = dict(support_csr.parse_request_attributes(parsed['pwszAttributes'] or ''))
        rid = parsed['pdwRequestId']
        template = attrs.get('CertificateTemplate')
        cert, disposition, msg = b'', 3, 'Issued'
        if rid:
            if rid not in self.pending:
                disposition, msg = 0x80094002, 'No such request'
            else:
                cert = self.pending.pop(rid)
        elif template == 'Denied':
            rid, disposition, msg = self._new_id(), 0x80094012, 'Denied by Policy Module'
        elif template == 'Manual':
            rid, disposition, msg = self._new_id(), 5, 'Taken Under Submission'
            self.pending[rid] = self.pki.leaf.public_bytes(serialization.Encoding.DER)
        else:
            assert csr.startswith(b'\x30')
            rid = self._new_id()
            cert = self.pki.leaf.public_bytes(serialization.Encoding.DER)
        reply['pdwRequestId'] = rid
        reply['pdwDisposition'] = disposition
        reply[chain_field] = _ndr.make_blob(self.chain if cert else b'')
        reply['pctbEncodedCert'] = _ndr.make_blob(cert)
        reply['pctbDispositionMessage'] = _ndr.make_blob(_ndr.utf16z(msg))

    def _new_id(self):
        self.next_id += 1
        return self.next_id

    def op3(self, parsed, reply):
        self._enroll(parsed, reply, 'pctbCertChain')

    def op6(self, parsed, reply):
        self._enroll(parsed, reply, 'pctbFullResponse')

    def op4(self, parsed, reply):
        reply['pctbOut'] = _ndr.make_blob(self.pki.ca.public_bytes(serialization.Encoding.DER)
                                          if parsed['fchain'] == 0 else b'')

    def op5(self, parsed, reply):
        pass

    op9 = op5

    def op7(self, parsed, reply):
        props = {
            _ndr.CR_PROP_CANAME: 'LAB-CA',
            _ndr.CR_PROP_CATYPE: 0,
            _ndr.CR_PROP_CASIGCERT: self.pki.ca.public_bytes(serialization.Encoding.DER),
            _ndr.CR_PROP_TEMPLATES: 'User\n1.3.6.1.4.1.311.21.8.1.1\nWebServer\n1.3.6.1.4.1.311.21.8.1.2\n',
        }
        if parsed['PropID'] not in props:
            reply['ErrorCode'] = 0x80094004
            reply['pctbPropertyValue'] = _ndr.make_blob(b'')
            return
        reply['pctbPropertyValue'] = _ndr.make_blob(
            _ndr.encode_property_value(props[parsed['PropID']], parsed['PropType']))

    def op8(self, parsed, reply):
        props = [{'prop_id': 6, 'type': 4, 'display_name': 'CA Name'},
                 {'prop_id': 0x1D, 'type': 4, 'display_name': 'Templates'}]
        reply['pcProperty'] = len(props)
        reply['pctbPropInfo'] = _ndr.make_blob(_ndr.encode_catransprop(props))


CSR_DER = None


def csr():
    global CSR_DER
    if CSR_DER is None:
        CSR_DER = _csr.build_csr(wcce_pki.rsa_key(), 'CN=host.lab.adcs.test')
    return CSR_DER


def test_request_issued_via_request2():
    s = FakeCaSession()
    client = CertRequestClient(s, 'LAB-CA')
    res = client.request('WebServer', csr(), 'SAN:dns=host.lab.adcs.test')
    assert isinstance(res, EnrollmentResult)
    assert res.issued and res.status == 'issued' and res.hresult == 0 and res.message == 'Issued'
    assert res.request_id == 41
    assert res.certificate_der == s.pki.leaf.public_bytes(serialization.Encoding.DER)
    assert len(res.chain_der_list) == 2
    assert res.raise_for_status() is res
    assert s.calls[0] == ('QI', 'ICertRequestD2')
    name, opnum, parsed = s.calls[1]
    assert (name, opnum) == ('ICertRequestD2', 6)
    assert parsed['dwFlags'] == _ndr.CR_IN_PKCS10
    assert parsed['pwszAttributes'] == 'CertificateTemplate:WebServer\nSAN:dns=host.lab.adcs.test\x00'
    assert _ndr.blob_bytes(parsed['pctbRequest']) == csr()
    assert client.interface_version == 2


def test_fallback_to_icertrequestd_when_qi_fails():
    s = FakeCaSession(has_d2=False)
    client = CertRequestClient(s, 'LAB-CA')
    res = client.request('WebServer', csr())
    assert res.issued
    assert [c[:2] for c in s.calls[1:]] == [('ICertRequestD', 3)]
    assert 'E_NOINTERFACE' in client.fallback_reason
    assert client.interface_version == 1
    assert client.ping() == 1
    assert s.calls[-1][1] == 5
    with pytest.raises(_errors.TransportError, match='ICertRequestD2'):
        client.get_ca_property(_ndr.CR_PROP_CANAME)


def test_no_fallback_when_the_qi_reply_fails_verification():
    """A tampered QueryInterface reply is no E_NOINTERFACE: stop instead of falling back to ICertRequestD."""
    s = FakeCaSession()
    forged = _errors.ReplyVerificationError('The reply from the CA at ca1 failed integrity verification (x)')

    def tampered(iid, name):
        s.calls.append(('QI', name))
        raise forged

    s.query_interface = tampered
    client = CertRequestClient(s, 'LAB-CA')
    with pytest.raises(_errors.ReplyVerificationError) as info:
        client.request('WebServer', csr())
    assert info.value is forged
    assert [c[:2] for c in s.calls] == [('QI', 'ICertRequestD2')]
    assert client.fallback_reason is None


def test_no_fallback_when_the_qi_reply_does_not_decode():
    """A verified QueryInterface reply that does not decode (cut through the fields a Kerberos verifier does not
    cover) is no E_NOINTERFACE either: stop with the decode message."""
    import struct
    from ansible_collections.adcs.enrollment.plugins.module_utils import _rpc_verify
    s = FakeCaSession()

    def cut(iid, name):
        s.calls.append(('QI', name))
        raise _rpc_verify.decode_error('ca1', 'RemQueryInterface', struct.error('unpack_from requires a buffer'))

    s.query_interface = cut
    client = CertRequestClient(s, 'LAB-CA')
    with pytest.raises(_errors.ReplyVerificationError) as info:
        client.request('WebServer', csr())
    assert info.value.to_message().startswith(
        'The reply from the CA at ca1 could not be decoded (a malformed or truncated RemQueryInterface reply); '
        'nothing was written; struct.error. What to do: ')
    assert [c[:2] for c in s.calls] == [('QI', 'ICertRequestD2')]
    assert client.fallback_reason is None


def test_fallback_to_request_when_request2_missing():
    s = FakeCaSession(has_request2=False)
    client = CertRequestClient(s, 'LAB-CA')
    assert client.request('WebServer', csr()).issued
    assert client.request('WebServer', csr()).issued
    opnums = [c[1] for c in s.calls if c[0] != 'QI']
    assert opnums == [6, 3, 3]      # Request2 tried once, then Request only
    assert 'NCA_S_OP_RNG_ERROR' in client.fallback_reason


def test_prefer_request_opnum3():
    s = FakeCaSession()
    client = CertRequestClient(s, 'LAB-CA', prefer_request2=False)
    assert client.request('WebServer', csr()).issued
    assert [c[1] for c in s.calls if c[0] != 'QI'] == [3]


def test_denied_disposition():
    s = FakeCaSession()
    res = CertRequestClient(s, 'LAB-CA').request('Denied', csr())
    assert not res.issued and res.status == 'denied'
    assert res.hresult == 0x80094012 and res.certificate_der is None and res.chain_der_list == []
    with pytest.raises(_errors.RequestDenied) as info:
        res.raise_for_status()
    msg = info.value.to_message()
    assert 'CERTSRV_E_TEMPLATE_DENIED' in msg and 'request ID 41' in msg and 'Denied by Policy Module' in msg


def test_pending_then_retrieve():
    s = FakeCaSession()
    client = CertRequestClient(s, 'LAB-CA')
    res = client.request('Manual', csr())
    assert res.pending and res.status == 'pending' and res.certificate_der is None
    with pytest.raises(_errors.RequestPending, match='request ID 41'):
        res.raise_for_status()
    got = client.retrieve(41)
    assert got.issued and got.request_id == 41
    name, opnum, parsed = s.calls[-1]
    assert parsed['pdwRequestId'] == 41 and _ndr.blob_bytes(parsed['pctbRequest']) == b''
    assert parsed['dwFlags'] == 0
    assert parsed['pwszAttributes'] in (None, b'')      # a NULL pointer (MS-WCCE 3.1.1.4.3.7), not '\x00'
    assert client.build_request(b'', None, 0, 41).getData() != client.build_request(b'', '', 0, 41).getData()
    missing = client.retrieve(999)
    assert missing.hresult == 0x80094002
    with pytest.raises(_errors.NotFound):
        missing.raise_for_status()


def test_renewal_flags_and_template_not_duplicated():
    s = FakeCaSession()
    client = CertRequestClient(s, 'LAB-CA')
    client.request('WebServer', csr(), 'CertificateTemplate:WebServer', flags=_ndr.CR_IN_PKCS7)
    parsed = s.calls[-1][2]
    assert parsed['dwFlags'] == 0x300
    assert parsed['pwszAttributes'] == 'CertificateTemplate:WebServer\x00'


def test_wrong_ca_name_raises_invalidarg():
    s = FakeCaSession()
    with pytest.raises(_errors.BadRequest) as info:
        CertRequestClient(s, 'NOPE-CA').request('WebServer', csr())
    assert info.value.hresult == 0x80070057 and 'CA name' in info.value.to_message()


def test_get_ca_cert_and_properties():
    s = FakeCaSession()
    client = CertRequestClient(s, 'LAB-CA')
    assert client.get_ca_cert() == s.pki.ca.public_bytes(serialization.Encoding.DER)
    assert s.calls[-1][0] == 'ICertRequestD'
    assert client.get_ca_property(_ndr.CR_PROP_CANAME) == 'LAB-CA'
    assert client.get_ca_property(_ndr.CR_PROP_CATYPE) == 0
    assert client.get_ca_property(_ndr.CR_PROP_CASIGCERT, 0) == s.pki.ca.public_bytes(serialization.Encoding.DER)
    assert client.get_templates() == [('User', '1.3.6.1.4.1.311.21.8.1.1'), ('WebServer', '1.3.6.1.4.1.311.21.8.1.2')]
    with pytest.raises(_errors.NotFound):
        client.get_ca_property(_ndr.CR_PROP_CAXCHGCERT)
    info = client.get_ca_property_info()
    assert [(p['prop_id'], p['display_name']) for p in info] == [(6, 'CA Name'), (0x1D, 'Templates')]
    assert client.ping() == 2 and s.calls[-1][1] == 9
    assert [c for c in s.calls if c[0] == 'QI'] == [('QI', 'ICertRequestD2')]   # asked once


def test_input_checks():
    with pytest.raises(_errors.InvalidInput):
        CertRequestClient(FakeCaSession(), '')
    client = CertRequestClient(FakeCaSession(), 'LAB-CA')
    with pytest.raises(_errors.InvalidInput):
        client.request('WebServer', None)
    with pytest.raises(_errors.InvalidInput):
        client.retrieve(0)


def test_enrollment_result_shapes():
    r = EnrollmentResult(2, 7, 0, 'Denied', None, [])
    assert r.status == 'denied'
    with pytest.raises(_errors.RequestDenied, match='disposition denied'):
        r.raise_for_status()
    r = EnrollmentResult(3, 7, 0, '', None, [])   # issued but no certificate: not usable
    assert not r.issued and r.status == 'incomplete'
