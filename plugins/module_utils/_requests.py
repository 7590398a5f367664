# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request building: one job, turning enrollment parameters into the bytes sent to the CA.

- private keys: RSA 2048-8192 and ECDSA P-256/P-384/P-521, generated, loaded and validated;
- the subject (dict, RFC 4514 string or OpenSSL "/CN=../O=.." string) and the subject alternative names
  (DNS, IP, UPN as otherName 1.3.6.1.4.1.311.20.2.3 UTF8String, e-mail, URI);
- PKCS#10 with key usage / extended key usage and the certificate template extensions
  (1.3.6.1.4.1.311.20.2 template name, 1.3.6.1.4.1.311.21.7 template OID + version);
- the MS-WCCE request attribute string (``CertificateTemplate:Name\\nSAN:dns=..&upn=..``);
- renewal requests (MS-WCCE 3.1.1.4.3.2.1): CMS SignedData, eContentType id-data, eContent = new PKCS#10 that
  carries the szOID_RENEWAL_CERTIFICATE attribute (1.3.6.1.4.1.311.13.1, value = old certificate DER); the old
  certificate is in SignedData.certificates and the SignerInfo is signed with the OLD key. The same attribute is
  also put in the signed attributes (as certreq and Certipy do).

CMS is built with pyasn1/pyasn1_modules (installed with impacket): cryptography's PKCS7SignatureBuilder cannot
carry a custom authenticated attribute, and cryptography cannot add a non-string attribute to a PKCS#10, so the
renewal PKCS#10 is built by cryptography, then its CertificationRequestInfo is extended with pyasn1 and re-signed
with the new key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

try:
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ObjectIdentifier
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1.codec.der import encoder as der_encoder
    from pyasn1.type import univ
    from pyasn1_modules import rfc2986, rfc5280, rfc5652
    HAS_PYASN1 = True
    PYASN1_IMPORT_ERROR = None
except ImportError:
    HAS_PYASN1 = False
    PYASN1_IMPORT_ERROR = traceback.format_exc()


OID_UPN = '1.3.6.1.4.1.311.20.2.3'
OID_ENROLL_CERTTYPE = '1.3.6.1.4.1.311.20.2'         # szOID_ENROLL_CERTTYPE_EXTENSION (BMPString name)
OID_CERTIFICATE_TEMPLATE = '1.3.6.1.4.1.311.21.7'    # szOID_CERTIFICATE_TEMPLATE (OID + versions)
OID_RENEWAL_CERTIFICATE = '1.3.6.1.4.1.311.13.1'     # szOID_RENEWAL_CERTIFICATE
OID_PKCS7_DATA = '1.2.840.113549.1.7.1'
OID_PKCS7_SIGNED = '1.2.840.113549.1.7.2'
OID_CONTENT_TYPE = '1.2.840.113549.1.9.3'
OID_MESSAGE_DIGEST = '1.2.840.113549.1.9.4'
OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1'

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
CURVES = {
    'secp256r1': 'SECP256R1', 'p-256': 'SECP256R1', 'prime256v1': 'SECP256R1',
    'secp384r1': 'SECP384R1', 'p-384': 'SECP384R1',
    'secp521r1': 'SECP521R1', 'p-521': 'SECP521R1',
}
_CURVE_NAMES = {'SECP256R1': 'secp256r1', 'SECP384R1': 'secp384r1', 'SECP521R1': 'secp521r1'}

_HASH_OIDS = {
    'sha256': ('2.16.840.1.101.3.4.2.1', '1.2.840.10045.4.3.2'),
    'sha384': ('2.16.840.1.101.3.4.2.2', '1.2.840.10045.4.3.3'),
    'sha512': ('2.16.840.1.101.3.4.2.3', '1.2.840.10045.4.3.4'),
}

SUBJECT_ATTRIBUTES = {
    'CN': 'COMMON_NAME', 'commonName': 'COMMON_NAME',
    'C': 'COUNTRY_NAME', 'countryName': 'COUNTRY_NAME',
    'L': 'LOCALITY_NAME', 'localityName': 'LOCALITY_NAME',
    'ST': 'STATE_OR_PROVINCE_NAME', 'stateOrProvinceName': 'STATE_OR_PROVINCE_NAME',
    'O': 'ORGANIZATION_NAME', 'organizationName': 'ORGANIZATION_NAME',
    'OU': 'ORGANIZATIONAL_UNIT_NAME', 'organizationalUnitName': 'ORGANIZATIONAL_UNIT_NAME',
    'DC': 'DOMAIN_COMPONENT', 'domainComponent': 'DOMAIN_COMPONENT',
    'emailAddress': 'EMAIL_ADDRESS', 'E': 'EMAIL_ADDRESS',
    'serialNumber': 'SERIAL_NUMBER', 'UID': 'USER_ID',
    'title': 'TITLE', 'GN': 'GIVEN_NAME', 'givenName': 'GIVEN_NAME', 'SN': 'SURNAME', 'surname': 'SURNAME',
    'street': 'STREET_ADDRESS', 'postalCode': 'POSTAL_CODE',
}

KEY_USAGES = {
    'digitalSignature': 'digital_signature', 'digital_signature': 'digital_signature',
    'nonRepudiation': 'content_commitment', 'contentCommitment': 'content_commitment',
    'content_commitment': 'content_commitment',
    'keyEncipherment': 'key_encipherment', 'key_encipherment': 'key_encipherment',
    'dataEncipherment': 'data_encipherment', 'data_encipherment': 'data_encipherment',
    'keyAgreement': 'key_agreement', 'key_agreement': 'key_agreement',
    'keyCertSign': 'key_cert_sign', 'key_cert_sign': 'key_cert_sign',
    'cRLSign': 'crl_sign', 'crl_sign': 'crl_sign',
    'encipherOnly': 'encipher_only', 'encipher_only': 'encipher_only',
    'decipherOnly': 'decipher_only', 'decipher_only': 'decipher_only',
}

EKU_NAMES = {
    'serverAuth': '1.3.6.1.5.5.7.3.1', 'server_auth': '1.3.6.1.5.5.7.3.1',
    'clientAuth': '1.3.6.1.5.5.7.3.2', 'client_auth': '1.3.6.1.5.5.7.3.2',
    'codeSigning': '1.3.6.1.5.5.7.3.3', 'code_signing': '1.3.6.1.5.5.7.3.3',
    'emailProtection': '1.3.6.1.5.5.7.3.4', 'email_protection': '1.3.6.1.5.5.7.3.4',
    'timeStamping': '1.3.6.1.5.5.7.3.8', 'time_stamping': '1.3.6.1.5.5.7.3.8',
    'OCSPSigning': '1.3.6.1.5.5.7.3.9', 'ocsp_signing': '1.3.6.1.5.5.7.3.9',
    'smartcardLogon': '1.3.6.1.4.1.311.20.2.2', 'smartcard_logon': '1.3.6.1.4.1.311.20.2.2',
    'anyExtendedKeyUsage': '2.5.29.37.0',
}

SAN_TYPES = ('dns', 'ip', 'upn', 'email', 'uri')
_SAN_ALIASES = {
    'dns': 'dns', 'ip': 'ip', 'ip address': 'ip', 'ipaddress': 'ip', 'upn': 'upn', 'email': 'email',
    'mail': 'email', 'rfc822': 'email', 'uri': 'uri', 'url': 'uri',
}
_OID_RE = re.compile(r'^[0-2](\.(0|[1-9][0-9]*))+$')


def _require_crypto():
    if not HAS_CRYPTOGRAPHY:
        raise InvalidInput('The Python library "cryptography" is required',
                           remedy='Install cryptography (>= 41) on the node that runs the module.')


def _require_pyasn1():
    if not HAS_PYASN1:
        raise InvalidInput('The Python libraries "pyasn1" and "pyasn1_modules" are required (installed with '
                           'impacket)', remedy='Install impacket (>= 0.12) on the node that runs the module.')


# ---------------------------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------------------------
def normalize_curve(curve):
    name = CURVES.get(str(curve).strip().lower())
    if name is None:
        raise InvalidInput('Unsupported elliptic curve %r; use one of secp256r1 (P-256), secp384r1 (P-384), '
                           'secp521r1 (P-521)' % (curve,))
    return name


def generate_private_key(key_type='rsa', key_size=2048, curve='secp256r1'):
    """Generate a new private key (RSA of ``key_size`` bits, or ECDSA on ``curve``)."""
    _require_crypto()
    key_type = (key_type or 'rsa').lower()
    if key_type == 'rsa':
        validate_rsa_size(key_size)
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_size))
    if key_type in ('ecdsa', 'ec'):
        return ec.generate_private_key(getattr(ec, normalize_curve(curve))())
    raise InvalidInput('Unsupported key type %r; use rsa or ecdsa' % (key_type,))


def validate_rsa_size(key_size):
    try:
        size = int(key_size)
    except (TypeError, ValueError):
        raise InvalidInput('RSA key size must be an integer, got %r' % (key_size,))
    if size < RSA_MIN_BITS or size > RSA_MAX_BITS or size % 8:
        raise InvalidInput('RSA key size %s is not supported; use %d to %d bits (a multiple of 8)'
                           % (key_size, RSA_MIN_BITS, RSA_MAX_BITS))
    return size


def key_description(key):
    """Return ('rsa', bits) or ('ecdsa', curve name) for a private or public key."""
    _require_crypto()
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return ('rsa', key.key_size)
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return ('ecdsa', key.curve.name)
    return (type(key).__name__, None)


def validate_private_key(key, key_type=None, key_size=None, curve=None, min_size=None):
    """Check an existing key against the wanted parameters. Returns None if it fits, else a reason string.

    ``min_size`` is the template's msPKI-Minimal-Key-Size (RSA bits).
    """
    _require_crypto()
    kind, detail = key_description(key)
    if kind not in ('rsa', 'ecdsa'):
        return 'key type %s is not supported (rsa or ecdsa)' % kind
    if key_type and (key_type.lower() in ('ec', 'ecdsa')) != (kind == 'ecdsa'):
        return 'key is %s but %s is wanted' % (kind, key_type.lower())
    if kind == 'rsa':
        if detail < RSA_MIN_BITS or detail > RSA_MAX_BITS:
            return 'RSA key has %d bits; %d to %d are supported' % (detail, RSA_MIN_BITS, RSA_MAX_BITS)
        if key_size and (not key_type or key_type.lower() == 'rsa') and int(key_size) != detail:
            return 'RSA key has %d bits but %s are wanted' % (detail, key_size)
        if min_size and detail < int(min_size):
            return 'RSA key has %d bits, below the template minimum of %s' % (detail, min_size)
    else:
        if detail not in _CURVE_NAMES.values():
            return 'curve %s is not supported' % detail
        if curve and key_type and key_type.lower() in ('ec', 'ecdsa') and \
                _CURVE_NAMES[normalize_curve(curve)] != detail:
            return 'key is on %s but %s is wanted' % (detail, curve)
    return None


def load_private_key(data, passphrase=None):
    """Load a PEM or DER private key (optionally encrypted)."""
    _require_crypto()
    if isinstance(passphrase, str):
        passphrase = passphrase.encode('utf-8')
    if isinstance(data, str):
        data = data.encode('ascii')
    try:
        if data.lstrip().startswith(b'-----'):
            return serialization.load_pem_private_key(data, password=passphrase)
        return serialization.load_der_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise InvalidInput('Cannot load the private key (wrong passphrase or not a key)', detail=str(exc))


def private_key_bytes(key, encoding='pem', passphrase=None):
    """Serialize a private key as PKCS#8 (PEM or DER), encrypted with ``passphrase`` if given."""
    _require_crypto()
    enc = serialization.Encoding.PEM if encoding == 'pem' else serialization.Encoding.DER
    if passphrase:
        if isinstance(passphrase, str):
            passphrase = passphrase.encode('utf-8')
        algo = serialization.BestAvailableEncryption(passphrase)
    else:
        algo = serialization.NoEncryption()
    return key.private_bytes(enc, serialization.PrivateFormat.PKCS8, algo)


# ---------------------------------------------------------------------------------------------------------------
# Subject and SANs
# ---------------------------------------------------------------------------------------------------------------
def _name_oid(attr):
    attr = attr.strip()
    if _OID_RE.match(attr):
        return ObjectIdentifier(attr)
    key = SUBJECT_ATTRIBUTES.get(attr)
    if key is None:
        for k, v in SUBJECT_ATTRIBUTES.items():
            if k.lower() == attr.lower():
                key = v
                break
    if key is None:
        raise InvalidInput('Unknown subject attribute %r' % (attr,))
    return getattr(NameOID, key)


def _split_unescaped(text, sep):
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == '\\' and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if c == sep:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append(''.join(cur))
    return parts


def parse_subject(subject):
    """Build an x509.Name from a dict ({'CN': 'x', 'O': 'y'} or a list of pairs), an RFC 4514 string
    ("CN=x,O=y", most specific first) or an OpenSSL string ("/O=y/CN=x", least specific first).
    None or empty gives an empty name."""
    _require_crypto()
    if not subject:
        return x509.Name([])
    pairs = []
    if isinstance(subject, dict):
        for k, v in subject.items():
            values = v if isinstance(v, (list, tuple)) else [v]
            for item in values:
                pairs.append((k, item))
    elif isinstance(subject, (list, tuple)):
        for item in subject:
            if isinstance(item, dict):
                pairs.extend(item.items())
            else:
                pairs.append(tuple(item))
    elif isinstance(subject, str):
        text = subject.strip()
        if text.startswith('/'):
            comps = [c for c in _split_unescaped(text[1:], '/') if c.strip()]
        else:
            comps = [c for c in _split_unescaped(text, ',') if c.strip()]
            comps.reverse()  # RFC 4514 lists the most specific RDN first
        for comp in comps:
            if '=' not in comp:
                raise InvalidInput('Cannot parse subject component %r (expected NAME=value)' % (comp,))
            k, v = comp.split('=', 1)
            pairs.append((k, v))
    else:
        raise InvalidInput('Subject must be a dict, a list or a string')
    attrs = []
    for k, v in pairs:
        oid = _name_oid(str(k))
        value = str(v).strip()
        if not value:
            raise InvalidInput('Empty value for subject attribute %s' % k)
        if oid == NameOID.COUNTRY_NAME and len(value) != 2:
            raise InvalidInput('Country (C) must be a two-letter code, got %r' % value)
        attrs.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
    return x509.Name(attrs)


def normalize_sans(sans):
    """Normalize SANs to a sorted list of (type, value) with type in dns/ip/upn/email/uri.

    Accepts "DNS:host", "IP:10.0.0.1", "UPN:user@realm", "email:a@b", "URI:https://x" strings, (type, value)
    pairs, or a dict {type: value-or-list}. DNS names and e-mail domains compare case-insensitively, so they are
    lower-cased; IP addresses are canonicalized.
    """
    result = set()
    if not sans:
        return []
    items = []
    if isinstance(sans, dict):
        for k, v in sans.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                items.append((k, item))
    else:
        for item in sans:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                items.append((item[0], item[1]))
            elif isinstance(item, str):
                if ':' not in item:
                    raise InvalidInput('SAN %r needs a type prefix (DNS:, IP:, UPN:, email:, URI:)' % (item,))
                k, v = item.split(':', 1)
                items.append((k, v))
            else:
                raise InvalidInput('Cannot parse SAN %r' % (item,))
    for k, v in items:
        kind = _SAN_ALIASES.get(str(k).strip().lower())
        if kind is None:
            raise InvalidInput('Unsupported SAN type %r; use DNS, IP, UPN, email or URI' % (k,))
        value = str(v).strip()
        if not value:
            raise InvalidInput('Empty %s SAN' % kind)
        if any(c in value for c in '\n\r&'):
            raise InvalidInput('SAN %s:%r contains a forbidden character (newline or &)' % (kind, value))
        if kind == 'dns':
            value = value.lower().rstrip('.')
            if not re.match(r'^(\*\.)?[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$', value):
                raise InvalidInput('Invalid DNS name %r' % value)
        elif kind == 'ip':
            try:
                value = str(ipaddress.ip_address(value))
            except ValueError:
                raise InvalidInput('Invalid IP address %r' % value)
        elif kind in ('upn', 'email'):
            if value.count('@') != 1 or value.startswith('@') or value.endswith('@'):
                raise InvalidInput('Invalid %s %r (expected local@domain)' % (kind.upper(), value))
            local, domain = value.split('@')
            value = local + '@' + domain.lower() if kind == 'email' else value
        elif kind == 'uri':
            if not re.match(r'^[A-Za-z][A-Za-z0-9+.-]*:', value):
                raise InvalidInput('Invalid URI %r (needs a scheme)' % value)
        result.add((kind, value))
    return sorted(result)


def upn_other_name(upn):
    """x509.OtherName for a UPN: type-id 1.3.6.1.4.1.311.20.2.3, value UTF8String (DER)."""
    _require_crypto()
    raw = upn.encode('utf-8')
    return x509.OtherName(ObjectIdentifier(OID_UPN), b'\x0c' + _der_length(len(raw)) + raw)


def _der_length(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(body)]) + body


def san_general_names(sans):
    _require_crypto()
    names = []
    for kind, value in normalize_sans(sans):
        if kind == 'dns':
            names.append(x509.DNSName(value))
        elif kind == 'ip':
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        elif kind == 'upn':
            names.append(upn_other_name(value))
        elif kind == 'email':
            names.append(x509.RFC822Name(value))
        elif kind == 'uri':
            names.append(x509.UniformResourceIdentifier(value))
    return names


def key_usage_extension(usages):
    _require_crypto()
    flags = dict((v, False) for v in set(KEY_USAGES.values()))
    for u in usages:
        name = KEY_USAGES.get(u) or KEY_USAGES.get(str(u).strip())
        if name is None:
            raise InvalidInput('Unknown key usage %r' % (u,))
        flags[name] = True
    return x509.KeyUsage(**flags)


def eku_oid(name):
    name = str(name).strip()
    if _OID_RE.match(name):
        return name
    if name in EKU_NAMES:
        return EKU_NAMES[name]
    raise InvalidInput('Unknown extended key usage %r (use a name like serverAuth or a dotted OID)' % name)


def template_name_extension_value(template_name):
    """DER of szOID_ENROLL_CERTTYPE_EXTENSION: the template name as BMPString."""
    raw = template_name.encode('utf-16-be')
    return b'\x1e' + _der_length(len(raw)) + raw


def _der_oid(oid):
    arcs = [int(a) for a in oid.split('.')]
    body = bytearray()
    first = arcs[0] * 40 + arcs[1]
    for arc in [first] + arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return b'\x06' + _der_length(len(body)) + bytes(body)


def _der_int(n):
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), 'big')
    return b'\x02' + _der_length(len(body)) + body


def template_oid_extension_value(template_oid, major=None, minor=None):
    """DER of szOID_CERTIFICATE_TEMPLATE: SEQUENCE { templateID OID, majorVersion INT OPT, minorVersion INT OPT }"""
    if not _OID_RE.match(template_oid or ''):
        raise InvalidInput('Invalid template OID %r' % (template_oid,))
    body = _der_oid(template_oid)
    if major is not None:
        body += _der_int(int(major))
        if minor is not None:
            body += _der_int(int(minor))
    return b'\x30' + _der_length(len(body)) + body


def _hash(hash_name):
    _require_crypto()
    name = (hash_name or 'sha256').lower().replace('-', '')
    if name not in _HASH_OIDS:
        raise InvalidInput('Unsupported hash %r; use sha256, sha384 or sha512' % hash_name)
    return getattr(hashes, name.upper())()


def build_csr(key, subject=None, sans=None, key_usage=None, extended_key_usage=None, template_name=None,
              template_oid=None, template_major_version=None, template_minor_version=None, hash_name='sha256',
              renewal_certificate=None, extra_extensions=None):
    """Build a PKCS#10 request signed with ``key`` and return its DER.

    ``renewal_certificate`` (x509.Certificate) adds the szOID_RENEWAL_CERTIFICATE attribute required for
    renewals (MS-WCCE 3.1.1.4.3.2.1). ``extra_extensions``: list of (x509.ExtensionType, critical).
    """
    _require_crypto()
    builder = x509.CertificateSigningRequestBuilder().subject_name(parse_subject(subject))
    names = san_general_names(sans)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if key_usage:
        builder = builder.add_extension(key_usage_extension(key_usage), critical=True)
    if extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ObjectIdentifier(eku_oid(e)) for e in extended_key_usage]), critical=False)
    if template_name:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier(OID_ENROLL_CERTTYPE),
                                       template_name_extension_value(template_name)), critical=False)
    if template_oid:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier(OID_CERTIFICATE_TEMPLATE),
                                       template_oid_extension_value(template_oid, template_major_version,
                                                                    template_minor_version)), critical=False)
    for ext, critical in extra_extensions or []:
        builder = builder.add_extension(ext, critical=critical)
    algorithm = _hash(hash_name)
    csr = builder.sign(key, algorithm)
    der = csr.public_bytes(serialization.Encoding.DER)
    if renewal_certificate is not None:
        der = add_csr_attribute(der, key, OID_RENEWAL_CERTIFICATE,
                                renewal_certificate.public_bytes(serialization.Encoding.DER), hash_name)
    return der


def _sign(key, data, hash_name):
    algorithm = _hash(hash_name)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    raise InvalidInput('Cannot sign with a %s key' % type(key).__name__)


def add_csr_attribute(csr_der, key, attr_oid, value_der, hash_name='sha256'):
    """Append an attribute (one DER value) to a PKCS#10 and re-sign it with ``key``."""
    _require_pyasn1()
    req, rest = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    if rest:
        raise InvalidInput('Trailing data after the PKCS#10 request')
    info = req['certificationRequestInfo']
    attr = rfc2986.Attribute()
    attr['type'] = univ.ObjectIdentifier(attr_oid)
    attr['values'].append(univ.Any(value_der))
    info['attributes'].append(attr)
    tbs = der_encoder.encode(info)
    signature = _sign(key, tbs, hash_name)
    req['signature'] = univ.BitString.fromOctetString(signature)
    return der_encoder.encode(req)


def csr_attributes(csr_der):
    """Return {oid: [value DER, ...]} of a PKCS#10's attributes (for checks and tests)."""
    _require_pyasn1()
    req, _rest = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    out = {}
    for attr in req['certificationRequestInfo']['attributes']:
        out.setdefault(str(attr['type']), []).extend(bytes(v) for v in attr['values'])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Request attributes (pwszAttributes)
# ---------------------------------------------------------------------------------------------------------------
def build_request_attributes(template=None, sans=None, extra=None):
    """Build the pwszAttributes string: ``name:value`` lines joined by ``\\n``.

    ``sans`` go in a ``SAN:`` line (``dns=a&upn=b``); the CA honours it only with EDITF_ATTRIBUTESUBJECTALTNAME2.
    ``extra`` is a dict or list of (name, value) pairs (for example ``ccm`` or ``ApplicationPolicies``).
    """
    lines = []
    if template:
        _check_attr('CertificateTemplate', template)
        lines.append('CertificateTemplate:%s' % template)
    norm = normalize_sans(sans)
    if norm:
        lines.append('SAN:' + '&'.join('%s=%s' % (k, v) for k, v in norm))
    items = extra.items() if isinstance(extra, dict) else (extra or [])
    for name, value in items:
        _check_attr(name, value)
        lines.append('%s:%s' % (name, value))
    return '\n'.join(lines)


def _check_attr(name, value):
    if not name or ':' in str(name) or any(c in str(name) for c in '\r\n'):
        raise InvalidInput('Invalid request attribute name %r' % (name,))
    if any(c in str(value) for c in '\r\n\x00'):
        raise InvalidInput('Request attribute %s must not contain a newline or NUL' % name)


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


# ---------------------------------------------------------------------------------------------------------------
# Renewal: CMS SignedData around the new PKCS#10, signed with the old certificate's key
# ---------------------------------------------------------------------------------------------------------------
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
    _require_crypto()
    _require_pyasn1()
    pub = old_certificate.public_key()
    if public_key_der(pub) != public_key_der(old_key.public_key()):
        raise InvalidInput('The key given for renewal does not belong to the certificate being renewed')
    hash_name = (hash_name or 'sha256').lower().replace('-', '')
    algorithm = _hash(hash_name)
    digest_oid, ecdsa_oid = _HASH_OIDS[hash_name]
    old_der = old_certificate.public_bytes(serialization.Encoding.DER)

    h = hashes.Hash(algorithm)
    h.update(csr_der)
    digest = h.finalize()

    signer = rfc5652.SignerInfo()
    signed_attrs = signer['signedAttrs']
    signed_attrs.append(_cms_attribute(OID_CONTENT_TYPE, _der_oid(OID_PKCS7_DATA)))
    signed_attrs.append(_cms_attribute(OID_MESSAGE_DIGEST, b'\x04' + _der_length(len(digest)) + digest))
    signed_attrs.append(_cms_attribute(OID_RENEWAL_CERTIFICATE, old_der))

    signature = _sign(old_key, signed_attrs_to_be_signed(signed_attrs), hash_name)

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


def parse_renewal_request(cms_der):
    """Decode a renewal CMS built by build_renewal_request (or certreq) into a dict of its parts:
    ``csr_der``, ``certificates`` (list of DER), ``signer`` (issuer DER, serial), ``signed_attrs``
    {oid: [value DER]}, ``to_be_signed`` (bytes), ``signature``, ``digest_oid``, ``signature_oid``."""
    _require_pyasn1()
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


def public_key_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def hash_name_for_oid(oid):
    for name, (digest_oid, _ecdsa_oid) in _HASH_OIDS.items():
        if digest_oid == oid:
            return name
    return None
