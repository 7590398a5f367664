# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renewal requests: one job, wrapping a renewal PKCS#10 in the CMS SignedData MS-WCCE 3.1.1.4.3.2.1 asks for.

eContentType id-data, eContent = the new PKCS#10 (built by ``_csr.build_csr(..., renewal_certificate=old)``, so it
carries the szOID_RENEWAL_CERTIFICATE attribute 1.3.6.1.4.1.311.13.1 = old certificate DER); the old certificate is
in SignedData.certificates and the SignerInfo is signed with the OLD key. The same attribute is also put in the
signed attributes (as certreq and Certipy do). Submitted with request type CR_IN_PKCS7 (0x300).

CMS is built with pyasn1/pyasn1_modules (installed with impacket): cryptography's PKCS7SignatureBuilder cannot
carry a custom authenticated attribute.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils._csr import (
    HASH_OIDS, OID_RENEWAL_CERTIFICATE, der_length, der_oid, hash_algorithm, require_crypto, require_pyasn1, sign,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY, HAS_PYASN1
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._keys import public_key_der

if HAS_CRYPTOGRAPHY:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

if HAS_PYASN1:
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1.type import univ
    from pyasn1_modules import rfc5280, rfc5652

OID_PKCS7_DATA = '1.2.840.113549.1.7.1'
OID_PKCS7_SIGNED = '1.2.840.113549.1.7.2'
OID_CONTENT_TYPE = '1.2.840.113549.1.9.3'
OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4'
OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1'


def _algid(oid, null_params=True):
    alg = rfc5280.AlgorithmIdentifier()
    alg['algorithm'] = univ.ObjectIdentifier(oid)
    if null_params:
        alg['parameters'] = univ.Any(b'\x05\x00')
    return alg


def _cms_attribute(oid, value_der):
    attr = rfc5652.Attribute()
    attr['attrType'] = univ.ObjectIdentifier(oid)
    attr['attrValues'].append(univ.Any(value_der))
    return attr


def signed_attrs_to_be_signed(signed_attrs):
    """The bytes a CMS signature covers: DER of the signed attributes with the EXPLICIT SET OF tag (RFC 5652
    5.4), not the [0] IMPLICIT tag they carry inside SignerInfo."""
    encoded = der_encoder.encode(signed_attrs)
    return b'\x31' + encoded[1:]


def build_renewal_request(csr_der, old_certificate, old_key, hash_name='sha256'):
    """Wrap a (renewal) PKCS#10 in CMS SignedData signed with the old certificate's key; return DER.

    ``csr_der`` should come from ``build_csr(..., renewal_certificate=old_certificate)``. Submit it with request
    type CR_IN_PKCS7 (0x300).
    """
    require_crypto()
    require_pyasn1()
    pub = old_certificate.public_key()
    if public_key_der(pub) != public_key_der(old_key.public_key()):
        raise InvalidInput('The key given for renewal does not belong to the certificate being renewed')
    hash_name = (hash_name or 'sha256').lower().replace('-', '')
    algorithm = hash_algorithm(hash_name)
    digest_oid, ecdsa_oid = HASH_OIDS[hash_name]
    old_der = old_certificate.public_bytes(serialization.Encoding.DER)

    h = hashes.Hash(algorithm)
    h.update(csr_der)
    digest = h.finalize()

    signer = rfc5652.SignerInfo()
    signed_attrs = signer['signedAttrs']
    signed_attrs.append(_cms_attribute(OID_CONTENT_TYPE, der_oid(OID_PKCS7_DATA)))
    signed_attrs.append(_cms_attribute(OID_MESSAGE_DIGEST, b'\x04' + der_length(len(digest)) + digest))
    signed_attrs.append(_cms_attribute(OID_RENEWAL_CERTIFICATE, old_der))

    signature = sign(old_key, signed_attrs_to_be_signed(signed_attrs), hash_name)

    cert_obj, _rest = der_decoder.decode(old_der, asn1Spec=rfc5280.Certificate())
    sid = rfc5652.SignerIdentifier()
    ias = sid['issuerAndSerialNumber']
    ias['issuer'] = cert_obj['tbsCertificate']['issuer']
    ias['serialNumber'] = cert_obj['tbsCertificate']['serialNumber']

    signer['version'] = 1
    signer['sid'] = sid
    signer['digestAlgorithm'] = _algid(digest_oid)
    if isinstance(old_key, rsa.RSAPrivateKey):
        signer['signatureAlgorithm'] = _algid(OID_RSA_ENCRYPTION)
    else:
        signer['signatureAlgorithm'] = _algid(ecdsa_oid, null_params=False)
    signer['signature'] = signature

    sd = rfc5652.SignedData()
    sd['version'] = 1
    sd['digestAlgorithms'].append(_algid(digest_oid))
    sd['encapContentInfo']['eContentType'] = univ.ObjectIdentifier(OID_PKCS7_DATA)
    sd['encapContentInfo']['eContent'] = csr_der
    choice = rfc5652.CertificateChoices()
    choice['certificate'] = cert_obj
    sd['certificates'].append(choice)
    sd['signerInfos'].append(signer)

    ci = rfc5652.ContentInfo()
    ci['contentType'] = univ.ObjectIdentifier(OID_PKCS7_SIGNED)
    ci['content'] = univ.Any(der_encoder.encode(sd))
    return der_encoder.encode(ci)
