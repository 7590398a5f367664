# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decoding of certificate template objects (pKICertificateTemplate) as specified in MS-CRTD.

Pure Python, no third-party imports: every function takes the raw LDAP values (bytes or str, lists for
multi-valued attributes) and returns plain data structures that can go into module results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import struct
import uuid

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

# ---------------------------------------------------------------------------------------------------------
# Flag tables (MS-CRTD 2.4, 2.26, 2.27, 2.28). Ordered by bit value.
# ---------------------------------------------------------------------------------------------------------

# MS-CRTD 2.4 flags attribute (general enrollment flags)
GENERAL_FLAGS = (
    (0x00000002, 'CT_FLAG_ADD_EMAIL'),
    (0x00000008, 'CT_FLAG_PUBLISH_TO_DS'),
    (0x00000010, 'CT_FLAG_EXPORTABLE_KEY'),
    (0x00000020, 'CT_FLAG_AUTO_ENROLLMENT'),
    (0x00000040, 'CT_FLAG_MACHINE_TYPE'),
    (0x00000080, 'CT_FLAG_IS_CA'),
    (0x00000200, 'CT_FLAG_ADD_TEMPLATE_NAME'),
    (0x00000800, 'CT_FLAG_IS_CROSS_CA'),
    (0x00001000, 'CT_FLAG_DONOTPERSISTINDB'),
    (0x00010000, 'CT_FLAG_IS_DEFAULT'),
    (0x00020000, 'CT_FLAG_IS_MODIFIED'),
)

# MS-CRTD 2.26 msPKI-Enrollment-Flag
ENROLLMENT_FLAGS = (
    (0x00000001, 'CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS'),
    (0x00000002, 'CT_FLAG_PEND_ALL_REQUESTS'),
    (0x00000004, 'CT_FLAG_PUBLISH_TO_KRA_CONTAINER'),
    (0x00000008, 'CT_FLAG_PUBLISH_TO_DS'),
    (0x00000010, 'CT_FLAG_AUTO_ENROLLMENT_CHECK_USER_DS_CERTIFICATE'),
    (0x00000020, 'CT_FLAG_AUTO_ENROLLMENT'),
    (0x00000040, 'CT_FLAG_PREVIOUS_APPROVAL_VALIDATE_REENROLLMENT'),
    (0x00000100, 'CT_FLAG_USER_INTERACTION_REQUIRED'),
    (0x00000400, 'CT_FLAG_REMOVE_INVALID_CERTIFICATE_FROM_PERSONAL_STORE'),
    (0x00000800, 'CT_FLAG_ALLOW_ENROLL_ON_BEHALF_OF'),
    (0x00001000, 'CT_FLAG_ADD_OCSP_NOCHECK'),
    (0x00002000, 'CT_FLAG_ENABLE_KEY_REUSE_ON_NT_TOKEN_KEYSET_STORAGE_FULL'),
    (0x00004000, 'CT_FLAG_NOREVOCATIONINFOINISSUEDCERTS'),
    (0x00008000, 'CT_FLAG_INCLUDE_BASIC_CONSTRAINTS_FOR_EE_CERTS'),
    (0x00010000, 'CT_FLAG_ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT'),
    (0x00020000, 'CT_FLAG_ISSUANCE_POLICIES_FROM_REQUEST'),
    (0x00040000, 'CT_FLAG_SKIP_AUTO_RENEWAL'),
    (0x00080000, 'CT_FLAG_NO_SECURITY_EXTENSION'),
)

# MS-CRTD 2.27 msPKI-Private-Key-Flag. Bits 0x3000 are a two-bit attestation field, bits 16-19 and 24-27 carry
# the server and client versions; they are decoded separately (see decode_private_key_flag).
PRIVATE_KEY_FLAGS = (
    (0x00000001, 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL'),
    (0x00000010, 'CT_FLAG_EXPORTABLE_KEY'),
    (0x00000020, 'CT_FLAG_STRONG_KEY_PROTECTION_REQUIRED'),
    (0x00000040, 'CT_FLAG_REQUIRE_ALTERNATE_SIGNATURE_ALGORITHM'),
    (0x00000080, 'CT_FLAG_REQUIRE_SAME_KEY_RENEWAL'),
    (0x00000100, 'CT_FLAG_USE_LEGACY_PROVIDER'),
    (0x00000200, 'CT_FLAG_EK_TRUST_ON_USE'),
    (0x00000400, 'CT_FLAG_EK_VALIDATE_CERT'),
    (0x00000800, 'CT_FLAG_EK_VALIDATE_KEY'),
    (0x00001000, 'CT_FLAG_ATTEST_PREFERRED'),
    (0x00002000, 'CT_FLAG_ATTEST_REQUIRED'),
    (0x00004000, 'CT_FLAG_ATTESTATION_WITHOUT_POLICY'),
    (0x00100000, 'CT_FLAG_HELLO_KSP_KEY'),
    (0x00200000, 'CT_FLAG_HELLO_LOGON_KEY'),
)
PRIVATE_KEY_ATTEST_MASK = 0x00003000
PRIVATE_KEY_SERVER_VERSION_MASK = 0x000F0000
PRIVATE_KEY_SERVER_VERSION_SHIFT = 16
PRIVATE_KEY_CLIENT_VERSION_MASK = 0x0F000000
PRIVATE_KEY_CLIENT_VERSION_SHIFT = 24

# MS-CRTD 2.28 msPKI-Certificate-Name-Flag
NAME_FLAGS = (
    (0x00000001, 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'),
    (0x00000008, 'CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME'),
    (0x00010000, 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME'),
    (0x00400000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS'),
    (0x00800000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_SPN'),
    (0x01000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID'),
    (0x02000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_UPN'),
    (0x04000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL'),
    (0x08000000, 'CT_FLAG_SUBJECT_ALT_REQUIRE_DNS'),
    (0x10000000, 'CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN'),
    (0x20000000, 'CT_FLAG_SUBJECT_REQUIRE_EMAIL'),
    (0x40000000, 'CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME'),
    (0x80000000, 'CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH'),
)

# X.509 KeyUsage bits as Windows stores them in pKIKeyUsage (first byte, most significant bit first; decipherOnly
# is bit 7 of the second byte), RFC 5280 4.2.1.3.
KEY_USAGE_BITS = (
    (0, 0x80, 'digital_signature'),
    (0, 0x40, 'non_repudiation'),
    (0, 0x20, 'key_encipherment'),
    (0, 0x10, 'data_encipherment'),
    (0, 0x08, 'key_agreement'),
    (0, 0x04, 'key_cert_sign'),
    (0, 0x02, 'crl_sign'),
    (0, 0x01, 'encipher_only'),
    (1, 0x80, 'decipher_only'),
)

KEY_SPECS = {1: 'AT_KEYEXCHANGE', 2: 'AT_SIGNATURE'}

# Friendly names of EKU / application policy / certificate policy / extension OIDs commonly found in templates.
OID_NAMES = {
    '1.3.6.1.5.5.7.3.1': 'Server Authentication',
    '1.3.6.1.5.5.7.3.2': 'Client Authentication',
    '1.3.6.1.5.5.7.3.3': 'Code Signing',
    '1.3.6.1.5.5.7.3.4': 'Secure Email',
    '1.3.6.1.5.5.7.3.5': 'IP security end system',
    '1.3.6.1.5.5.7.3.6': 'IP security tunnel termination',
    '1.3.6.1.5.5.7.3.7': 'IP security user',
    '1.3.6.1.5.5.7.3.8': 'Time Stamping',
    '1.3.6.1.5.5.7.3.9': 'OCSP Signing',
    '1.3.6.1.5.5.7.3.17': 'IP security IKE intermediate',
    '1.3.6.1.5.5.8.2.2': 'IP security IKE intermediate',
    '1.3.6.1.5.2.3.4': 'PKINIT Client Authentication',
    '1.3.6.1.5.2.3.5': 'KDC Authentication',
    '2.5.29.37.0': 'Any Purpose',
    '1.3.6.1.4.1.311.2.6.1': 'SpcRelaxedPEMarkerCheck',
    '1.3.6.1.4.1.311.2.6.2': 'SpcEncryptedDigestRetryCount',
    '1.3.6.1.4.1.311.10.3.1': 'Microsoft Trust List Signing',
    '1.3.6.1.4.1.311.10.3.2': 'Microsoft Time Stamping',
    '1.3.6.1.4.1.311.10.3.4': 'Encrypting File System',
    '1.3.6.1.4.1.311.10.3.4.1': 'File Recovery',
    '1.3.6.1.4.1.311.10.3.5': 'Windows Hardware Driver Verification',
    '1.3.6.1.4.1.311.10.3.6': 'Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.7': 'OEM Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.8': 'Embedded Windows System Component Verification',
    '1.3.6.1.4.1.311.10.3.9': 'Root List Signer',
    '1.3.6.1.4.1.311.10.3.10': 'Qualified Subordination',
    '1.3.6.1.4.1.311.10.3.11': 'Key Recovery',
    '1.3.6.1.4.1.311.10.3.12': 'Document Signing',
    '1.3.6.1.4.1.311.10.3.13': 'Lifetime Signing',
    '1.3.6.1.4.1.311.10.5.1': 'Digital Rights',
    '1.3.6.1.4.1.311.10.6.1': 'Key Pack Licenses',
    '1.3.6.1.4.1.311.10.6.2': 'License Server Verification',
    '1.3.6.1.4.1.311.10.12.1': 'Any Application Policy',
    '1.3.6.1.4.1.311.20.1': 'CTL Usage',
    '1.3.6.1.4.1.311.20.2.1': 'Certificate Request Agent',
    '1.3.6.1.4.1.311.20.2.2': 'Smart Card Logon',
    '1.3.6.1.4.1.311.21.5': 'Private Key Archival',
    '1.3.6.1.4.1.311.21.6': 'Key Recovery Agent',
    '1.3.6.1.4.1.311.21.19': 'Directory Service Email Replication',
    '1.3.6.1.4.1.311.21.32': 'Attestation Identity Key Certificate',
    '1.3.6.1.4.1.311.21.36': 'Endorsement Key Certificate',
    '1.3.6.1.4.1.311.61.1.1': 'Kernel Mode Code Signing',
    '1.3.6.1.4.1.311.64.1.1': 'Domain Name System (DNS) Server Trust',
    '1.3.6.1.4.1.311.80.1': 'Document Encryption',
    '1.3.6.1.4.1.311.54.1.2': 'Remote Desktop Authentication',
    '1.3.6.1.4.1.311.21.8.1.1': 'Platform Certificate',
    '2.23.133.8.1': 'Endorsement Key Certificate',
    '2.23.133.8.2': 'Platform Certificate',
    '2.23.133.8.3': 'Attestation Identity Key Certificate',
    '1.3.6.1.4.1.311.25.2': 'NTDS CA Security',
    # certificate policies
    '2.5.29.32.0': 'All issuance policies',
    '1.3.6.1.4.1.311.21.8.7.2': 'Assurance: low (key attestation, EK trust on use)',
    # extensions (pKICriticalExtensions)
    '2.5.29.14': 'Subject Key Identifier',
    '2.5.29.15': 'Key Usage',
    '2.5.29.17': 'Subject Alternative Name',
    '2.5.29.19': 'Basic Constraints',
    '2.5.29.30': 'Name Constraints',
    '2.5.29.31': 'CRL Distribution Points',
    '2.5.29.32': 'Certificate Policies',
    '2.5.29.35': 'Authority Key Identifier',
    '2.5.29.36': 'Policy Constraints',
    '2.5.29.37': 'Extended Key Usage',
    '1.3.6.1.5.5.7.1.1': 'Authority Information Access',
    '1.3.6.1.4.1.311.20.2': 'Certificate Template Name',
    '1.3.6.1.4.1.311.21.7': 'Certificate Template Information',
    '1.3.6.1.4.1.311.21.10': 'Application Policies',
    '1.3.6.1.4.1.311.21.11': 'Application Policy Mappings',
    '1.3.6.1.4.1.311.21.12': 'Application Policy Constraints',
    '1.2.840.113549.1.9.15': 'S/MIME Capabilities',
}

# Attributes of pKICertificateTemplate read from AD (MS-CRTD section 2 plus the naming attributes).
TEMPLATE_ATTRIBUTES = [
    'cn', 'name', 'displayName', 'distinguishedName', 'objectGUID', 'whenCreated', 'whenChanged',
    'flags', 'revision', 'pKIDefaultKeySpec', 'pKIMaxIssuingDepth', 'pKICriticalExtensions', 'pKIDefaultCSPs',
    'pKIExpirationPeriod', 'pKIOverlapPeriod', 'pKIExtendedKeyUsage', 'pKIKeyUsage',
    'msPKI-Template-Schema-Version', 'msPKI-Template-Minor-Revision', 'msPKI-Cert-Template-OID',
    'msPKI-Enrollment-Flag', 'msPKI-Private-Key-Flag', 'msPKI-Certificate-Name-Flag', 'msPKI-Minimal-Key-Size',
    'msPKI-RA-Signature', 'msPKI-RA-Policies', 'msPKI-RA-Application-Policies', 'msPKI-Certificate-Policy',
    'msPKI-Certificate-Application-Policy', 'msPKI-Supersede-Templates', 'nTSecurityDescriptor',
]

_FILETIME_UNITS_PER_SECOND = 10 ** 7
_SECONDS_PER_DAY = 86400


class TemplateDecodeError(AdcsError, ValueError):
    """A template attribute does not have the format MS-CRTD specifies."""


# ---------------------------------------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------------------------------------

def to_uint32(value):
    """LDAP INTEGER attributes are signed 32-bit (0x80000000 comes back negative): return the unsigned value."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode('ascii')
    return int(value) & 0xFFFFFFFF


def decode_flags(value, table):
    """Return the list of flag names set in ``value``; bits not in ``table`` are listed as ``0x........``."""
    value = to_uint32(value) or 0
    names = []
    known = 0
    for bit, name in table:
        known |= bit
        if value & bit:
            names.append(name)
    unknown = value & ~known & 0xFFFFFFFF
    bit = 1
    while unknown:
        if unknown & bit:
            names.append('0x%08x' % bit)
            unknown &= ~bit
        bit <<= 1
    return names


def decode_private_key_flag(value):
    """msPKI-Private-Key-Flag: flag names plus the attestation field and the server/client version fields."""
    value = to_uint32(value) or 0
    versions = (PRIVATE_KEY_SERVER_VERSION_MASK | PRIVATE_KEY_CLIENT_VERSION_MASK)
    names = decode_flags(value & ~versions & 0xFFFFFFFF, PRIVATE_KEY_FLAGS)
    attest = value & PRIVATE_KEY_ATTEST_MASK
    if attest == 0:
        attestation = 'none'
    elif attest == 0x1000:
        attestation = 'preferred'
    else:
        attestation = 'required'
    return {
        'flags': names,
        'attestation': attestation,
        'server_version': (value & PRIVATE_KEY_SERVER_VERSION_MASK) >> PRIVATE_KEY_SERVER_VERSION_SHIFT,
        'client_version': (value & PRIVATE_KEY_CLIENT_VERSION_MASK) >> PRIVATE_KEY_CLIENT_VERSION_SHIFT,
    }


def oid_name(oid):
    return OID_NAMES.get(oid, oid)


def describe_oids(oids, extra_names=None):
    """List of {oid, name} for OIDs, using ``extra_names`` (e.g. msPKI-Enterprise-Oid display names) first."""
    result = []
    for oid in oids or []:
        oid = _text(oid)
        name = None
        if extra_names:
            name = extra_names.get(oid)
        result.append({'oid': oid, 'name': name or OID_NAMES.get(oid, oid)})
    return result


def _text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8')
    return value


# ---------------------------------------------------------------------------------------------------------
# Periods (pKIExpirationPeriod / pKIOverlapPeriod, MS-CRTD 2.11 / 2.12)
# ---------------------------------------------------------------------------------------------------------

def period_to_seconds(raw):
    """Decode an 8-byte little-endian FILETIME interval (stored negative, in 100 ns units) to seconds."""
    if raw is None:
        return None
    raw = bytes(raw)
    if len(raw) != 8:
        raise TemplateDecodeError('period must be 8 bytes, got %d' % len(raw))
    units = struct.unpack('<q', raw)[0]
    return abs(units) // _FILETIME_UNITS_PER_SECOND


def encode_period(days=0, hours=0, seconds=0):
    """Encode a period as Windows stores it (negative 100 ns count, 8 bytes little-endian)."""
    total = (days * _SECONDS_PER_DAY + hours * 3600 + seconds) * _FILETIME_UNITS_PER_SECOND
    return struct.pack('<q', -total)


def period_text(seconds):
    """Render a period like the Certificate Templates console: '1 year', '6 weeks', '2 days', '8 hours'."""
    if seconds is None:
        return None
    units = (
        ('year', 365 * _SECONDS_PER_DAY),
        ('month', 30 * _SECONDS_PER_DAY),
        ('week', 7 * _SECONDS_PER_DAY),
        ('day', _SECONDS_PER_DAY),
        ('hour', 3600),
        ('minute', 60),
        ('second', 1),
    )
    if seconds == 0:
        return '0 seconds'
    for name, size in units:
        if seconds % size == 0:
            count = seconds // size
            return '%d %s%s' % (count, name, '' if count == 1 else 's')
    return '%d seconds' % seconds  # pragma: no cover - unreachable, 'second' always divides


def decode_period(raw):
    """Return {'days': float|int, 'seconds': int, 'text': str} for a period attribute, or None when absent."""
    seconds = period_to_seconds(raw)
    if seconds is None:
        return None
    if seconds % _SECONDS_PER_DAY == 0:
        days = seconds // _SECONDS_PER_DAY
    else:
        days = round(seconds / float(_SECONDS_PER_DAY), 4)
    return {'days': days, 'seconds': seconds, 'text': period_text(seconds)}


# ---------------------------------------------------------------------------------------------------------
# Other attributes
# ---------------------------------------------------------------------------------------------------------

def decode_key_usage(raw):
    """pKIKeyUsage (octet string, 1 or 2 bytes) -> list of key usage names."""
    if raw is None:
        return None
    raw = bytes(raw)
    names = []
    for index, mask, name in KEY_USAGE_BITS:
        if index < len(raw) and raw[index] & mask:
            names.append(name)
    return names


def decode_csps(values):
    """pKIDefaultCSPs values 'priority,name' -> list of {priority, name} sorted by priority."""
    result = []
    for value in values or []:
        value = _text(value)
        priority, sep, name = value.partition(',')
        if sep and priority.strip().isdigit():
            result.append({'priority': int(priority), 'name': name})
        else:
            result.append({'priority': None, 'name': value})
    result.sort(key=lambda item: (item['priority'] is None, item['priority'] or 0))
    return result


RA_APPLICATION_POLICY_PROPERTIES = {
    'msPKI-RA-Application-Policies': 'ra_application_policies',
    'msPKI-Asymmetric-Algorithm': 'asymmetric_algorithm',
    'msPKI-Key-Security-Descriptor': 'key_security_descriptor',
    'msPKI-Key-Usage': 'key_usage_property',
    'msPKI-Symmetric-Algorithm': 'symmetric_algorithm',
    'msPKI-Symmetric-Key-Length': 'symmetric_key_length',
    'msPKI-Hash-Algorithm': 'hash_algorithm',
}


def decode_ra_application_policies(values, schema_version, private_key_flag):
    """msPKI-RA-Application-Policies (MS-CRTD 2.23).

    Returns (oids, properties): for schema version 1/2 templates, or version 4 with CT_FLAG_USE_LEGACY_PROVIDER,
    the values are application policy OIDs (2.23.1); for version 3, or 4 without the legacy-provider flag, the
    single value is a list of ``Name`Type`Value`` triplets (2.23.2).
    """
    values = [_text(v) for v in (values or [])]
    legacy = bool((to_uint32(private_key_flag) or 0) & 0x100)
    triplet_syntax = (schema_version or 0) >= 3 and not (schema_version == 4 and legacy)
    if not triplet_syntax or not any('`' in v for v in values):
        return [v for v in values if v], {}
    oids = []
    properties = {}
    for value in values:
        parts = value.split('`')
        if parts and parts[-1] == '':
            parts = parts[:-1]
        if len(parts) % 3:
            raise TemplateDecodeError('msPKI-RA-Application-Policies: %r is not a list of name`type`value triplets' % value)
        for i in range(0, len(parts), 3):
            name, kind, raw = parts[i], parts[i + 1], parts[i + 2]
            if kind == 'DWORD':
                try:
                    parsed = int(raw)
                except ValueError:
                    raise TemplateDecodeError('msPKI-RA-Application-Policies: %s is not a DWORD: %r' % (name, raw))
            else:
                parsed = raw
            if name == 'msPKI-RA-Application-Policies':
                oids.extend([o.strip() for o in raw.split(',') if o.strip()])
            key = RA_APPLICATION_POLICY_PROPERTIES.get(name, name)
            properties[key] = parsed
    return oids, properties


def _single(attrs, name):
    value = attrs.get(name)
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _multi(attrs, name):
    value = attrs.get(name)
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _int(attrs, name):
    value = _single(attrs, name)
    if value is None or value == b'' or value == '':
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode('ascii')
    return int(value)


def raw_value(value):
    """JSON-safe form of a raw LDAP value: text stays text, binary becomes base64."""
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode('utf-8')
        except UnicodeDecodeError:
            return {'base64': base64.b64encode(bytes(value)).decode('ascii')}
        if all(c.isprintable() or c in '\r\n\t' for c in text):
            return text
        return {'base64': base64.b64encode(bytes(value)).decode('ascii')}
    return value


BINARY_ATTRIBUTES = ('pKIExpirationPeriod', 'pKIOverlapPeriod', 'pKIKeyUsage', 'objectGUID', 'nTSecurityDescriptor')


def raw_attributes(attrs):
    result = {}
    for name, values in attrs.items():
        values = values if isinstance(values, (list, tuple)) else [values]
        if name in BINARY_ATTRIBUTES:
            result[name] = [{'base64': base64.b64encode(bytes(v)).decode('ascii')} if isinstance(v, (bytes, bytearray)) else v for v in values]
        else:
            result[name] = [raw_value(v) for v in values]
    return result


def decode_template(attrs, oid_names=None):
    """Decode a pKICertificateTemplate entry.

    ``attrs`` maps LDAP attribute names (case as in TEMPLATE_ATTRIBUTES) to lists of raw values (bytes).
    ``oid_names`` optionally maps OIDs to display names read from msPKI-Enterprise-Oid objects.
    """
    schema_version = _int(attrs, 'msPKI-Template-Schema-Version') or 1
    general = to_uint32(_int(attrs, 'flags'))
    enrollment = to_uint32(_int(attrs, 'msPKI-Enrollment-Flag'))
    name_flag = to_uint32(_int(attrs, 'msPKI-Certificate-Name-Flag'))
    pk_flag = to_uint32(_int(attrs, 'msPKI-Private-Key-Flag'))
    private_key = decode_private_key_flag(pk_flag)
    key_spec = _int(attrs, 'pKIDefaultKeySpec')
    ra_oids, ra_properties = decode_ra_application_policies(
        _multi(attrs, 'msPKI-RA-Application-Policies'), schema_version, pk_flag)
    name = _text(_single(attrs, 'cn') or _single(attrs, 'name'))
    template_oid = _text(_single(attrs, 'msPKI-Cert-Template-OID'))
    guid = _single(attrs, 'objectGUID')
    if isinstance(guid, (bytes, bytearray)) and len(guid) == 16:
        guid = str(uuid.UUID(bytes_le=bytes(guid)))
    result = {
        'name': name,
        'display_name': _text(_single(attrs, 'displayName')) or name,
        'distinguished_name': _text(_single(attrs, 'distinguishedName')),
        'object_guid': _text(guid) if guid is not None else None,
        'schema_version': schema_version,
        'oid': template_oid,
        'oid_name': (oid_names or {}).get(template_oid) if template_oid else None,
        'revision': _int(attrs, 'revision'),
        'minor_revision': _int(attrs, 'msPKI-Template-Minor-Revision'),
        'validity_period': decode_period(_single(attrs, 'pKIExpirationPeriod')),
        'renewal_period': decode_period(_single(attrs, 'pKIOverlapPeriod')),
        'flags': {'value': general or 0, 'names': decode_flags(general, GENERAL_FLAGS)},
        'enrollment_flag': {'value': enrollment or 0, 'names': decode_flags(enrollment, ENROLLMENT_FLAGS)},
        'certificate_name_flag': {'value': name_flag or 0, 'names': decode_flags(name_flag, NAME_FLAGS)},
        'private_key_flag': dict(private_key, value=pk_flag or 0, names=private_key['flags']),
        'key_usage': decode_key_usage(_single(attrs, 'pKIKeyUsage')),
        'extended_key_usage': describe_oids(_multi(attrs, 'pKIExtendedKeyUsage'), oid_names),
        'application_policies': describe_oids(_multi(attrs, 'msPKI-Certificate-Application-Policy'), oid_names),
        'issuance_policies': describe_oids(_multi(attrs, 'msPKI-Certificate-Policy'), oid_names),
        'minimum_key_size': _int(attrs, 'msPKI-Minimal-Key-Size'),
        'key_spec': KEY_SPECS.get(key_spec, key_spec) if key_spec is not None else None,
        'max_issuing_depth': _int(attrs, 'pKIMaxIssuingDepth'),
        'ra_signatures': _int(attrs, 'msPKI-RA-Signature') or 0,
        'ra_issuance_policies': describe_oids(_multi(attrs, 'msPKI-RA-Policies'), oid_names),
        'ra_application_policies': describe_oids(ra_oids, oid_names),
        'ra_application_policy_properties': ra_properties,
        'superseded_templates': [_text(v) for v in _multi(attrs, 'msPKI-Supersede-Templates')],
        'csps': decode_csps(_multi(attrs, 'pKIDefaultCSPs')),
        'critical_extensions': describe_oids(_multi(attrs, 'pKICriticalExtensions'), oid_names),
    }
    del result['private_key_flag']['flags']
    result['requirements'] = template_requirements(result)
    return result


def template_requirements(decoded):
    """What a request for this template must carry and what the CA builds itself (MS-WCCE 3.2.2.6.2.1.4.5)."""
    names = set(decoded['certificate_name_flag']['names'])
    enrollment = set(decoded['enrollment_flag']['names'])
    private_key = set(decoded['private_key_flag']['names'])
    general = set(decoded['flags']['names'])
    supplies_subject = 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT' in names
    supplies_san = 'CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME' in names
    subject_from_ad = []
    if not supplies_subject:
        for flag, label in (('CT_FLAG_SUBJECT_REQUIRE_DIRECTORY_PATH', 'directory_path'),
                            ('CT_FLAG_SUBJECT_REQUIRE_COMMON_NAME', 'common_name'),
                            ('CT_FLAG_SUBJECT_REQUIRE_DNS_AS_CN', 'dns_as_cn'),
                            ('CT_FLAG_SUBJECT_REQUIRE_EMAIL', 'email')):
            if flag in names:
                subject_from_ad.append(label)
    san_from_ad = []
    for flag, label in (('CT_FLAG_SUBJECT_ALT_REQUIRE_DNS', 'dns'),
                        ('CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS', 'domain_dns'),
                        ('CT_FLAG_SUBJECT_ALT_REQUIRE_UPN', 'upn'),
                        ('CT_FLAG_SUBJECT_ALT_REQUIRE_EMAIL', 'email'),
                        ('CT_FLAG_SUBJECT_ALT_REQUIRE_SPN', 'spn'),
                        ('CT_FLAG_SUBJECT_ALT_REQUIRE_DIRECTORY_GUID', 'directory_guid')):
        if flag in names and not supplies_subject:
            san_from_ad.append(label)
    ra = decoded.get('ra_signatures') or 0
    props = decoded.get('ra_application_policy_properties') or {}
    notes = []
    if supplies_subject:
        notes.append('the request must carry the subject (and any subjectAltName); the CA takes them from the request')
    else:
        notes.append('the CA builds the subject%s from the requester\'s AD object; subject names in the request are ignored'
                     % (' and subjectAltName' if san_from_ad else ''))
    if 'CT_FLAG_PEND_ALL_REQUESTS' in enrollment:
        notes.append('requests stay pending until a CA manager approves them')
    if ra:
        notes.append('the request must be signed by %d enrollment agent(s) (RA signatures)' % ra)
    if 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL' in private_key:
        notes.append('the private key must be archived: send a CMC key archival request encrypted to the CA exchange certificate')
    if 'CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS' in enrollment:
        notes.append('the request should carry the S/MIME capabilities extension')
    if decoded.get('minimum_key_size'):
        notes.append('the key must be at least %d bits' % decoded['minimum_key_size'])
    if 'CT_FLAG_MACHINE_TYPE' in general:
        notes.append('machine template: request as the computer account')
    return {
        'enrollee_supplies_subject': supplies_subject,
        'enrollee_supplies_subject_alt_name': supplies_san,
        'subject_from_ad': subject_from_ad,
        'subject_alt_names_from_ad': san_from_ad,
        'manager_approval': 'CT_FLAG_PEND_ALL_REQUESTS' in enrollment,
        'ra_signatures': ra,
        'ra_issuance_policies': [p['oid'] for p in decoded.get('ra_issuance_policies') or []],
        'ra_application_policies': [p['oid'] for p in decoded.get('ra_application_policies') or []],
        'minimum_key_size': decoded.get('minimum_key_size'),
        'key_spec': decoded.get('key_spec'),
        'key_archival': 'CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL' in private_key,
        'smime': 'CT_FLAG_INCLUDE_SYMMETRIC_ALGORITHMS' in enrollment,
        'exportable_key': 'CT_FLAG_EXPORTABLE_KEY' in private_key,
        'strong_key_protection': 'CT_FLAG_STRONG_KEY_PROTECTION_REQUIRED' in private_key,
        'same_key_renewal': 'CT_FLAG_REQUIRE_SAME_KEY_RENEWAL' in private_key,
        'alternate_signature_algorithm': 'CT_FLAG_REQUIRE_ALTERNATE_SIGNATURE_ALGORITHM' in private_key,
        'key_attestation': decoded['private_key_flag']['attestation'],
        'asymmetric_algorithm': props.get('asymmetric_algorithm'),
        'hash_algorithm': props.get('hash_algorithm'),
        'machine': 'CT_FLAG_MACHINE_TYPE' in general,
        'ca_certificate': 'CT_FLAG_IS_CA' in general or 'CT_FLAG_IS_CROSS_CA' in general,
        'request_attribute': 'CertificateTemplate:%s' % decoded['name'] if decoded.get('name') else None,
        'notes': notes,
    }


def template_matches(decoded, wanted):
    """True if ``wanted`` (case-insensitive) is the template's name, display name or OID."""
    wanted = wanted.strip().lower()
    for candidate in (decoded.get('name'), decoded.get('display_name'), decoded.get('oid')):
        if candidate and candidate.lower() == wanted:
            return True
    return False
