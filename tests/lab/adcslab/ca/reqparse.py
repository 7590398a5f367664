"""Parse the request blobs a MS-WCCE client sends: PKCS#10, CMS (PKCS#7 SignedData over a PKCS#10) and CMC
(RFC 5272 PKIData inside a SignedData). Errors become ``CAError`` with the HRESULT Windows' ASN.1 and crypto
layers report (CRYPT_E_ASN1_*, NTE_BAD_SIGNATURE, ...).

pyasn1 + pyasn1_modules (rfc5652, rfc6402, rfc2986) do the CMS/CMC work: they are already in the venv through
impacket, and their schemas follow the RFC module definitions one-to-one.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import List, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error, SubstrateUnderrunError
from pyasn1.type import char, univ
from pyasn1_modules import rfc5652, rfc6402

from . import errors
from .errors import CAError

# dwFlags request type (CR_IN_* bits 8-15)
CR_IN_FORMATANY = 0x000
CR_IN_PKCS10 = 0x100
CR_IN_KEYGEN = 0x200
CR_IN_PKCS7 = 0x300
CR_IN_CMC = 0x400
CR_IN_FORMATMASK = 0xFF00

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_PKIDATA = "1.3.6.1.5.5.7.12.2"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_ENROLLMENT_NAME_VALUE_PAIR = "1.3.6.1.4.1.311.13.2.1"
OID_RENEWAL_CERTIFICATE = "1.3.6.1.4.1.311.13.1"
OID_CMC_ADD_ATTRIBUTES = "1.3.6.1.4.1.311.10.10.1"
OID_ARCHIVED_KEY_ATTR = "1.3.6.1.4.1.311.21.13"

_HASHES = {
    "1.3.14.3.2.26": hashes.SHA1, "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384, "2.16.840.1.101.3.4.2.3": hashes.SHA512,
    "1.2.840.113549.2.5": hashes.MD5,
}
_HASHLIB = {"1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
            "2.16.840.1.101.3.4.2.3": "sha512", "1.2.840.113549.2.5": "md5"}
_SIG_HASH = {  # signature algorithm OID -> hash, for signerInfos that name a combined algorithm
    "1.2.840.113549.1.1.5": hashes.SHA1, "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384, "1.2.840.113549.1.1.13": hashes.SHA512,
    "1.2.840.10045.4.3.2": hashes.SHA256, "1.2.840.10045.4.3.3": hashes.SHA384, "1.2.840.10045.4.3.4": hashes.SHA512,
}


@dataclass
class ParsedRequest:
    kind: str  # "pkcs10" | "cms" | "cmc"
    csr: x509.CertificateSigningRequest
    csr_der: bytes
    name_value_pairs: List[tuple] = field(default_factory=list)  # from PKCS#10 attributes and CMC controls
    body_part_id: Optional[int] = None  # CMC TaggedCertificationRequest bodyPartID
    signer_certs: List[x509.Certificate] = field(default_factory=list)
    renewal_cert: Optional[x509.Certificate] = None
    renewal_attribute_bad: bool = False  # a szOID_RENEWAL_CERTIFICATE attribute that is not a certificate
    signer_cert: Optional[x509.Certificate] = None  # the certificate whose key signed the CMS/CMC (if any)
    archived_key: Optional[bytes] = None  # EnvelopedData ContentInfo DER (CMC key archival), not decrypted here
    null_signature: bool = False


# --------------------------------------------------------------------------------------------------------------
# Minimal DER header reader (for sniffing and for precise CRYPT_E_ASN1_* codes)

def _read_tlv(data, offset):
    if offset >= len(data):
        raise CAError(errors.CRYPT_E_ASN1_EOD)
    tag = data[offset]
    offset += 1
    if offset >= len(data):
        raise CAError(errors.CRYPT_E_ASN1_EOD)
    length = data[offset]
    offset += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise CAError(errors.CRYPT_E_ASN1_CORRUPT)
        if offset + count > len(data):
            raise CAError(errors.CRYPT_E_ASN1_EOD)
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise CAError(errors.CRYPT_E_ASN1_EOD)
    return tag, offset, length


def _check_outer(der):
    tag, start, length = _read_tlv(der, 0)
    if tag != 0x30:
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    inner_tag, _, _ = _read_tlv(der, start)
    return inner_tag


def to_der(blob):
    """Accept DER, or base64 with or without PEM armour (CR_IN_BASE64HEADER / CR_IN_BASE64)."""
    if not blob:
        raise CAError(errors.CRYPT_E_ASN1_EOD, "The request is empty.")
    if blob[:1] == b"\x30":
        return bytes(blob)
    try:
        text = bytes(blob).decode("ascii")
    except UnicodeDecodeError:
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    text = re.sub(r"-----(BEGIN|END)[^-]*-----", "", text)
    text = re.sub(r"\s+", "", text).rstrip("\x00")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    if not der or der[:1] != b"\x30":
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    return der


def _decode(der, spec):
    try:
        value, rest = der_decoder.decode(der, asn1Spec=spec)
    except SubstrateUnderrunError:
        raise CAError(errors.CRYPT_E_ASN1_EOD)
    except PyAsn1Error:
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    return value


# --------------------------------------------------------------------------------------------------------------

def parse_request(blob, request_type):
    """Parse ``blob`` as the CR_IN_* ``request_type`` (0 = sniff). Returns ParsedRequest or raises CAError."""
    der = to_der(blob)
    inner = _check_outer(der)
    if request_type == CR_IN_FORMATANY:
        if inner == 0x30:
            request_type = CR_IN_PKCS10
        elif inner == 0x06:
            request_type = CR_IN_PKCS7
        else:
            raise CAError(errors.CRYPT_E_ASN1_BADTAG)
    if request_type == CR_IN_PKCS10:
        if inner != 0x30:
            raise CAError(errors.CRYPT_E_ASN1_BADTAG)
        parsed = _parse_pkcs10(der, allow_null_signature=False)
        return parsed
    if request_type in (CR_IN_PKCS7, CR_IN_CMC):
        if inner != 0x06:
            raise CAError(errors.CRYPT_E_ASN1_BADTAG)
        return _parse_signed(der)
    raise CAError(errors.E_INVALIDARG, "Unsupported request type 0x%x." % request_type)


def _load_csr(der):
    try:
        csr = x509.load_der_x509_csr(der)
        csr.subject  # force parsing of the parts we use
        csr.public_key()
        return csr
    except UnsupportedAlgorithm:
        raise CAError(errors.NTE_BAD_ALGID)
    except ValueError:
        raise CAError(errors.CRYPT_E_ASN1_BADTAG)


def _parse_pkcs10(der, allow_null_signature):
    # Structural check first so truncated/garbled input maps to the ASN.1 HRESULTs.
    from pyasn1_modules import rfc2986
    decoded = _decode(der, rfc2986.CertificationRequest())
    csr = _load_csr(der)
    null_signature = False
    sig_oid = str(decoded["signatureAlgorithm"]["algorithm"])
    if sig_oid in _HASHLIB:
        # MS-WCCE 2.2.2.6.5: a "null signature" (the bare hash of certificationRequestInfo) is allowed only
        # inside CMS/CMC.
        if not allow_null_signature:
            raise CAError(errors.NTE_BAD_SIGNATURE)
        digest = hashlib.new(_HASHLIB[sig_oid], csr.tbs_certrequest_bytes).digest()
        if digest != csr.signature:
            raise CAError(errors.NTE_BAD_SIGNATURE)
        null_signature = True
    else:
        try:
            valid = csr.is_signature_valid
        except UnsupportedAlgorithm:
            raise CAError(errors.NTE_BAD_ALGID)
        if not valid:
            raise CAError(errors.NTE_BAD_SIGNATURE)
    parsed = ParsedRequest(kind="pkcs10", csr=csr, csr_der=der, null_signature=null_signature)
    parsed.name_value_pairs = _pkcs10_name_value_pairs(decoded)
    for attribute in decoded["certificationRequestInfo"]["attributes"]:
        if str(attribute["type"]) == OID_RENEWAL_CERTIFICATE:
            try:
                parsed.renewal_cert = x509.load_der_x509_certificate(bytes(attribute["values"][0]))
            except (ValueError, IndexError, TypeError):
                parsed.renewal_attribute_bad = True
    return parsed


def _bmp(value):
    decoded = _decode(bytes(value), char.BMPString()) if isinstance(value, (bytes, univ.Any)) else value
    return str(decoded)


def _name_value_pair(any_value):
    """EnrollmentNameValuePair ::= SEQUENCE { name BMPString, value BMPString } (MS-WCCE 2.2.2.7.10)."""
    try:
        seq, _ = der_decoder.decode(bytes(any_value))
        return str(_decode(der_encoder.encode(seq[0]), char.BMPString())), \
            str(_decode(der_encoder.encode(seq[1]), char.BMPString()))
    except (CAError, PyAsn1Error, IndexError, TypeError):
        return None


def _pkcs10_name_value_pairs(decoded):
    pairs = []
    for attribute in decoded["certificationRequestInfo"]["attributes"]:
        if str(attribute["type"]) == OID_ENROLLMENT_NAME_VALUE_PAIR:
            for value in attribute["values"]:
                pair = _name_value_pair(value)
                if pair:
                    pairs.append(pair)
    return pairs


def _hash_for(oid):
    if oid in _HASHES:
        return _HASHES[oid]()
    raise CAError(errors.NTE_BAD_ALGID)


def _verify_with_key(public_key, signature, data, hash_algorithm):
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        else:
            raise CAError(errors.NTE_BAD_ALGID)
    except InvalidSignature:
        raise CAError(errors.NTE_BAD_SIGNATURE)


def _ski(public_key):
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def _parse_signed(der):
    content_info = _decode(der, rfc5652.ContentInfo())
    if str(content_info["contentType"]) != OID_SIGNED_DATA:
        raise CAError(errors.CRYPT_E_INVALID_MSG_TYPE)
    signed = _decode(bytes(content_info["content"]), rfc5652.SignedData())
    encap = signed["encapContentInfo"]
    content_type = str(encap["eContentType"])
    if not encap["eContent"].isValue:
        raise CAError(errors.CRYPT_E_INVALID_MSG_TYPE, "The signed message has no content.")
    content = bytes(encap["eContent"])

    certificates = []
    if signed["certificates"].isValue:
        for choice in signed["certificates"]:
            if choice.getName() == "certificate":
                try:
                    certificates.append(x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"])))
                except ValueError:
                    raise CAError(errors.CRYPT_E_ASN1_BADTAG)

    if content_type == OID_DATA:
        parsed = _parse_pkcs10(content, allow_null_signature=True)
        parsed.kind = "cms"
    elif content_type == OID_PKIDATA:
        parsed = _parse_pkidata(content)
    else:
        raise CAError(errors.CRYPT_E_INVALID_MSG_TYPE)
    parsed.signer_certs = certificates

    signer_infos = list(signed["signerInfos"])
    if not signer_infos:
        raise CAError(errors.CRYPT_E_NO_SIGNER)
    for signer in signer_infos:
        _verify_signer(signer, content, certificates, parsed)
    return parsed


def _verify_signer(signer, content, certificates, parsed):
    sid = signer["sid"]
    public_key = None
    signer_cert = None
    if sid.getName() == "subjectKeyIdentifier":
        wanted = bytes(sid["subjectKeyIdentifier"])
        if _ski(parsed.csr.public_key()) == wanted:
            public_key = parsed.csr.public_key()
        for cert in certificates:
            try:
                cert_ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                cert_ski = _ski(cert.public_key())
            if cert_ski == wanted:
                public_key = cert.public_key()
                signer_cert = cert
    else:
        issuer_der = der_encoder.encode(sid["issuerAndSerialNumber"]["issuer"])
        serial = int(sid["issuerAndSerialNumber"]["serialNumber"])
        for cert in certificates:
            if cert.serial_number == serial and cert.issuer.public_bytes() == issuer_der:
                public_key = cert.public_key()
                signer_cert = cert
    if public_key is None:
        raise CAError(errors.CRYPT_E_NO_SIGNER)

    digest_oid = str(signer["digestAlgorithm"]["algorithm"])
    hash_algorithm = _hash_for(digest_oid)
    signature = bytes(signer["signature"])
    if signer["signedAttrs"].isValue:
        message_digest = None
        for attribute in signer["signedAttrs"]:
            attr_type = str(attribute["attrType"])
            if attr_type == OID_MESSAGE_DIGEST:
                message_digest = bytes(_decode(bytes(attribute["attrValues"][0]), univ.OctetString()))
            elif attr_type == OID_RENEWAL_CERTIFICATE and parsed.renewal_cert is None:
                try:
                    parsed.renewal_cert = x509.load_der_x509_certificate(bytes(attribute["attrValues"][0]))
                except (ValueError, IndexError, TypeError):
                    parsed.renewal_attribute_bad = True
        expected = hashlib.new(_HASHLIB[digest_oid], content).digest()
        if message_digest != expected:
            raise CAError(errors.NTE_BAD_SIGNATURE)
        signed_bytes = bytearray(der_encoder.encode(signer["signedAttrs"]))
        signed_bytes[0] = 0x31  # [0] IMPLICIT SET OF -> SET OF, as RFC 5652 5.4 requires
        _verify_with_key(public_key, signature, bytes(signed_bytes), hash_algorithm)
    else:
        _verify_with_key(public_key, signature, content, hash_algorithm)
    if signer_cert is not None and parsed.signer_cert is None:
        parsed.signer_cert = signer_cert
    if signer["unsignedAttrs"].isValue:
        for attribute in signer["unsignedAttrs"]:
            if str(attribute["attrType"]) == OID_ARCHIVED_KEY_ATTR:
                parsed.archived_key = bytes(attribute["attrValues"][0])


def _parse_pkidata(content):
    pki_data = _decode(content, rfc6402.PKIData())
    requests = list(pki_data["reqSequence"])
    if len(requests) != 1 or requests[0].getName() != "tcr":
        raise CAError(errors.E_INVALIDARG, "The CMC request must carry exactly one PKCS #10 request.")
    tcr = requests[0]["tcr"]
    csr_der = der_encoder.encode(tcr["certificationRequest"])
    parsed = _parse_pkcs10(csr_der, allow_null_signature=True)
    parsed.kind = "cmc"
    parsed.body_part_id = int(tcr["bodyPartID"])
    for control in pki_data["controlSequence"]:
        if str(control["attrType"]) != OID_CMC_ADD_ATTRIBUTES:
            continue
        for value in control["attrValues"]:
            # CMC_ADD_ATTRIBUTES_INFO ::= SEQUENCE { dataReference BodyPartID, certReference SEQUENCE OF
            #   BodyPartID, attributes SET OF Attribute } (MS-WCCE 2.2.2.8.x)
            try:
                info, _ = der_decoder.decode(bytes(value))
                for attribute in info[2]:
                    if str(attribute[0]) == OID_ENROLLMENT_NAME_VALUE_PAIR:
                        for item in attribute[1]:
                            pair = _name_value_pair(der_encoder.encode(item))
                            if pair:
                                parsed.name_value_pairs.append(pair)
            except (PyAsn1Error, IndexError, TypeError):
                continue
    return parsed


def public_key_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
