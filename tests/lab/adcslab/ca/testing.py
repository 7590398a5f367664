"""Request builders for tests (PKCS#10, CMS renewal-style and CMC requests), shared by the CA and wire tests."""

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, namedtype, univ
from pyasn1_modules import rfc2986, rfc5280, rfc5652, rfc6402

OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_RSA = "1.2.840.113549.1.1.1"


def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_csr(key, common_name="test", dns_names=(), template=None, template_info=None, hash_algorithm=None):
    """DER PKCS#10. ``template`` adds the V1 template-name extension (1.3.6.1.4.1.311.20.2), ``template_info``
    = (oid, major, minor) the V2 template-information extension (1.3.6.1.4.1.311.21.7)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]) if common_name else x509.Name([]))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]),
                                        critical=False)
    if template:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2"), der_encoder.encode(char.BMPString(template))),
            critical=False)
    if template_info:
        oid, major, minor = template_info
        builder = builder.add_extension(x509.MSCertificateTemplate(x509.ObjectIdentifier(oid), major, minor),
                                        critical=False)
    csr = builder.sign(key, hash_algorithm or hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def make_csr_with_pairs(key, common_name, pairs):
    """PKCS#10 carrying EnrollmentNameValuePair attributes, built with pyasn1 and signed with ``key``."""
    base = x509.load_der_x509_csr(make_csr(key, common_name))
    request, _ = der_decoder.decode(base.public_bytes(serialization.Encoding.DER),
                                    asn1Spec=rfc2986.CertificationRequest())
    info = request["certificationRequestInfo"]
    attributes = info["attributes"]
    for name, value in pairs:
        pair = univ.Sequence(componentType=namedtype.NamedTypes(
            namedtype.NamedType("name", char.BMPString()), namedtype.NamedType("value", char.BMPString())))
        pair["name"] = name
        pair["value"] = value
        attribute = rfc2986.Attribute()
        attribute["type"] = univ.ObjectIdentifier("1.3.6.1.4.1.311.13.2.1")
        attribute["values"].setComponentByPosition(0, univ.Any(der_encoder.encode(pair)))
        attributes.setComponentByPosition(len(attributes), attribute)
    info_der = der_encoder.encode(info)
    signature = key.sign(info_der, padding.PKCS1v15(), hashes.SHA256())
    request["signature"] = univ.BitString.fromOctetString(signature)
    return der_encoder.encode(request)


def tamper_signature(csr_der):
    request, _ = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    sig = bytearray(request["signature"].asOctets())
    sig[-1] ^= 0x01
    request["signature"] = univ.BitString.fromOctetString(bytes(sig))
    return der_encoder.encode(request)


def null_signed_csr(key, common_name="nullsig"):
    """PKCS#10 whose 'signature' is the bare SHA-256 of certificationRequestInfo (MS-WCCE 2.2.2.6.5)."""
    csr_der = make_csr(key, common_name)
    request, _ = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    info_der = der_encoder.encode(request["certificationRequestInfo"])
    request["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(OID_SHA256)
    request["signatureAlgorithm"]["parameters"] = univ.Any(der_encoder.encode(univ.Null("")))
    request["signature"] = univ.BitString.fromOctetString(hashlib.sha256(info_der).digest())
    return der_encoder.encode(request)


def _alg(oid):
    alg = rfc5280.AlgorithmIdentifier()
    alg["algorithm"] = univ.ObjectIdentifier(oid)
    alg["parameters"] = univ.Any(der_encoder.encode(univ.Null("")))
    return alg


def _signed(content_type, content, signer_key, signer_cert=None, use_ski=False, tamper=False):
    signed = rfc5652.SignedData()
    signed["version"] = 3
    signed["digestAlgorithms"].setComponentByPosition(0, _alg(OID_SHA256))
    signed["encapContentInfo"]["eContentType"] = univ.ObjectIdentifier(content_type)
    signed["encapContentInfo"]["eContent"] = content
    signer = rfc5652.SignerInfo()
    if use_ski or signer_cert is None:
        signer["version"] = 3
        ski = x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()).digest
        signer["sid"]["subjectKeyIdentifier"] = ski
    else:
        signer["version"] = 1
        choice = rfc5652.CertificateChoices()
        choice["certificate"], _ = der_decoder.decode(signer_cert.public_bytes(serialization.Encoding.DER),
                                                      asn1Spec=rfc5280.Certificate())
        signed["certificates"].setComponentByPosition(0, choice)
        issuer, _ = der_decoder.decode(signer_cert.issuer.public_bytes(), asn1Spec=rfc5280.Name())
        signer["sid"]["issuerAndSerialNumber"]["issuer"] = issuer
        signer["sid"]["issuerAndSerialNumber"]["serialNumber"] = signer_cert.serial_number
    signer["digestAlgorithm"] = _alg(OID_SHA256)
    attrs = signer["signedAttrs"]
    ct = rfc5652.Attribute()
    ct["attrType"] = rfc5652.id_contentType
    ct["attrValues"].setComponentByPosition(0, univ.Any(der_encoder.encode(univ.ObjectIdentifier(content_type))))
    md = rfc5652.Attribute()
    md["attrType"] = rfc5652.id_messageDigest
    md["attrValues"].setComponentByPosition(0, univ.Any(der_encoder.encode(
        univ.OctetString(hashlib.sha256(content).digest()))))
    attrs.setComponentByPosition(0, ct)
    attrs.setComponentByPosition(1, md)
    to_sign = bytearray(der_encoder.encode(attrs))
    to_sign[0] = 0x31
    signature = bytearray(signer_key.sign(bytes(to_sign), padding.PKCS1v15(), hashes.SHA256()))
    if tamper:
        signature[-1] ^= 1
    signer["signatureAlgorithm"] = _alg(OID_RSA)
    signer["signature"] = bytes(signature)
    signed["signerInfos"].setComponentByPosition(0, signer)
    info = rfc5652.ContentInfo()
    info["contentType"] = rfc5652.id_signedData
    info["content"] = der_encoder.encode(signed)
    return der_encoder.encode(info)


def make_cms(csr_der, signer_key, signer_cert=None, tamper=False):
    """CMS request: SignedData(id-data, PKCS#10), signed by ``signer_key`` (e.g. the old certificate's key)."""
    return _signed("1.2.840.113549.1.7.1", csr_der, signer_key, signer_cert, tamper=tamper)


def make_cmc(csr_der, key, body_part_id=1, tamper=False):
    """CMC request: SignedData(id-cct-PKIData{reqSequence=[tcr(bodyPartID, PKCS#10)]}) signed by the request key,
    the signer identified by subjectKeyIdentifier (what Windows and Certipy send)."""
    pki_data = rfc6402.PKIData()
    pki_data["controlSequence"].clear()
    tagged = rfc6402.TaggedRequest()
    tagged["tcr"]["bodyPartID"] = body_part_id
    tagged["tcr"]["certificationRequest"], _ = der_decoder.decode(
        csr_der, asn1Spec=rfc6402.CertificationRequest())
    pki_data["reqSequence"].setComponentByPosition(0, tagged)
    pki_data["cmsSequence"].clear()
    pki_data["otherMsgSequence"].clear()
    return _signed(str(rfc6402.id_cct_PKIData), der_encoder.encode(pki_data), key, use_ski=True, tamper=tamper)
