# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL validation: one job, deciding whether a CRL may be used, and what it says about a certificate.

- parsing (PEM, DER, base64 DER as some web servers publish it) of CRLs and certificates (also PKCS#7 bundles
  such as ``.p7c`` AIA files)
- validation against the issuing CA certificate (RFC 5280 6.3.3): issuer name, authority key identifier, the CA's
  cRLSign key usage, the signature, unknown critical extensions, thisUpdate/nextUpdate freshness
- delta CRLs (RFC 5280 5.2.4): the delta CRL indicator names the base CRL number it builds on; a complete CRL can be
  combined with it when ``delta.base_crl_number <= base.crl_number < delta.crl_number`` and both come from the same
  issuer
- the revocation status of a certificate against base + delta (``removeFromCRL`` in a delta lifts a
  certificateHold of the base)
- the URLs a certificate or CRL points to: CRL distribution points, freshest CRL, AIA caIssuers

cryptography is an optional import: callers check HAS_CRYPTOGRAPHY and report ``missing_required_lib``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import re
import traceback

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

DEFAULT_CLOCK_SKEW = datetime.timedelta(minutes=5)

# RFC 5280 5.3.1 CRLReason codes (7 is not used)
REASON_CODES = {
    'unspecified': 0, 'keyCompromise': 1, 'cACompromise': 2, 'affiliationChanged': 3, 'superseded': 4,
    'cessationOfOperation': 5, 'certificateHold': 6, 'removeFromCRL': 8, 'privilegeWithdrawn': 9,
    'aACompromise': 10,
}

_PEM_CRL = re.compile(br'-----BEGIN X509 CRL-----(.+?)-----END X509 CRL-----', re.S)
_PEM_CERT = re.compile(br'-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----', re.S)
_B64 = re.compile(br'^[A-Za-z0-9+/=\s]+$')


class CrlError(AdcsError):
    """A CRL that cannot be used (unparseable, wrong issuer, bad signature, stale, ...); message for the user."""


class CrlStale(CrlError):
    """The CRL's nextUpdate has passed (or its thisUpdate lies in the future)."""


def _require():
    if not HAS_CRYPTOGRAPHY:
        raise CrlError('the Python library cryptography is required')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _aware(value):
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def _iso(value):
    return _aware(value).strftime('%Y-%m-%dT%H:%M:%SZ') if value is not None else None


def this_update(crl):
    return _aware(getattr(crl, 'last_update_utc', None) or crl.last_update)


def next_update(crl):
    value = getattr(crl, 'next_update_utc', None)
    if value is None:
        value = crl.next_update
    return _aware(value)


def _revocation_date(entry):
    return _aware(getattr(entry, 'revocation_date_utc', None) or entry.revocation_date)


# ---------------------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------------------
def _maybe_base64(data):
    stripped = data.strip()
    if stripped and _B64.match(stripped):
        try:
            return base64.b64decode(b''.join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def load_crl(data):
    """A cryptography CRL from PEM, DER or base64 DER bytes; CrlError when it is none of them."""
    _require()
    if isinstance(data, str):
        data = data.encode('ascii', 'replace')
    data = bytes(data or b'')
    if not data.strip():
        raise CrlError('empty CRL')
    candidates = []
    match = _PEM_CRL.search(data)
    if match:
        candidates.append(('pem', match.group(0)))
    else:
        candidates.append(('der', data))
        decoded = _maybe_base64(data)
        if decoded:
            candidates.append(('der', decoded))
    last = None
    for kind, blob in candidates:
        try:
            if kind == 'pem':
                return x509.load_pem_x509_crl(blob)
            return x509.load_der_x509_crl(blob)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            last = exc
    raise CrlError('not a CRL (PEM or DER): %s' % (last or 'unknown format'))


def load_certificates(data):
    """Certificates from PEM (one or more), DER, base64 DER or a PKCS#7 bundle (DER/PEM)."""
    _require()
    if isinstance(data, str):
        data = data.encode('ascii', 'replace')
    data = bytes(data or b'')
    if not data.strip():
        raise CrlError('empty certificate data')
    if _PEM_CERT.search(data):
        try:
            return [x509.load_pem_x509_certificate(m.group(0)) for m in _PEM_CERT.finditer(data)]
        except ValueError as exc:
            raise CrlError('invalid PEM certificate: %s' % exc)
    if b'-----BEGIN PKCS7-----' in data:
        try:
            return list(pkcs7.load_pem_pkcs7_certificates(data))
        except ValueError as exc:
            raise CrlError('invalid PKCS#7 bundle: %s' % exc)
    blobs = [data]
    decoded = _maybe_base64(data)
    if decoded:
        blobs.append(decoded)
    for blob in blobs:
        try:
            return [x509.load_der_x509_certificate(blob)]
        except ValueError:
            pass
        try:
            return list(pkcs7.load_der_pkcs7_certificates(blob))
        except ValueError:
            pass
    raise CrlError('not a certificate (PEM, DER or PKCS#7)')


def load_certificate(data):
    certs = load_certificates(data)
    if not certs:
        raise CrlError('no certificate found')
    return certs[0]


def encode_crl(crl, fmt='pem'):
    enc = serialization.Encoding.PEM if fmt == 'pem' else serialization.Encoding.DER
    return crl.public_bytes(enc)


# ---------------------------------------------------------------------------------------------------------------
# facts
# ---------------------------------------------------------------------------------------------------------------
def _ext(obj, oid):
    try:
        return obj.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def crl_number(crl):
    ext = _ext(crl, ExtensionOID.CRL_NUMBER)
    return int(ext.value.crl_number) if ext is not None else None


def delta_base_number(crl):
    """The BaseCRLNumber of the delta CRL indicator, or None for a complete CRL."""
    ext = _ext(crl, ExtensionOID.DELTA_CRL_INDICATOR)
    return int(ext.value.crl_number) if ext is not None else None


def is_delta(crl):
    return delta_base_number(crl) is not None


def _uris(general_names):
    out = []
    for name in general_names or []:
        if isinstance(name, x509.UniformResourceIdentifier):
            out.append(name.value)
    return out


def distribution_point_urls(obj, oid=None):
    """URLs of the full names of the CRL distribution points (or, with the freshest-CRL OID, of FreshestCRL)."""
    ext = _ext(obj, oid or ExtensionOID.CRL_DISTRIBUTION_POINTS)
    urls = []
    if ext is None:
        return urls
    for point in ext.value:
        for url in _uris(point.full_name):
            if url not in urls:
                urls.append(url)
    return urls


def cdp_urls(cert):
    return distribution_point_urls(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)


def freshest_urls(obj):
    """Freshest CRL (delta CRL) pointers of a certificate or a base CRL."""
    return distribution_point_urls(obj, ExtensionOID.FRESHEST_CRL)


def ca_issuers_urls(cert):
    ext = _ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    urls = []
    if ext is None:
        return urls
    for desc in ext.value:
        if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS and \
                isinstance(desc.access_location, x509.UniformResourceIdentifier):
            urls.append(desc.access_location.value)
    return urls


def _key_id(obj, oid):
    ext = _ext(obj, oid)
    if ext is None:
        return None
    if oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER:
        return ext.value.digest
    return ext.value.key_identifier


def reason_of(entry):
    try:
        ext = entry.extensions.get_extension_for_oid(x509.oid.CRLEntryExtensionOID.CRL_REASON)
    except x509.ExtensionNotFound:
        return None
    return ext.value.reason.value


def entry_facts(entry):
    reason = reason_of(entry)
    return {
        'serial_number': '%X' % entry.serial_number,
        'revocation_date': _iso(_revocation_date(entry)),
        'reason': reason,
        'reason_code': REASON_CODES.get(reason) if reason else None,
    }


def crl_facts(crl, include_entries=False):
    """What the module returns about a CRL."""
    entries = list(crl)
    facts = {
        'issuer': crl.issuer.rfc4514_string(),
        'crl_number': crl_number(crl),
        'this_update': _iso(this_update(crl)),
        'next_update': _iso(next_update(crl)),
        'revoked_count': len(entries),
        'is_delta': is_delta(crl),
        'base_crl_number': delta_base_number(crl),
        'freshest_crl_urls': freshest_urls(crl),
    }
    if include_entries:
        facts['entries'] = [entry_facts(e) for e in entries]
    return facts


# ---------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------
_KNOWN_CRITICAL = None


def _known_critical():
    global _KNOWN_CRITICAL
    if _KNOWN_CRITICAL is None:
        _KNOWN_CRITICAL = set([ExtensionOID.DELTA_CRL_INDICATOR, ExtensionOID.CRL_NUMBER,
                               ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.ISSUING_DISTRIBUTION_POINT])
    return _KNOWN_CRITICAL


def check_issuer(crl, issuer_cert):
    """The CRL names the certificate's subject as issuer, its AKI (if any) matches the SKI, and the key may sign
    CRLs. Raises CrlError."""
    if crl.issuer != issuer_cert.subject:
        raise CrlError('the CRL was issued by "%s", not by the CA certificate "%s"'
                       % (crl.issuer.rfc4514_string(), issuer_cert.subject.rfc4514_string()))
    aki = _key_id(crl, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ski = _key_id(issuer_cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if aki and ski and aki != ski:
        raise CrlError('the CRL authority key identifier %s does not match the CA certificate key %s '
                       '(CRL of another CA key, e.g. before a CA renewal)'
                       % (binascii.hexlify(aki).decode(), binascii.hexlify(ski).decode()))
    ku = _ext(issuer_cert, ExtensionOID.KEY_USAGE)
    if ku is not None and not ku.value.crl_sign:
        raise CrlError('the CA certificate "%s" lacks the cRLSign key usage' % issuer_cert.subject.rfc4514_string())


def check_signature(crl, issuer_cert):
    try:
        valid = crl.is_signature_valid(issuer_cert.public_key())
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CrlError('the CRL signature cannot be verified: %s' % exc)
    if not valid:
        raise CrlError('the CRL signature is invalid (not signed by "%s", or the CRL was altered)'
                       % issuer_cert.subject.rfc4514_string())


def check_critical_extensions(crl):
    known = _known_critical()
    for ext in crl.extensions:
        if ext.critical and ext.oid not in known:
            raise CrlError('the CRL carries an unsupported critical extension %s' % ext.oid.dotted_string)
    idp = _ext(crl, ExtensionOID.ISSUING_DISTRIBUTION_POINT)
    if idp is not None and (idp.value.indirect_crl or idp.value.only_some_reasons):
        raise CrlError('indirect CRLs and CRLs partitioned by reason are not supported')


def check_freshness(crl, now=None, clock_skew=DEFAULT_CLOCK_SKEW):
    """Raise CrlStale when nextUpdate passed (or is missing) or thisUpdate lies in the future."""
    now = _aware(now) or utcnow()
    tu, nu = this_update(crl), next_update(crl)
    if tu is not None and tu - clock_skew > now:
        raise CrlStale('the CRL thisUpdate %s lies in the future (clock skew?)' % _iso(tu))
    if nu is None:
        raise CrlStale('the CRL has no nextUpdate, its freshness cannot be judged')
    if nu + clock_skew < now:
        raise CrlStale('the CRL is stale: nextUpdate %s has passed (now %s)' % (_iso(nu), _iso(now)))


def validate_crl(crl, issuer_cert, now=None, freshness='fail', expect_delta=None, clock_skew=DEFAULT_CLOCK_SKEW):
    """Validate one CRL; returns a list of warnings (stale CRL with freshness=warn). Raises CrlError.

    ``expect_delta``: True when the CRL must be a delta CRL, False when it must be complete, None for either.
    """
    warnings = []
    if issuer_cert is None:
        raise CrlError('no issuing CA certificate to validate the CRL with')
    check_issuer(crl, issuer_cert)
    check_signature(crl, issuer_cert)
    check_critical_extensions(crl)
    delta = is_delta(crl)
    if expect_delta is True and not delta:
        raise CrlError('expected a delta CRL but got a complete CRL (no delta CRL indicator)')
    if expect_delta is False and delta:
        raise CrlError('expected a complete (base) CRL but got a delta CRL (base CRL number %s)'
                       % delta_base_number(crl))
    if delta:
        ext = _ext(crl, ExtensionOID.DELTA_CRL_INDICATOR)
        if not ext.critical:
            raise CrlError('the delta CRL indicator must be critical (RFC 5280 5.2.4)')
        if crl_number(crl) is None:
            raise CrlError('the delta CRL has no CRL number (RFC 5280 5.2.4)')
    if freshness != 'ignore':
        try:
            check_freshness(crl, now, clock_skew)
        except CrlStale as exc:
            if freshness == 'fail':
                raise
            warnings.append(str(exc))
    return warnings


def check_delta_against_base(delta, base):
    """RFC 5280 5.2.4: same issuer, base number >= delta's BaseCRLNumber and < the delta's CRL number."""
    base_number = crl_number(base)
    indicator = delta_base_number(delta)
    if indicator is None:
        raise CrlError('the delta CRL has no delta CRL indicator')
    if delta.issuer != base.issuer:
        raise CrlError('the delta CRL issuer "%s" differs from the base CRL issuer "%s"'
                       % (delta.issuer.rfc4514_string(), base.issuer.rfc4514_string()))
    if base_number is None:
        raise CrlError('the base CRL has no CRL number, a delta CRL cannot be applied to it')
    if base_number < indicator:
        raise CrlError('the delta CRL needs base CRL number %d or later, the base CRL is number %d (publish or '
                       'fetch a newer base CRL)' % (indicator, base_number))
    if crl_number(delta) <= base_number:
        raise CrlError('the delta CRL (number %d) is not newer than the base CRL (number %d)'
                       % (crl_number(delta), base_number))
    base_aki = _key_id(base, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    delta_aki = _key_id(delta, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if base_aki and delta_aki and base_aki != delta_aki:
        raise CrlError('the delta CRL and the base CRL were signed with different CA keys')


# ---------------------------------------------------------------------------------------------------------------
# revocation status
# ---------------------------------------------------------------------------------------------------------------
def revocation_status(cert, base, delta=None, issuer_cert=None):
    """Status of ``cert`` against the complete CRL ``base`` and an optional ``delta`` CRL.

    Returns {'serial_number', 'revoked', 'reason', 'reason_code', 'revocation_date', 'source', 'on_hold'}.
    """
    if cert.issuer != base.issuer:
        raise CrlError('the certificate was issued by "%s", the CRL by "%s": this CRL cannot tell its status'
                       % (cert.issuer.rfc4514_string(), base.issuer.rfc4514_string()))
    if issuer_cert is not None:
        cert_aki = _key_id(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        ski = _key_id(issuer_cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        if cert_aki and ski and cert_aki != ski:
            raise CrlError('the certificate was signed by another key of "%s" than the CRL (CA renewed with a '
                           'new key?)' % cert.issuer.rfc4514_string())
    serial = cert.serial_number
    status = {'serial_number': '%X' % serial, 'revoked': False, 'reason': None, 'reason_code': None,
              'revocation_date': None, 'source': None, 'on_hold': False}
    found = None
    if delta is not None:
        entry = delta.get_revoked_certificate_by_serial_number(serial)
        if entry is not None:
            found = ('delta', entry)
    if found is None:
        entry = base.get_revoked_certificate_by_serial_number(serial)
        if entry is not None:
            found = ('base', entry)
    if found is None:
        return status
    source, entry = found
    facts = entry_facts(entry)
    if facts['reason'] == 'removeFromCRL':
        # RFC 5280 5.3.1: the certificate is no longer on hold (only meaningful in a delta CRL)
        status.update(source=source, reason=facts['reason'], reason_code=facts['reason_code'],
                      revocation_date=facts['revocation_date'])
        return status
    status.update(revoked=True, reason=facts['reason'] or 'unspecified',
                  reason_code=facts['reason_code'] if facts['reason'] else 0,
                  revocation_date=facts['revocation_date'], source=source,
                  on_hold=facts['reason'] == 'certificateHold')
    return status


def check_not_rolled_back(existing, new, issuer_cert=None):
    """Refuse to replace a CRL with an older one (RFC 5280 5.2.3: CRL numbers only grow per issuer and key).

    CrlError when ``existing`` (the CRL already on disk) comes from the same issuer and key (authority key identifier)
    as ``new`` and has a higher CRL number. An existing CRL that ``issuer_cert`` (when given) did not sign is no
    evidence and never blocks an update.
    """
    if existing.issuer != new.issuer:
        return
    if _key_id(existing, ExtensionOID.AUTHORITY_KEY_IDENTIFIER) != _key_id(new, ExtensionOID.AUTHORITY_KEY_IDENTIFIER):
        return
    old_number, new_number = crl_number(existing), crl_number(new)
    if old_number is None or new_number is None or old_number <= new_number:
        return
    if issuer_cert is not None:
        try:
            check_signature(existing, issuer_cert)
        except CrlError:
            return
    raise CrlError('the fetched CRL (CRL number %d) is older than the one already there (CRL number %d, same issuer '
                   'and key)' % (new_number, old_number))


def _spki(cert):
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ca(cert):
    ext = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    return ext is not None and bool(ext.value.ca)


def trust_anchors(ca_bundle=None):
    """The CA certificates an issuer found through AIA must chain to: those of ``ca_bundle`` (PEM, DER or PKCS#7),
    else those of the system trust store's CA file. CrlError when ``ca_bundle`` cannot be read."""
    _require()
    if ca_bundle:
        try:
            with open(ca_bundle, 'rb') as handle:
                data = handle.read()
        except (IOError, OSError) as exc:
            raise CrlError('cannot read the CA bundle %s: %s' % (ca_bundle, exc.strerror or exc))
        try:
            return load_certificates(data)
        except CrlError as exc:
            raise CrlError('the CA bundle %s: %s' % (ca_bundle, exc))
    import ssl
    import warnings
    anchors = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')     # old roots with non-positive serial numbers: cryptography warns
        for der in ssl.create_default_context().get_ca_certs(binary_form=True):
            try:
                anchors.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
    return anchors


def check_anchored(cert, anchors):
    """An issuing CA certificate that came from the party being verified (AIA caIssuers) is used only when it is a
    trust anchor itself, or a CA certificate that one of them (a CA certificate) signed. Raises CrlError."""
    subject = cert.subject.rfc4514_string()
    for anchor in anchors:
        if anchor.subject == cert.subject and _spki(anchor) == _spki(cert):
            return
    if not _is_ca(cert):
        raise CrlError('"%s" is not a CA certificate' % subject)
    for anchor in anchors:
        if anchor.subject != cert.issuer or not _is_ca(anchor):
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except Exception:  # InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm
            continue
        return
    raise CrlError('the CA certificate "%s" is not trusted: it neither is nor was issued by a CA certificate of '
                   'ca_bundle (or, without ca_bundle, of the system trust store)' % subject)
