# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate signing requests: one job, turning request parameters into the PKCS#10 and attributes sent to the CA.

- the subject (dict, RFC 4514 string or OpenSSL "/CN=../O=.." string) and the subject alternative names
  (DNS, IP, UPN as otherName 1.3.6.1.4.1.311.20.2.3 UTF8String, e-mail, URI);
- PKCS#10 with key usage / extended key usage and the certificate template extensions
  (1.3.6.1.4.1.311.20.2 template name, 1.3.6.1.4.1.311.21.7 template OID + version), and its attributes (the
  renewal attribute is added with pyasn1 and the request re-signed: cryptography cannot add a non-string attribute);
- whether a CSR already on disk is the request wanted (``same_request``), and the host's key + CSR files
  (``ensure_key_and_csr``, the wcce_csr module's work);
- the MS-WCCE request attribute string (``CertificateTemplate:Name\\nSAN:dns=..&upn=..``).

The renewal request (CMS around the PKCS#10) is in ``_renewal_request``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._x509 import (
    OID_CERTIFICATE_TEMPLATE, OID_ENROLL_CERTTYPE, OID_UPN, normalize_sans,
)

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ObjectIdentifier
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

OID_RENEWAL_CERTIFICATE = '1.3.6.1.4.1.311.13.1'     # szOID_RENEWAL_CERTIFICATE

HASH_OIDS = {
    'sha256': ('2.16.840.1.101.3.4.2.1', '1.2.840.10045.4.3.2'),
    'sha384': ('2.16.840.1.101.3.4.2.2', '1.2.840.10045.4.3.3'),
    'sha512': ('2.16.840.1.101.3.4.2.3', '1.2.840.10045.4.3.4'),
}


def _aliases(text, value_is_name=True):
    """A name table from lines 'VALUE name name ...': every name (and VALUE itself if value_is_name) maps to VALUE."""
    table = {}
    for line in text.strip().splitlines():
        value, names = line.split()[0], line.split()[1:]
        table.update((name, value) for name in names + ([value] if value_is_name else []))
    return table


# Subject attribute names (RFC 4514 short names and X.500 long names) -> cryptography NameOID attribute.
SUBJECT_ATTRIBUTES = _aliases('''
COMMON_NAME CN commonName
COUNTRY_NAME C countryName
LOCALITY_NAME L localityName
STATE_OR_PROVINCE_NAME ST stateOrProvinceName
ORGANIZATION_NAME O organizationName
ORGANIZATIONAL_UNIT_NAME OU organizationalUnitName
DOMAIN_COMPONENT DC domainComponent
EMAIL_ADDRESS emailAddress E
SERIAL_NUMBER serialNumber
USER_ID UID
TITLE title
GIVEN_NAME GN givenName
SURNAME SN surname
STREET_ADDRESS street
POSTAL_CODE postalCode
''', value_is_name=False)

# Key usage names (RFC 5280 camelCase and cryptography's snake_case) -> x509.KeyUsage argument.
KEY_USAGES = _aliases('''
digital_signature digitalSignature
content_commitment contentCommitment nonRepudiation
key_encipherment keyEncipherment
data_encipherment dataEncipherment
key_agreement keyAgreement
key_cert_sign keyCertSign
crl_sign cRLSign
encipher_only encipherOnly
decipher_only decipherOnly
''')

# Extended key usage names -> OID.
EKU_NAMES = _aliases('''
1.3.6.1.5.5.7.3.1 serverAuth server_auth
1.3.6.1.5.5.7.3.2 clientAuth client_auth
1.3.6.1.5.5.7.3.3 codeSigning code_signing
1.3.6.1.5.5.7.3.4 emailProtection email_protection
1.3.6.1.5.5.7.3.8 timeStamping time_stamping
1.3.6.1.5.5.7.3.9 OCSPSigning ocsp_signing
1.3.6.1.4.1.311.20.2.2 smartcardLogon smartcard_logon
2.5.29.37.0 anyExtendedKeyUsage
''')

_OID_RE = re.compile(r'^[0-2](\.(0|[1-9][0-9]*))+$')


def require_crypto():
    """MissingLibrary (an AdcsError) when cryptography cannot be imported."""
    _deps.require('cryptography')


def require_pyasn1():
    """MissingLibrary when pyasn1/pyasn1_modules cannot be imported (they come with impacket)."""
    _deps.require('pyasn1', reason='installed with impacket')


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
    require_crypto()
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


def upn_other_name(upn):
    """x509.OtherName for a UPN: type-id 1.3.6.1.4.1.311.20.2.3, value UTF8String (DER)."""
    require_crypto()
    raw = upn.encode('utf-8')
    return x509.OtherName(ObjectIdentifier(OID_UPN), b'\x0c' + der_length(len(raw)) + raw)


def der_length(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(body)]) + body


def san_general_names(sans):
    require_crypto()
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
    require_crypto()
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
    return b'\x1e' + der_length(len(raw)) + raw


def der_oid(oid):
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
    return b'\x06' + der_length(len(body)) + bytes(body)


def _der_int(n):
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), 'big')
    return b'\x02' + der_length(len(body)) + body


def template_oid_extension_value(template_oid, major=None, minor=None):
    """DER of szOID_CERTIFICATE_TEMPLATE: SEQUENCE { templateID OID, majorVersion INT OPT, minorVersion INT OPT }"""
    if not _OID_RE.match(template_oid or ''):
        raise InvalidInput('Invalid template OID %r' % (template_oid,))
    body = der_oid(template_oid)
    if major is not None:
        body += _der_int(int(major))
        if minor is not None:
            body += _der_int(int(minor))
    return b'\x30' + der_length(len(body)) + body


def hash_algorithm(hash_name):
    require_crypto()
    name = (hash_name or 'sha256').lower().replace('-', '')
    if name not in HASH_OIDS:
        raise InvalidInput('Unsupported hash %r; use sha256, sha384 or sha512' % hash_name)
    return getattr(hashes, name.upper())()


def build_csr(key, subject=None, sans=None, key_usage=None, extended_key_usage=None, template_name=None,
              template_oid=None, template_major_version=None, template_minor_version=None, hash_name='sha256',
              renewal_certificate=None, extra_extensions=None):
    """Build a PKCS#10 request signed with ``key`` and return its DER.

    ``renewal_certificate`` (x509.Certificate) adds the szOID_RENEWAL_CERTIFICATE attribute required for
    renewals (MS-WCCE 3.1.1.4.3.2.1). ``extra_extensions``: list of (x509.ExtensionType, critical).
    """
    require_crypto()
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
    algorithm = hash_algorithm(hash_name)
    csr = builder.sign(key, algorithm)
    der = csr.public_bytes(serialization.Encoding.DER)
    if renewal_certificate is not None:
        der = add_csr_attribute(der, key, OID_RENEWAL_CERTIFICATE,
                                renewal_certificate.public_bytes(serialization.Encoding.DER), hash_name)
    return der


def sign(key, data, hash_name):
    algorithm = hash_algorithm(hash_name)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    raise InvalidInput('Cannot sign with a %s key' % type(key).__name__)


def add_csr_attribute(csr_der, key, attr_oid, value_der, hash_name='sha256'):
    """Append an attribute (one DER value) to a PKCS#10 and re-sign it with ``key``."""
    require_pyasn1()
    from pyasn1.codec.der import decoder as der_decoder, encoder as der_encoder   # only when needed (no-op path)
    from pyasn1.type import univ
    from pyasn1_modules import rfc2986
    req, rest = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    if rest:
        raise InvalidInput('Trailing data after the PKCS#10 request')
    info = req['certificationRequestInfo']
    attr = rfc2986.Attribute()
    attr['type'] = univ.ObjectIdentifier(attr_oid)
    attr['values'].append(univ.Any(value_der))
    info['attributes'].append(attr)
    tbs = der_encoder.encode(info)
    signature = sign(key, tbs, hash_name)
    req['signature'] = univ.BitString.fromOctetString(signature)
    return der_encoder.encode(req)


def csr_attributes(csr_der):
    """Return {oid: [value DER, ...]} of a PKCS#10's attributes (for checks and tests)."""
    require_pyasn1()
    from pyasn1.codec.der import decoder as der_decoder
    from pyasn1_modules import rfc2986
    req, _rest = der_decoder.decode(csr_der, asn1Spec=rfc2986.CertificationRequest())
    out = {}
    for attr in req['certificationRequestInfo']['attributes']:
        out.setdefault(str(attr['type']), []).extend(bytes(v) for v in attr['values'])
    return out


def csr_pem(csr_der):
    """PEM of a PKCS#10 given as DER."""
    require_crypto()
    return x509.load_der_x509_csr(csr_der).public_bytes(serialization.Encoding.PEM)


def same_request(existing_pem, key, subject, sans):
    """True when ``existing_pem`` holds a request for this key, subject and SANs (ECDSA signatures differ per run,
    so the bytes are not compared)."""
    require_crypto()
    try:
        csr = x509.load_pem_x509_csr(existing_pem)
    except (ValueError, TypeError):
        return False
    if _keys.public_key_der(csr.public_key()) != _keys.public_key_der(key.public_key()):
        return False
    if csr.subject != parse_subject(subject):
        return False
    try:
        have_names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        have_names = []
    return have_names == list(san_general_names(sans) or [])


def ensure_key_and_csr(writer, private_key_path, csr_path=None, passphrase=None, key_mode=None, regenerate=False,
                       key_type='rsa', key_size=2048, curve='secp256r1', subject=None, sans=None, mode=None,
                       owner=None, group=None, check_mode=False):
    """The host's private key (generated when missing or when ``regenerate``) and a CSR for it, written to
    ``csr_path`` (kept when it already asks for the same key, subject and SANs). A generated key and its CSR switch
    together through ``writer`` (a ``_staged.ModuleFileWriter``); the key gets ``key_mode`` (default 0600), the CSR
    ``mode`` (default 0644), both ``owner``/``group``. Returns dict(changed, key_generated, public_key, csr: PEM
    bytes), without public_key and csr when the key is missing in check mode."""
    key_mode = _files.check_secret_mode(key_mode)
    if not check_mode:   # a switch of these files a killed run left half done is finished first
        _journal.recover([private_key_path, csr_path])
    result = {'changed': False, 'key_generated': False}
    specs = []
    if os.path.exists(private_key_path) and not regenerate:
        key = _keys.load_private_key(_files.read_file(private_key_path), passphrase)
        problem = _keys.validate_private_key(key, key_type, key_size, curve)
        if problem:
            raise InvalidInput('The private key %s does not fit: %s (set regenerate_key=true to replace it)'
                               % (private_key_path, problem))
    else:
        result.update(changed=True, key_generated=True)
        if check_mode:
            return result
        key = _keys.generate_private_key(key_type, key_size, curve)
        specs.append(_staged.FileSpec(private_key_path, _keys.private_key_bytes(key, 'pem', passphrase), mode=key_mode,
                                      owner=owner, group=group, secret=True))
    result['public_key'] = _keys.public_key_info(key)
    pem = None
    if csr_path and not result['key_generated'] and os.path.exists(csr_path):
        existing = _files.read_file(csr_path, replaceable=True)
        if same_request(existing, key, subject, sans):
            pem = existing
    if pem is None:
        pem = csr_pem(build_csr(key, subject=subject, sans=sans))
    if csr_path:
        specs.append(_staged.FileSpec(csr_path, pem, mode=mode, owner=owner, group=group))
    if specs:
        result['changed'] = bool(writer.write(specs)['changed']) or result['changed']
    result['csr'] = pem
    return result


# ---------------------------------------------------------------------------------------------------------------
# Request attributes (pwszAttributes)
# ---------------------------------------------------------------------------------------------------------------
_SAN_ATTRIBUTE_NAMES = {'dns': 'dns', 'ip': 'ipaddress', 'upn': 'upn', 'email': 'email', 'uri': 'url'}


def build_request_attributes(template=None, sans=None, extra=None):
    """Build the pwszAttributes string: ``name:value`` lines joined by ``\\n``.

    ``sans`` go in a ``SAN:`` line (``dns=a&upn=b``); the CA honours it only with EDITF_ATTRIBUTESUBJECTALTNAME2.
    ``extra`` is a dict or list of (name, value) pairs (for example ``ccm`` or ``ApplicationPolicies``).
    """
    lines = []
    if template:
        _check_attr('CertificateTemplate', template)
        lines.append('CertificateTemplate:%s' % template)
    # MS-WCCE 3.2.1.4.2.1.2 names (dns, email, upn, dn, url, ipaddress, guid); normalize_sans refuses '&' in values
    norm = [(_SAN_ATTRIBUTE_NAMES[k], v) for k, v in normalize_sans(sans)]
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
