# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MS-WCCE client: one job, the enrollment calls of ICertRequestD / ICertRequestD2 over a DCOM session.

``CertRequestClient(session, authority)`` builds the call objects (``_wcce_ndr`` for Request/Request2, ``_ndr`` for
the others), sends them through the session (``session.call(ref, request)``; ``session.base`` is the ICertRequestD
pointer, ``session.query_interface()`` gives ICertRequestD2) and decodes the replies into ``EnrollmentResult`` /
Python values. Per MS-WCCE 3.1.1.4 it asks for ICertRequestD2 first and falls back to ICertRequestD when
QueryInterface fails; with D2 it submits via Request2 (opnum 6) and falls back to Request (opnum 3) when the CA does
not implement Request2.

The session is anything with ``base``, ``query_interface(iid, name)`` and ``call(ref, request)``: the real one is
``_dcom.DcomSession``; unit tests use an in-memory one that round-trips every call through NDR bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_IMPACKET
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _hresults
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _orpc
from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce_ndr
from ansible_collections.adcs.enrollment.plugins.module_utils._hresults import (
    CR_DISP_DENIED,
    CR_DISP_ISSUED,
    CR_DISP_ISSUED_OUT_OF_BAND,
    CR_DISP_UNDER_SUBMISSION,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    ProtocolError,
    RequestPending,
    TransportError,
    WcceError,
)

_EnrollmentResultBase = collections.namedtuple(
    'EnrollmentResult',
    ['disposition', 'request_id', 'hresult', 'message', 'certificate_der', 'chain_der_list'])


class EnrollmentResult(_EnrollmentResultBase):
    """Outcome of Request/Request2.

    disposition: CR_DISP_* (3 issued, 5 pending, 2 denied, ...) or, as Windows CAs report failures, an HRESULT;
    hresult: the failure HRESULT (0 when issued or pending); message: the CA's disposition message;
    certificate_der: the issued certificate (None unless issued); chain_der_list: the certificates of the PKCS#7
    chain / full response (DER, in the CA's order; the issued certificate may be among them).
    """

    __slots__ = ()

    @property
    def issued(self):
        return self.disposition in (CR_DISP_ISSUED, CR_DISP_ISSUED_OUT_OF_BAND) and bool(self.certificate_der)

    @property
    def pending(self):
        return self.disposition == CR_DISP_UNDER_SUBMISSION

    @property
    def status(self):
        if self.issued:
            return 'issued'
        if self.pending:
            return 'pending'
        if self.disposition in (CR_DISP_ISSUED, CR_DISP_ISSUED_OUT_OF_BAND):
            return 'incomplete'   # issued but no certificate came back
        return 'denied' if self.disposition == CR_DISP_DENIED or self.hresult else \
            _hresults.disposition_name(self.disposition)

    def error(self, summary=None):
        """The exception describing a non-issued outcome (RequestPending for pending), or None if issued."""
        if self.issued:
            return None
        if self.pending:
            return RequestPending(request_id=self.request_id, detail=self.message or None,
                                  remedy='A certificate manager must approve request %s; then retrieve it with '
                                         'its request ID.' % self.request_id)
        code = self.hresult or None
        return _errors.exception_for_hresult(code, summary=summary or 'The CA did not issue the certificate',
                                             request_id=self.request_id, detail=self.message or None,
                                             default_class=_errors.RequestDenied) if code else \
            _errors.RequestDenied(summary or 'The CA did not issue the certificate (disposition %s)'
                                  % _hresults.disposition_name(self.disposition),
                                  request_id=self.request_id, detail=self.message or None)

    def raise_for_status(self, summary=None):
        err = self.error(summary)
        if err is not None:
            raise err
        return self


def _split_pkcs7(data):
    if not data:
        return []
    from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
    from cryptography.hazmat.primitives import serialization
    return [c.public_bytes(serialization.Encoding.DER) for c in _x509.parse_pkcs7_certificates(data)]


def decode_request_response(resp, chain_field='pctbCertChain'):
    """Turn a RequestResponse / Request2Response into an EnrollmentResult."""
    disposition = resp['pdwDisposition'] & 0xFFFFFFFF
    request_id = resp['pdwRequestId']
    message = _ndr.decode_utf16z(_ndr.blob_bytes(resp['pctbDispositionMessage']))
    cert = _ndr.blob_bytes(resp['pctbEncodedCert']) or None
    chain_raw = _ndr.blob_bytes(resp[chain_field])
    try:
        chain = _split_pkcs7(chain_raw)
    except WcceError as exc:
        raise ProtocolError('The CA returned a certificate chain that cannot be parsed', request_id=request_id,
                            detail=str(exc))
    hresult = 0
    try:
        error_code = resp['ErrorCode'] & 0xFFFFFFFF
    except (KeyError, TypeError):
        error_code = 0
    if disposition in (CR_DISP_ISSUED, CR_DISP_ISSUED_OUT_OF_BAND, CR_DISP_UNDER_SUBMISSION):
        hresult = error_code
    elif disposition & 0x80000000:
        hresult = disposition   # MS-WCCE: a failed request reports its HRESULT as the disposition
    else:
        hresult = error_code
    if disposition not in (CR_DISP_ISSUED, CR_DISP_ISSUED_OUT_OF_BAND):
        cert = None
    return EnrollmentResult(disposition, request_id, hresult, message, cert, chain)


new_orpcthis = _orpc.new_orpcthis


class CertRequestClient(object):
    """Enrollment calls against one CA (``authority`` = CA common name, e.g. LAB-CA)."""

    def __init__(self, session, authority, prefer_request2=True):
        if not HAS_IMPACKET:
            raise TransportError('The Python library "impacket" is required',
                                 remedy='Install impacket (>= 0.12) on the node that runs the module.')
        if not authority:
            raise _errors.InvalidInput('The CA name (authority) is required')
        self.session = session
        self.authority = authority
        self.prefer_request2 = prefer_request2
        self._d2, self._d2_checked = None, False     # ICertRequestD2, queried once
        self._request2_ok = True
        self.fallback_reason = None

    # ---- interfaces ----
    @property
    def interface_version(self):
        return 2 if self._get_d2() is not None else 1

    def _get_d2(self):
        if not self._d2_checked:
            self._d2_checked = True
            try:
                self._d2 = self.session.query_interface(_ndr.IID_ICertRequestD2, 'ICertRequestD2')
            except _errors.ReplyVerificationError:
                raise       # a forged or tampered reply is no reason to fall back: stop
            except WcceError as exc:
                # MS-WCCE 3.1.1.4: fall back to ICertRequestD.
                self._d2 = None
                self.fallback_reason = exc.to_message()
        return self._d2

    def _base(self):
        if getattr(self.session, 'base', None) is None and hasattr(self.session, 'open'):
            self.session.open()
        return self.session.base

    def _call(self, ref, request):
        # the struct-coded calls take their ORPCTHIS as bytes (no impacket object to build)
        request['ORPCthis'] = _wcce_ndr.orpcthis() if isinstance(request, _wcce_ndr.Call) else new_orpcthis()
        return self.session.call(ref, request)

    # ---- calls ----
    def build_request(self, csr, attributes=None, flags=_ndr.CR_IN_PKCS10, request_id=0):
        """ICertRequestD::Request (``_wcce_ndr``: struct-coded); attributes None: NULL (a retrieval, MS-WCCE
        3.1.1.4.3.7)."""
        return _wcce_ndr.Request(dwFlags=flags, pwszAuthority=self.authority, pdwRequestId=request_id,
                                 pwszAttributes=attributes, pctbRequest=csr)

    def build_request2(self, csr, attributes=None, flags=_ndr.CR_IN_PKCS10, request_id=0, serial_number=None):
        return _wcce_ndr.Request2(pwszAuthority=self.authority, dwFlags=flags, pwszSerialNumber=serial_number or None,
                                  pdwRequestId=request_id, pwszAttributes=attributes, pctbRequest=csr)

    def request(self, template=None, csr_der=None, attributes=None, flags=None, request_id=0):
        """Submit a request (PKCS#10 by default; pass flags=CR_IN_PKCS7 for a renewal CMS).

        ``template`` is added as ``CertificateTemplate:<name>`` unless ``attributes`` already names one.
        Returns an EnrollmentResult (also for denials: call ``raise_for_status()``).
        """
        if not csr_der and not request_id:
            raise _errors.InvalidInput('A request (PKCS#10/CMS) or a request ID is required')
        if flags is None:
            flags = _ndr.CR_IN_PKCS10
        attrs = attributes or ''
        if template and 'certificatetemplate:' not in attrs.lower():
            attrs = ('CertificateTemplate:%s\n%s' % (template, attrs)).rstrip('\n')
        return self._submit(csr_der or b'', attrs, flags, request_id)

    def retrieve(self, request_id):
        """Retrieve a (formerly pending) request: Request with the ID set, an empty request blob and NULL
        pwszAttributes (MS-WCCE 3.1.1.4.3.7)."""
        if not request_id:
            raise _errors.InvalidInput('A request ID is required to retrieve a certificate')
        return self._submit(b'', None, 0, int(request_id))

    def _submit(self, csr, attrs, flags, request_id):
        d2 = self._get_d2() if self.prefer_request2 else None
        if d2 is not None and self._request2_ok:
            try:
                resp = self._call(d2, self.build_request2(csr, attrs, flags, request_id))
                return decode_request_response(resp, 'pctbFullResponse')
            except WcceError as exc:
                if exc.hresult not in (0x1C010002, 0x800706D1, 0x6D1, 0x80004001):
                    raise
                self._request2_ok = False
                self.fallback_reason = exc.to_message()
        resp = self._call(self._base(), self.build_request(csr, attrs, flags, request_id))
        return decode_request_response(resp, 'pctbCertChain')

    def get_ca_cert(self, fchain=_ndr.GETCERT_CASIGCERT):
        """GetCACert: raw bytes of the reply blob (for GETCERT_CASIGCERT: the CA certificate DER)."""
        req = _ndr.GetCACert()
        req['fchain'] = fchain
        req['pwszAuthority'] = _ndr.wstr(self.authority)
        resp = self._call(self._base(), req)
        return _ndr.blob_bytes(resp['pctbOut'])

    def get_ca_property(self, prop_id, index=0, prop_type=None):
        """GetCAProperty over ICertRequestD2; value decoded by type (LONG int, STRING str, BINARY bytes)."""
        d2 = self._get_d2()
        if d2 is None:
            raise TransportError('GetCAProperty needs ICertRequestD2, which the CA does not offer',
                                 hresult=_hresults.E_NOINTERFACE, detail=self.fallback_reason)
        if prop_type is None:
            prop_type = _ndr.PROPERTY_TYPES.get(prop_id, _ndr.PROPTYPE_BINARY)
        req = _ndr.GetCAProperty()
        req['pwszAuthority'] = _ndr.wstr(self.authority)
        req['PropID'] = prop_id
        req['PropIndex'] = index
        req['PropType'] = prop_type
        resp = self._call(d2, req)
        try:
            return _ndr.decode_property_value(_ndr.blob_bytes(resp['pctbPropertyValue']), prop_type)
        except ValueError as exc:
            raise ProtocolError('The CA returned an undecodable value for property 0x%X' % prop_id,
                                detail=str(exc))

    def get_ca_property_info(self):
        d2 = self._get_d2()
        if d2 is None:
            raise TransportError('GetCAPropertyInfo needs ICertRequestD2, which the CA does not offer',
                                 hresult=_hresults.E_NOINTERFACE, detail=self.fallback_reason)
        req = _ndr.GetCAPropertyInfo()
        req['pwszAuthority'] = _ndr.wstr(self.authority)
        resp = self._call(d2, req)
        try:
            return _ndr.decode_catransprop(_ndr.blob_bytes(resp['pctbPropInfo']), resp['pcProperty'])
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError('The CA returned an undecodable property list', detail=str(exc))

    def get_templates(self):
        """Templates the CA offers: list of (name, oid) from CR_PROP_TEMPLATES."""
        return _ndr.parse_templates_property(self.get_ca_property(_ndr.CR_PROP_TEMPLATES))

    def ping(self):
        """Ping2 over ICertRequestD2 when available, else Ping. Returns the interface version used."""
        d2 = self._get_d2()
        req = _ndr.Ping2() if d2 is not None else _ndr.Ping()
        req['pwszAuthority'] = _ndr.wstr(self.authority)
        self._call(d2 if d2 is not None else self._base(), req)
        return 2 if d2 is not None else 1
