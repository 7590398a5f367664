"""DER encoders for the Microsoft-specific extensions and CMS/CMC structures the lab CA emits.

The extensions depend only on their arguments (a template's name, OID, versions, policies; an account's SID) and
are immutable, so each is encoded once per distinct argument (``functools.lru_cache``) instead of per request."""

import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.type import char, namedtype, tag, univ, useful
from pyasn1_modules import rfc5280, rfc5652, rfc6402

OID_TEMPLATE_NAME = "1.3.6.1.4.1.311.20.2"          # szOID_ENROLL_CERTTYPE_EXTENSION (V1 templates)
OID_TEMPLATE_INFO = "1.3.6.1.4.1.311.21.7"          # szOID_CERTIFICATE_TEMPLATE (V2+ templates)
OID_APPLICATION_POLICIES = "1.3.6.1.4.1.311.21.10"  # szOID_APPLICATION_CERT_POLICIES
OID_NTDS_CA_SECURITY_EXT = "1.3.6.1.4.1.311.25.2"
OID_NTDS_OBJECTSID = "1.3.6.1.4.1.311.25.2.1"
OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
OID_CA_VERSION = "1.3.6.1.4.1.311.21.1"
OID_CRL_NEXT_PUBLISH = "1.3.6.1.4.1.311.21.4"
OID_KP_CA_EXCHANGE = "1.3.6.1.4.1.311.21.5"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"


def _der(value):
    return der_encoder.encode(value)


@functools.lru_cache(maxsize=256)
def template_name_ext(name):
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_TEMPLATE_NAME), _der(char.BMPString(name)))


@functools.lru_cache(maxsize=256)
def template_info_ext(oid, major, minor):
    seq = univ.Sequence(componentType=namedtype.NamedTypes(
        namedtype.NamedType("templateID", univ.ObjectIdentifier()),
        namedtype.NamedType("templateMajorVersion", univ.Integer()),
        namedtype.NamedType("templateMinorVersion", univ.Integer())))
    seq["templateID"] = univ.ObjectIdentifier(oid)
    seq["templateMajorVersion"] = major
    seq["templateMinorVersion"] = minor
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_TEMPLATE_INFO), _der(seq))


def application_policies_ext(oids):
    return _application_policies_ext(tuple(oids))


@functools.lru_cache(maxsize=256)
def _application_policies_ext(oids):
    # Same syntax as certificatePolicies: SEQUENCE OF SEQUENCE { policyIdentifier }
    outer = univ.SequenceOf(componentType=univ.Sequence())
    for index, oid in enumerate(oids):
        item = univ.Sequence(componentType=namedtype.NamedTypes(
            namedtype.NamedType("policyIdentifier", univ.ObjectIdentifier())))
        item["policyIdentifier"] = univ.ObjectIdentifier(oid)
        outer.setComponentByPosition(index, item)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_APPLICATION_POLICIES), _der(outer))


@functools.lru_cache(maxsize=256)
def ntds_security_ext(sid):
    """szOID_NTDS_CA_SECURITY_EXT: SEQUENCE { [0] otherName { 1.3.6.1.4.1.311.25.2.1, [0] OCTET STRING sid } }
    (the layout AD CS emits since KB5014754)."""
    value = univ.OctetString(sid.encode("ascii")).subtype(
        explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0))
    other = univ.Sequence(tagSet=univ.Sequence.tagSet.tagImplicitly(
        tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)),
        componentType=namedtype.NamedTypes(
            namedtype.NamedType("type-id", univ.ObjectIdentifier()),
            namedtype.NamedType("value", univ.OctetString().subtype(
                explicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)))))
    other["type-id"] = univ.ObjectIdentifier(OID_NTDS_OBJECTSID)
    other["value"] = value
    outer = univ.SequenceOf(componentType=other)
    outer.setComponentByPosition(0, other)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_NTDS_CA_SECURITY_EXT), _der(outer))


def _tlv(data, offset):
    tag_byte = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    return tag_byte, offset, length


def parse_ntds_security_ext(value):
    """Return the SID string carried by a szOID_NTDS_CA_SECURITY_EXT value (for tests and tools)."""
    _, offset, _ = _tlv(value, 0)           # SEQUENCE
    _, offset, _ = _tlv(value, offset)      # [0] otherName
    tag_byte, start, length = _tlv(value, offset)  # type-id
    if tag_byte != 0x06:
        raise ValueError("not an otherName")
    _, offset, _ = _tlv(value, start + length)  # [0] explicit
    tag_byte, start, length = _tlv(value, offset)  # OCTET STRING
    if tag_byte != 0x04:
        raise ValueError("not an OCTET STRING")
    return bytes(value[start:start + length]).decode("ascii")


def smime_capabilities_ext():
    caps = univ.SequenceOf(componentType=univ.Sequence())
    for index, (oid, key_bits) in enumerate((("1.2.840.113549.3.2", 128), ("1.2.840.113549.3.4", 128),
                                             ("1.3.14.3.2.7", None), ("1.2.840.113549.3.7", None))):
        if key_bits is None:
            item = univ.Sequence(componentType=namedtype.NamedTypes(
                namedtype.NamedType("capabilityID", univ.ObjectIdentifier())))
        else:
            item = univ.Sequence(componentType=namedtype.NamedTypes(
                namedtype.NamedType("capabilityID", univ.ObjectIdentifier()),
                namedtype.NamedType("parameters", univ.Integer())))
            item["parameters"] = key_bits
        item["capabilityID"] = univ.ObjectIdentifier(oid)
        caps.setComponentByPosition(index, item)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_SMIME_CAPABILITIES), _der(caps))


def ca_version_ext(cert_index=0, key_index=0):
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_CA_VERSION),
                                      _der(univ.Integer((key_index << 16) | cert_index)))


def next_publish_ext(moment):
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_CRL_NEXT_PUBLISH),
                                      _der(useful.UTCTime(moment.strftime("%y%m%d%H%M%SZ"))))


# ---------------------------------------------------------------------------------------------------------------
# CMC full response (RFC 5272 PKIResponse in a SignedData signed by the CA)

CMC_STATUS_SUCCESS = 0
CMC_STATUS_FAILED = 2
CMC_STATUS_PENDING = 3
CMC_FAIL_BAD_REQUEST = 2


def _alg(oid, null_params=True):
    alg = rfc5280.AlgorithmIdentifier()
    alg["algorithm"] = univ.ObjectIdentifier(oid)
    if null_params:
        alg["parameters"] = univ.Null("")
    return alg


def cmc_full_response(status, body_part_id, ca_cert, ca_key, certificates, status_string=None, fail_info=None,
                      pend_token=None, pend_time=None):
    """Build ContentInfo(SignedData(PKIResponse)) with one id-cmc-statusInfo control, ``certificates`` in the
    SignedData certificate set, signed by the CA key (SHA-256, RSA PKCS#1 v1.5, signed attributes)."""
    status_info = rfc6402.CMCStatusInfo()
    status_info["cMCStatus"] = status
    status_info["bodyList"].setComponentByPosition(0, body_part_id)
    if status_string:
        status_info["statusString"] = status_string
    if fail_info is not None:
        status_info["otherInfo"]["failInfo"] = fail_info
    elif pend_token is not None:
        status_info["otherInfo"]["pendInfo"]["pendToken"] = pend_token
        status_info["otherInfo"]["pendInfo"]["pendTime"] = useful.GeneralizedTime(
            pend_time.strftime("%Y%m%d%H%M%SZ"))

    control = rfc6402.TaggedAttribute()
    control["bodyPartID"] = 1
    control["attrType"] = rfc6402.id_cmc_statusInfo
    control["attrValues"].setComponentByPosition(0, univ.Any(_der(status_info)))

    response = rfc6402.PKIResponse()
    response["controlSequence"].setComponentByPosition(0, control)
    response["cmsSequence"].clear()
    response["otherMsgSequence"].clear()
    content = _der(response)

    return _signed_data(rfc6402.id_cct_PKIResponse, content, ca_cert, ca_key, certificates)


def _signed_data(content_type, content, signer_cert, signer_key, certificates):
    signed = rfc5652.SignedData()
    signed["version"] = 3
    signed["digestAlgorithms"].setComponentByPosition(0, _alg(OID_SHA256))
    signed["encapContentInfo"]["eContentType"] = content_type
    signed["encapContentInfo"]["eContent"] = content
    for index, cert in enumerate(certificates):
        choice = rfc5652.CertificateChoices()
        decoded, _ = der_decoder.decode(cert.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate())
        choice["certificate"] = decoded
        signed["certificates"].setComponentByPosition(index, choice)

    signer = rfc5652.SignerInfo()
    signer["version"] = 1
    issuer, _ = der_decoder.decode(signer_cert.issuer.public_bytes(), asn1Spec=rfc5280.Name())
    signer["sid"]["issuerAndSerialNumber"]["issuer"] = issuer
    signer["sid"]["issuerAndSerialNumber"]["serialNumber"] = signer_cert.serial_number
    signer["digestAlgorithm"] = _alg(OID_SHA256)

    attrs = signer["signedAttrs"]
    content_type_attr = rfc5652.Attribute()
    content_type_attr["attrType"] = rfc5652.id_contentType
    content_type_attr["attrValues"].setComponentByPosition(0, univ.Any(_der(univ.ObjectIdentifier(content_type))))
    digest_attr = rfc5652.Attribute()
    digest_attr["attrType"] = rfc5652.id_messageDigest
    digest_attr["attrValues"].setComponentByPosition(
        0, univ.Any(_der(univ.OctetString(hashlib.sha256(content).digest()))))
    attrs.setComponentByPosition(0, content_type_attr)
    attrs.setComponentByPosition(1, digest_attr)
    to_sign = bytearray(_der(attrs))
    to_sign[0] = 0x31
    signer["signatureAlgorithm"] = _alg(OID_RSA_ENCRYPTION)
    signer["signature"] = signer_key.sign(bytes(to_sign), padding.PKCS1v15(), hashes.SHA256())
    signed["signerInfos"].setComponentByPosition(0, signer)

    info = rfc5652.ContentInfo()
    info["contentType"] = rfc5652.id_signedData
    info["content"] = _der(signed)
    return _der(info)
