# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509: one job, reading, encoding and describing certificates we already have or just received.

- loading: PEM (several blocks, CERTIFICATE or PKCS7/CMS, text around them is ignored), DER certificate, DER
  PKCS#7/CMS "degenerate" SignedData as returned by the CA (empty SignedData gives []), optionally base64 DER as
  some web servers publish it;
- encoding: a certificate (PEM/DER), a chain (PEM blocks, or a DER PKCS#7 bundle), PKCS#12;
- subject alternative names as sorted (type, value) pairs (``normalize_sans``, ``certificate_sans``);
- ``certificate_facts()``: the ONE facts schema every module returns for a certificate (subject, issuer, serial,
  validity, SHA-256 and SHA-1 fingerprints, SANs, template from the 1.3.6.1.4.1.311.21.7 / 1.3.6.1.4.1.311.20.2
  extensions, EKUs, public key, CA flag);
- key/certificate match.

Chain building and verification are in ``_chain``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import ipaddress
import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError, InvalidInput

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7 as _pkcs7
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtensionOID

OID_UPN = '1.3.6.1.4.1.311.20.2.3'
OID_ENROLL_CERTTYPE = '1.3.6.1.4.1.311.20.2'         # szOID_ENROLL_CERTTYPE_EXTENSION (BMPString name)
OID_CERTIFICATE_TEMPLATE = '1.3.6.1.4.1.311.21.7'    # szOID_CERTIFICATE_TEMPLATE (OID + versions)
FORMATS = _keys.FORMATS

SAN_TYPES = ('dns', 'ip', 'upn', 'email', 'uri')
_SAN_ALIASES = {
    'dns': 'dns', 'ip': 'ip', 'ip address': 'ip', 'ipaddress': 'ip', 'upn': 'upn', 'email': 'email',
    'mail': 'email', 'rfc822': 'email', 'uri': 'uri', 'url': 'uri',
}
_B64 = re.compile(br'^[A-Za-z0-9+/=\s]+$')
_UTC = datetime.timezone.utc


def require_crypto():
    """MissingLibrary (an AdcsError) when cryptography cannot be imported."""
    _deps.require('cryptography')


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------
def to_bytes(data):
    return data.encode('utf-8') if isinstance(data, str) else bytes(data or b'')


def load_certificate(data):
    """Load one certificate from PEM or DER."""
    require_crypto()
    data = to_bytes(data)
    try:
        if data.lstrip().startswith(b'-----'):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError('Cannot parse the certificate', detail=str(exc))


def parse_pkcs7_certificates(data):
    """Certificates of a PKCS#7/CMS SignedData (DER or PEM), in stored order. Empty SignedData gives []."""
    require_crypto()
    data = to_bytes(data)
    if data.lstrip().startswith(b'-----'):
        try:
            return list(_pkcs7.load_pem_pkcs7_certificates(data))
        except ValueError as exc:
            raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail=str(exc))
    try:   # cryptography keeps the stored order; it refuses a SignedData without certificates
        return list(_pkcs7.load_der_pkcs7_certificates(data))
    except ValueError as exc:
        crypto_error = exc
    if not _deps.available('pyasn1'):
        raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail=str(crypto_error))
    from pyasn1.codec.der import decoder as der_decoder, encoder as der_encoder   # imported only for these
    from pyasn1_modules import rfc2315
    try:
        ci, _rest = der_decoder.decode(data, asn1Spec=rfc2315.ContentInfo())
        if str(ci['contentType']) != '1.2.840.113549.1.7.2':
            raise CertificateError('The PKCS#7 blob is not SignedData (content type %s)' % ci['contentType'])
        sd, _rest = der_decoder.decode(bytes(ci['content']), asn1Spec=rfc2315.SignedData())
        certs = []
        if sd['certificates'].isValue:
            for choice in sd['certificates']:
                if choice.getName() == 'certificate':
                    certs.append(x509.load_der_x509_certificate(der_encoder.encode(choice['certificate'])))
        return certs
    except CertificateError:
        raise
    except Exception as exc:  # pyasn1 raises many types
        raise CertificateError('Cannot parse the PKCS#7 certificate chain', detail='%s; %s' % (crypto_error, exc))


def load_certificates(data, base64_der=False):
    """Every certificate of PEM (several blocks, CERTIFICATE or PKCS7/CMS, text around them ignored), a DER
    certificate or a DER PKCS#7; with ``base64_der`` also of base64 DER without PEM armour."""
    require_crypto()
    data = to_bytes(data)
    if b'-----BEGIN ' in data:
        certs = []
        for block in pem_blocks(data):
            if b'-----BEGIN PKCS7-----' in block or b'-----BEGIN CMS-----' in block:
                certs.extend(parse_pkcs7_certificates(block.replace(b'CMS-----', b'PKCS7-----')))
            elif b'CERTIFICATE-----' in block:
                certs.append(load_certificate(block))
        return certs
    try:
        return _der_certificates(data)
    except CertificateError:
        decoded = decode_base64(data) if base64_der else None
        if not decoded:
            raise
        return _der_certificates(decoded)


def _der_certificates(data):
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        return parse_pkcs7_certificates(data)


def decode_base64(data):
    """The bytes of base64 text (whitespace allowed, nothing else), or None when it is not base64."""
    stripped = data.strip()
    if stripped and _B64.match(stripped):
        try:
            return base64.b64decode(b''.join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def pem_blocks(data):
    """The ``-----BEGIN ...-----`` .. ``-----END ...-----`` blocks of PEM text (bytes), in order."""
    blocks, cur = [], None
    for line in to_bytes(data).splitlines(True):
        line = line.lstrip()
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


def encode_certificate(cert, fmt='pem'):
    require_crypto()
    if fmt not in FORMATS:
        raise InvalidInput('Unknown format %r (pem or der)' % (fmt,))
    return cert.public_bytes(serialization.Encoding.PEM if fmt == 'pem' else serialization.Encoding.DER)


def encode_chain(certs, fmt='pem'):
    """PEM: concatenated blocks. DER: a PKCS#7 certs-only bundle (one DER file cannot hold several certs)."""
    require_crypto()
    if fmt == 'pem':
        return b''.join(encode_certificate(c, 'pem') for c in certs)
    if fmt == 'der':
        return _pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)
    raise InvalidInput('Unknown format %r (pem or der)' % (fmt,))


def pkcs12_bundle(key, cert, ca_certs=None, passphrase=None, friendly_name=None):
    """PKCS#12 with key, certificate and CA certificates, encrypted with passphrase (None: unencrypted)."""
    require_crypto()
    if passphrase:
        algo = serialization.BestAvailableEncryption(passphrase.encode('utf-8') if isinstance(passphrase, str)
                                                     else passphrase)
    else:
        algo = serialization.NoEncryption()
    name = friendly_name.encode('utf-8') if isinstance(friendly_name, str) else friendly_name
    return pkcs12.serialize_key_and_certificates(name, key, cert, list(ca_certs or []) or None, algo)


def load_pkcs12(data, passphrase=None):
    require_crypto()
    pw = passphrase.encode('utf-8') if isinstance(passphrase, str) else passphrase
    try:
        return pkcs12.load_key_and_certificates(data, pw)
    except ValueError as exc:
        raise InvalidInput('Cannot read the PKCS#12 bundle (wrong passphrase?)', detail=str(exc))


# ---------------------------------------------------------------------------------------------------------------
# Subject alternative names
# ---------------------------------------------------------------------------------------------------------------
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


def format_sans(sans):
    labels = {'dns': 'DNS', 'ip': 'IP', 'upn': 'UPN', 'email': 'email', 'uri': 'URI'}
    return ['%s:%s' % (labels[k], v) for k, v in sans]


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


def fingerprint_sha1(cert):
    """The SHA-1 fingerprint (the Windows certificate "thumbprint"), colon separated, upper case."""
    return ':'.join('%02X' % b for b in cert.fingerprint(hashes.SHA1()))  # nosec - a name, not a signature


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


def general_names(obj):
    """The general names of the subjectAltName extension of a certificate or CSR ([] without one)."""
    try:
        return list(obj.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value)
    except x509.ExtensionNotFound:
        return []


def certificate_sans(cert):
    """SANs of a certificate as the sorted (type, value) list of normalize_sans."""
    items = []
    for gn in general_names(cert):
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
        return normalize_sans(items)
    except Exception:
        return sorted(set(items))


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
        from pyasn1.codec.der import decoder as der_decoder
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


def certificate_facts(cert):
    """The facts of a certificate for module results (JSON-serialisable), one schema for every module:
    ``subject``, ``issuer`` (RFC 4514), ``serial_number`` (hex, upper case), ``not_before``, ``not_after``
    (``YYYY-MM-DDTHH:MM:SSZ``), ``fingerprint_sha256``, ``fingerprint_sha1`` (colon separated, upper case),
    ``subject_alt_names``, ``template``, ``extended_key_usage``, ``public_key``, ``is_ca``."""
    require_crypto()
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
        'fingerprint_sha1': fingerprint_sha1(cert),
        'subject_alt_names': format_sans(certificate_sans(cert)),
        'template': certificate_template(cert),
        'extended_key_usage': eku,
        'public_key': _keys.public_key_info(cert.public_key()),
        'is_ca': bool(is_ca),
    }


def key_matches_certificate(key, cert):
    """True if the private key belongs to the certificate."""
    if key is None or cert is None:
        return False
    return _keys.public_key_der(key.public_key()) == _keys.public_key_der(cert.public_key())
