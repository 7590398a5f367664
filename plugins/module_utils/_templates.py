# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Template decoding: one job, turning the raw attributes of a certificate template object
(pKICertificateTemplate, MS-CRTD) into plain data: flag names, periods, key usages, OIDs with names, RA
requirements, CSPs, what a request must carry, the raw values. The flag and OID tables are ``_template_flags``.

Pure Python, no third-party imports: every function takes the raw LDAP values (bytes or str, lists for
multi-valued attributes) and returns plain data structures that can go into module results.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import struct
import uuid

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError
from ansible_collections.adcs.enrollment.plugins.module_utils._template_flags import (
    ASYMMETRIC_ALGORITHMS, NCRYPT_ALLOW_ALL_USAGES, NCRYPT_KEY_USAGES, PRIVATE_KEY_USE_LEGACY_PROVIDER,
    ENROLLMENT_FLAGS, GENERAL_FLAGS, KEY_SPECS, KEY_USAGE_BITS, NAME_FLAGS, OID_NAMES, PRIVATE_KEY_ATTEST_MASK,
    PRIVATE_KEY_CLIENT_VERSION_MASK, PRIVATE_KEY_CLIENT_VERSION_SHIFT, PRIVATE_KEY_FLAGS, PRIVATE_KEY_SERVER_VERSION_MASK,
    PRIVATE_KEY_SERVER_VERSION_SHIFT,
)

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


def cng_template(schema_version, private_key_flag):
    """A CNG template: schema version 3, or 4 without CT_FLAG_USE_LEGACY_PROVIDER (MS-CRTD 2.23.2); its key
    algorithm is the msPKI-Asymmetric-Algorithm property, not the CSPs (MS-WCCE 3.1.2.4.2.2.2.2)."""
    legacy = bool((to_uint32(private_key_flag) or 0) & PRIVATE_KEY_USE_LEGACY_PROVIDER)
    return (schema_version or 0) >= 3 and not (schema_version == 4 and legacy)


def decode_ncrypt_key_usage(value):
    """msPKI-Key-Usage (NCRYPT_ALLOW_*_FLAG) -> list of usage names ('all' for NCRYPT_ALLOW_ALL_USAGES)."""
    if value is None:
        return None
    value = to_uint32(value)
    if value & NCRYPT_ALLOW_ALL_USAGES == NCRYPT_ALLOW_ALL_USAGES:
        return ['all']
    return [name for bit, name in NCRYPT_KEY_USAGES if value & bit] + \
        ['0x%x' % (value & ~0x7)] * bool(value & ~0x7)


def key_rule(decoded):
    """The key a request for the template must have (one facts schema, ``requirements.key``): ``template``,
    ``provider`` (cng: schema v3/v4 whose algorithm is msPKI-Asymmetric-Algorithm; legacy: the CSPs, and the CA
    compares any key's bit length with the minimum), ``algorithm``, ``key_type`` (rsa, ecdsa or None: any / not one
    this collection makes), ``curve``, ``minimum_size`` (msPKI-Minimal-Key-Size), ``hash_algorithm``
    (msPKI-Hash-Algorithm, lower case), ``key_usage`` (msPKI-Key-Usage names) and ``providers`` (pKIDefaultCSPs)."""
    props = decoded.get('ra_application_policy_properties') or {}
    cng = cng_template(decoded.get('schema_version'), (decoded.get('private_key_flag') or {}).get('value'))
    algorithm = props.get('asymmetric_algorithm') if cng else None
    algorithm = str(algorithm).upper() if algorithm else None
    key_type, curve, _words = ASYMMETRIC_ALGORITHMS.get(algorithm, (None, None, None)) if algorithm else \
        (None, None, None)
    hash_name = props.get('hash_algorithm') if cng else None
    return {
        'template': decoded.get('name'),
        'provider': 'cng' if cng else 'legacy',
        'algorithm': algorithm,
        'key_type': key_type,
        'curve': curve,
        'minimum_size': decoded.get('minimum_key_size'),
        'hash_algorithm': str(hash_name).lower().replace('-', '') if hash_name else None,
        'key_usage': decode_ncrypt_key_usage(props.get('key_usage_property')) if cng else None,
        'providers': [csp['name'] for csp in decoded.get('csps') or []],
    }


def decode_ra_application_policies(values, schema_version, private_key_flag):
    """msPKI-RA-Application-Policies (MS-CRTD 2.23).

    Returns (oids, properties): for schema version 1/2 templates, or version 4 with CT_FLAG_USE_LEGACY_PROVIDER,
    the values are application policy OIDs (2.23.1); for version 3, or 4 without the legacy-provider flag, the
    single value is a list of ``Name`Type`Value`` triplets (2.23.2).
    """
    values = [_text(v) for v in (values or [])]
    if not cng_template(schema_version, private_key_flag) or not any('`' in v for v in values):
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
    key = key_rule(decoded)
    if key['algorithm']:
        notes.append('the key must be %s (msPKI-Asymmetric-Algorithm %s)%s' % (
            ASYMMETRIC_ALGORITHMS.get(key['algorithm'], (None, None, 'a %s key' % key['algorithm']))[2],
            key['algorithm'], ' of at least %d bits' % key['minimum_size']
            if key['key_type'] == 'rsa' and key['minimum_size'] else ''))
    elif decoded.get('minimum_key_size'):
        notes.append('the key must be at least %d bits' % decoded['minimum_key_size'])
    if key['hash_algorithm']:
        notes.append('the request is signed with %s (msPKI-Hash-Algorithm)' % key['hash_algorithm'].upper())
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
        'key': key,
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
