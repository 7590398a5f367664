# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate inspection: one job, reading and judging certificates we already have or just received.

- load certificates (PEM, DER, several PEM blocks, PKCS#7 "degenerate" SignedData as returned by the CA);
- facts for module results (subject, SANs, serial, issuer, validity, SHA-256 fingerprint, key, EKUs, and the
  certificate template from the 1.3.6.1.4.1.311.21.7 / 1.3.6.1.4.1.311.20.2 extensions);
- key/certificate match;
- chain verification against CA certificates (issuer name + AKI/SKI, signature, validity).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError
from ansible_collections.adcs.enrollment.plugins.module_utils import _requests

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtensionOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:
    from cryptography.hazmat.primitives.serialization import pkcs7 as _pkcs7
except ImportError:
    _pkcs7 = None

try:
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1_modules import rfc2315
    HAS_PYASN1 = True
except ImportError:
    HAS_PYASN1 = False

OID_ENROLL_CERTTYPE = _requests.OID_ENROLL_CERTTYPE
OID_CERTIFICATE_TEMPLATE = _requests.OID_CERTIFICATE_TEMPLATE
OID_UPN = _requests.OID_UPN

_UTC = datetime.timezone.utc


def _require_crypto():
    if not HAS_CRYPTOGRAPHY:
        raise CertificateError('The Python library "cryptography" is required',
                               remedy='Install cryptography (>= 41) on the node that runs the module.')


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------
def _to_bytes(data):
    return data.encode('ascii') if isinstance(data, str) else bytes(data)


def load_certificate(data):
    """Load one certificate from PEM or DER."""
    _require_crypto()
    data = _to_bytes(data)
    try:
        if data.lstrip().startswith(b'-----'):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError('Cannot parse the certificate', detail=str(exc))


def parse_pkcs7_certificates(data):
    """Certificates of a PKCS#7/CMS SignedData (DER or PEM), in stored order. Empty SignedData gives []."""
    _require_crypto()
    data = _to_bytes(data)
    if data.lstrip().startswith(b'-----'):
        if _pkcs7 is not None:
            try:
                return list(_pkcs7.load_pem_pkcs7_certificates(data))
            except ValueError as exc:
                raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail=str(exc))
    if HAS_PYASN1:
        # pyasn1 keeps the order and copes with a SignedData that has no certificates at all.
        try:
            ci, _rest = der_decoder.decode(data, asn1Spec=rfc2315.ContentInfo())
            if str(ci['contentType']) != '1.2.840.113549.1.7.2':
                raise CertificateError('The PKCS#7 blob is not SignedData (content type %s)' % ci['contentType'])
            sd, _rest = der_decoder.decode(bytes(ci['content']), asn1Spec=rfc2315.SignedData())
            certs = []
            if sd['certificates'].isValue:
                for choice in sd['certificates']:
                    name = choice.getName()
                    if name == 'certificate':
                        certs.append(x509.load_der_x509_certificate(der_encoder.encode(choice['certificate'])))
            return certs
        except CertificateError:
            raise
        except Exception as exc:  # pyasn1 raises many types; fall through to cryptography for a second opinion
            pyasn1_error = exc
    else:
        pyasn1_error = None
    if _pkcs7 is not None:
        try:
            return list(_pkcs7.load_der_pkcs7_certificates(data))
        except ValueError as exc:
            raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail=str(pyasn1_error or exc))
    raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail=str(pyasn1_error))


def load_certificates(data):
    """Load every certificate from PEM (several blocks, CERTIFICATE or PKCS7), DER certificate or DER PKCS#7."""
    _require_crypto()
    data = _to_bytes(data)
    stripped = data.lstrip()
    if stripped.startswith(b'-----'):
        certs = []
        for block in _pem_blocks(data):
            if b'-----BEGIN PKCS7-----' in block or b'-----BEGIN CMS-----' in block:
                certs.extend(parse_pkcs7_certificates(block.replace(b'CMS-----', b'PKCS7-----')))
            elif b'CERTIFICATE-----' in block:
                certs.append(load_certificate(block))
        return certs
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        return parse_pkcs7_certificates(data)


def _pem_blocks(data):
    blocks, cur = [], None
    for line in data.splitlines(True):
        if line.startswith(b'-----BEGIN '):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith(b'-----END '):
                blocks.append(b''.join(cur))
                cur = None
    return blocks


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------------------------
def not_before(cert):
    return cert.not_valid_before_utc if hasattr(cert, 'not_valid_before_utc') else \
        cert.not_valid_before.replace(tzinfo=_UTC)


def not_after(cert):
    return cert.not_valid_after_utc if hasattr(cert, 'not_valid_after_utc') else \
        cert.not_valid_after.replace(tzinfo=_UTC)


def fingerprint_sha256(cert):
    return ':'.join('%02X' % b for b in cert.fingerprint(hashes.SHA256()))


def _decode_der_string(value):
    """Decode a DER string (UTF8String, BMPString, PrintableString, IA5String); returns None if unknown."""
    if not value or len(value) < 2:
        return None
    tag = value[0]
    length = value[1]
    offset = 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(value[2:2 + n], 'big')
        offset = 2 + n
    body = value[offset:offset + length]
    if tag == 0x1E:
        return body.decode('utf-16-be')
    if tag in (0x0C, 0x13, 0x16, 0x14):
        return body.decode('utf-8' if tag == 0x0C else 'latin-1')
    return None


def certificate_sans(cert):
    """SANs of a certificate as the sorted (type, value) list of _requests.normalize_sans."""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    items = []
    for gn in ext:
        if isinstance(gn, x509.DNSName):
            items.append(('dns', gn.value))
        elif isinstance(gn, x509.IPAddress):
            items.append(('ip', str(gn.value)))
        elif isinstance(gn, x509.RFC822Name):
            items.append(('email', gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            items.append(('uri', gn.value))
        elif isinstance(gn, x509.OtherName) and gn.type_id.dotted_string == OID_UPN:
            value = _decode_der_string(gn.value)
            if value:
                items.append(('upn', value))
    try:
        return _requests.normalize_sans(items)
    except Exception:
        return sorted(set(items))


def format_sans(sans):
    labels = {'dns': 'DNS', 'ip': 'IP', 'upn': 'UPN', 'email': 'email', 'uri': 'URI'}
    return ['%s:%s' % (labels[k], v) for k, v in sans]


def certificate_template(cert):
    """{'name': str|None, 'oid': str|None, 'major_version': int|None, 'minor_version': int|None}"""
    out = {'name': None, 'oid': None, 'major_version': None, 'minor_version': None}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid == OID_ENROLL_CERTTYPE:
            raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else None
            if raw is not None:
                out['name'] = _decode_der_string(raw)
        elif oid == OID_CERTIFICATE_TEMPLATE:
            val = ext.value
            if hasattr(val, 'template_id'):
                out['oid'] = val.template_id.dotted_string
                out['major_version'] = val.major_version
                out['minor_version'] = val.minor_version
            elif isinstance(val, x509.UnrecognizedExtension):
                out.update(_parse_template_oid_ext(val.value))
    return out


def _parse_template_oid_ext(raw):
    out = {}
    try:
        from pyasn1.type import univ, namedtype

        class _Tmpl(univ.Sequence):
            componentType = namedtype.NamedTypes(
                namedtype.NamedType('templateID', univ.ObjectIdentifier()),
                namedtype.OptionalNamedType('majorVersion', univ.Integer()),
                namedtype.OptionalNamedType('minorVersion', univ.Integer()))
        val, _rest = der_decoder.decode(raw, asn1Spec=_Tmpl())
        out['oid'] = str(val['templateID'])
        if val['majorVersion'].isValue:
            out['major_version'] = int(val['majorVersion'])
        if val['minorVersion'].isValue:
            out['minor_version'] = int(val['minorVersion'])
    except Exception:
        pass
    return out


def public_key_info(key):
    kind, detail = _requests.key_description(key)
    if kind == 'rsa':
        return {'type': 'rsa', 'size': detail}
    return {'type': kind, 'curve': detail}


def certificate_facts(cert):
    """Facts for module results: JSON-serialisable dict."""
    _require_crypto()
    try:
        eku = [o.dotted_string for o in
               cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value]
    except x509.ExtensionNotFound:
        eku = []
    try:
        is_ca = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return {
        'subject': cert.subject.rfc4514_string(),
        'issuer': cert.issuer.rfc4514_string(),
        'serial_number': '%X' % cert.serial_number,
        'not_before': not_before(cert).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'not_after': not_after(cert).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'fingerprint_sha256': fingerprint_sha256(cert),
        'subject_alt_names': format_sans(certificate_sans(cert)),
        'template': certificate_template(cert),
        'extended_key_usage': eku,
        'public_key': public_key_info(cert.public_key()),
        'is_ca': bool(is_ca),
    }


def key_matches_certificate(key, cert):
    """True if the private key belongs to the certificate."""
    if key is None or cert is None:
        return False
    return _requests.public_key_der(key.public_key()) == _requests.public_key_der(cert.public_key())


# ---------------------------------------------------------------------------------------------------------------
# Chain verification
# ---------------------------------------------------------------------------------------------------------------
def _ski(cert):
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    except x509.ExtensionNotFound:
        return None


def _aki(cert):
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def is_self_issued(cert):
    return cert.issuer == cert.subject


def signature_valid(cert, issuer):
    """Verify cert's signature with issuer's public key (RSA PKCS#1 v1.5/PSS, ECDSA)."""
    if hasattr(cert, 'verify_directly_issued_by'):
        try:
            cert.verify_directly_issued_by(issuer)
            return True
        except (ValueError, TypeError, InvalidSignature):
            return False
    pub = issuer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return cert.issuer == issuer.subject


def _is_issuer_candidate(cert, candidate):
    if cert.issuer != candidate.subject:
        return False
    aki, ski = _aki(cert), _ski(candidate)
    if aki is not None and ski is not None and aki != ski:
        return False
    return True


def verify_chain(leaf, ca_certs, trust_anchors=None, now=None, check_validity=True):
    """Build and verify the path leaf -> ... -> anchor.

    ``ca_certs``: intermediates and roots (for example the chain returned by the CA). ``trust_anchors``: the
    certificates the path must end in (default: any self-signed certificate among ``ca_certs``). Returns the path
    (list, leaf first). Raises CertificateError naming what failed.
    """
    _require_crypto()
    now = now or datetime.datetime.now(_UTC)
    pool = list(ca_certs or [])
    anchors = list(trust_anchors) if trust_anchors is not None else [c for c in pool if is_self_issued(c)]
    anchor_ders = set(cert_der(a) for a in anchors)
    pool_all = pool + [a for a in anchors if cert_der(a) not in set(cert_der(c) for c in pool)]
    path = [leaf]
    current = leaf
    for _depth in range(10):
        if check_validity and not (not_before(current) <= now <= not_after(current)):
            raise CertificateError('Certificate "%s" is not valid at %s (valid %s to %s)' % (
                current.subject.rfc4514_string(), now.strftime('%Y-%m-%d %H:%M:%SZ'),
                not_before(current).strftime('%Y-%m-%d %H:%M:%SZ'),
                not_after(current).strftime('%Y-%m-%d %H:%M:%SZ')))
        if cert_der(current) in anchor_ders:
            if is_self_issued(current) and not signature_valid(current, current):
                raise CertificateError('The self-signature of trust anchor "%s" does not verify'
                                       % current.subject.rfc4514_string())
            return path
        candidates = [c for c in pool_all if _is_issuer_candidate(current, c) and cert_der(c) != cert_der(current)]
        issuer = None
        for cand in candidates:
            if signature_valid(current, cand):
                issuer = cand
                break
        if issuer is None:
            if candidates:
                raise CertificateError('The signature of "%s" does not verify with the key of its issuer "%s"'
                                       % (current.subject.rfc4514_string(), current.issuer.rfc4514_string()))
            if is_self_issued(current):
                raise CertificateError('The chain ends in "%s", which is not a trusted CA certificate'
                                       % current.subject.rfc4514_string())
            raise CertificateError('The issuer "%s" of "%s" is not among the CA certificates'
                                   % (current.issuer.rfc4514_string(), current.subject.rfc4514_string()))
        path.append(issuer)
        current = issuer
    raise CertificateError('The certificate chain is too long (more than 10 certificates)')


def order_chain(leaf, certs):
    """Return the CA certificates in issuing order from leaf's issuer up (unrelated ones are dropped)."""
    out, current, pool = [], leaf, [c for c in certs if cert_der(c) != cert_der(leaf)]
    while True:
        nxt = None
        for c in pool:
            if _is_issuer_candidate(current, c) and cert_der(c) not in [cert_der(o) for o in out]:
                nxt = c
                break
        if nxt is None or cert_der(nxt) == cert_der(current):
            return out
        out.append(nxt)
        if is_self_issued(nxt):
            return out
        current = nxt
