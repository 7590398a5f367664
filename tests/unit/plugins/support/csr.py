# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only decoders of what _csr and _renewal_request build: the request attribute string and the renewal CMS."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_modules import rfc5652

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._renewal_request import (
    OID_PKCS7_SIGNED, signed_attrs_to_be_signed,
)


def parse_request_attributes(text):
    """Inverse of build_request_attributes: list of (name, value)."""
    out = []
    for line in (text or '').replace('\r\n', '\n').split('\n'):
        line = line.strip('\x00')
        if not line:
            continue
        name, _sep, value = line.partition(':')
        out.append((name.strip(), value.strip()))
    return out


def parse_renewal_request(cms_der):
    """Decode a renewal CMS built by build_renewal_request (or certreq) into a dict of its parts:
    ``csr_der``, ``certificates`` (list of DER), ``signer`` (issuer DER, serial), ``signed_attrs``
    {oid: [value DER]}, ``to_be_signed`` (bytes), ``signature``, ``digest_oid``, ``signature_oid``."""
    ci, rest = der_decoder.decode(cms_der, asn1Spec=rfc5652.ContentInfo())
    if rest or str(ci['contentType']) != OID_PKCS7_SIGNED:
        raise InvalidInput('Not a CMS SignedData')
    sd, _rest = der_decoder.decode(bytes(ci['content']), asn1Spec=rfc5652.SignedData())
    si = sd['signerInfos'][0]
    attrs = {}
    for attr in si['signedAttrs']:
        attrs.setdefault(str(attr['attrType']), []).extend(bytes(v) for v in attr['attrValues'])
    certs = [der_encoder.encode(c['certificate']) for c in sd['certificates']]
    ias = si['sid']['issuerAndSerialNumber']
    return {
        'econtent_type': str(sd['encapContentInfo']['eContentType']),
        'csr_der': bytes(sd['encapContentInfo']['eContent']),
        'certificates': certs,
        'signer_issuer_der': der_encoder.encode(ias['issuer']),
        'signer_serial': int(ias['serialNumber']),
        'signed_attrs': attrs,
        'to_be_signed': signed_attrs_to_be_signed(si['signedAttrs']),
        'signature': bytes(si['signature']),
        'digest_oid': str(si['digestAlgorithm']['algorithm']),
        'signature_oid': str(si['signatureAlgorithm']['algorithm']),
    }
