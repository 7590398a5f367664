# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL validation: one job, deciding whether a CRL (and the CA certificate it is checked with) may be used.

- parsing (PEM, DER, base64 DER as some web servers publish it) of CRLs, and the CRL number / delta indicator
- validation against the issuing CA certificate (RFC 5280 6.3.3): issuer name, authority key identifier, the CA's
  cRLSign key usage, the signature, unknown critical extensions, thisUpdate/nextUpdate freshness
- delta CRLs (RFC 5280 5.2.4): the delta CRL indicator names the base CRL number it builds on; a complete CRL can be
  combined with it when ``delta.base_crl_number <= base.crl_number < delta.crl_number`` and both come from the same
  issuer
- rollback: a CRL never replaces a newer one of the same issuer and key (RFC 5280 5.2.3)
- an issuing CA certificate from AIA (the party being verified) must be, or be issued by, a trust anchor

What a CRL says about a certificate is ``_revocation``; where CRLs come from is ``_crl_fetch`` and ``_crl_job``.

cryptography is an optional import (``_deps``): modules check it with ``_deps.check``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import datetime
import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._anchors import is_ca
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, CertificateError

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID

DEFAULT_CLOCK_SKEW = datetime.timedelta(minutes=5)

_PEM_CRL = re.compile(br'-----BEGIN X509 CRL-----(.+?)-----END X509 CRL-----', re.S)


class CrlError(AdcsError):
    """A CRL that cannot be used (unparseable, wrong issuer, bad signature, stale, ...); message for the user."""


class CrlStale(CrlError):
    """The CRL's nextUpdate has passed (or its thisUpdate lies in the future)."""


def _require():
    _deps.require('cryptography')


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def aware_utc(value):
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value


def iso_utc(value):
    return aware_utc(value).strftime('%Y-%m-%dT%H:%M:%SZ') if value is not None else None


def this_update(crl):
    return aware_utc(getattr(crl, 'last_update_utc', None) or crl.last_update)


def next_update(crl):
    value = getattr(crl, 'next_update_utc', None)
    if value is None:
        value = crl.next_update
    return aware_utc(value)


# ---------------------------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------------------------
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
        decoded = _x509.decode_base64(data)
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
    """Certificates from PEM (one or more), DER, base64 DER or a PKCS#7 bundle (DER/PEM): ``_x509.load_certificates``,
    its failure a CrlError."""
    _require()
    if not _x509.to_bytes(data).strip():
        raise CrlError('empty certificate data')
    try:
        return _x509.load_certificates(data, base64_der=True)
    except CertificateError as exc:
        raise CrlError('not a certificate (PEM, DER or PKCS#7): %s' % (exc.detail or exc.summary))


def load_certificate(data):
    certs = load_certificates(data)
    if not certs:
        raise CrlError('no certificate found')
    return certs[0]


# ---------------------------------------------------------------------------------------------------------------
# facts
# ---------------------------------------------------------------------------------------------------------------
def extension(obj, oid):
    try:
        return obj.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def crl_number(crl):
    ext = extension(crl, ExtensionOID.CRL_NUMBER)
    return int(ext.value.crl_number) if ext is not None else None


def delta_base_number(crl):
    """The BaseCRLNumber of the delta CRL indicator, or None for a complete CRL."""
    ext = extension(crl, ExtensionOID.DELTA_CRL_INDICATOR)
    return int(ext.value.crl_number) if ext is not None else None


def is_delta(crl):
    return delta_base_number(crl) is not None


def key_identifier(obj, oid):
    ext = extension(obj, oid)
    if ext is None:
        return None
    if oid == ExtensionOID.SUBJECT_KEY_IDENTIFIER:
        return ext.value.digest
    return ext.value.key_identifier


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
    aki = key_identifier(crl, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ski = key_identifier(issuer_cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if aki and ski and aki != ski:
        raise CrlError('the CRL authority key identifier %s does not match the CA certificate key %s '
                       '(CRL of another CA key, e.g. before a CA renewal)'
                       % (binascii.hexlify(aki).decode(), binascii.hexlify(ski).decode()))
    ku = extension(issuer_cert, ExtensionOID.KEY_USAGE)
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
    idp = extension(crl, ExtensionOID.ISSUING_DISTRIBUTION_POINT)
    if idp is not None and (idp.value.indirect_crl or idp.value.only_some_reasons):
        raise CrlError('indirect CRLs and CRLs partitioned by reason are not supported')


def check_freshness(crl, now=None, clock_skew=DEFAULT_CLOCK_SKEW):
    """Raise CrlStale when nextUpdate passed (or is missing) or thisUpdate lies in the future."""
    now = aware_utc(now) or utcnow()
    tu, nu = this_update(crl), next_update(crl)
    if tu is not None and tu - clock_skew > now:
        raise CrlStale('the CRL thisUpdate %s lies in the future (clock skew?)' % iso_utc(tu))
    if nu is None:
        raise CrlStale('the CRL has no nextUpdate, its freshness cannot be judged')
    if nu + clock_skew < now:
        raise CrlStale('the CRL is stale: nextUpdate %s has passed (now %s)' % (iso_utc(nu), iso_utc(now)))


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
        ext = extension(crl, ExtensionOID.DELTA_CRL_INDICATOR)
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
    base_aki = key_identifier(base, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    delta_aki = key_identifier(delta, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if base_aki and delta_aki and base_aki != delta_aki:
        raise CrlError('the delta CRL and the base CRL were signed with different CA keys')


def check_not_rolled_back(existing, new, issuer_cert=None):
    """Refuse to replace a CRL with an older one (RFC 5280 5.2.3: CRL numbers only grow per issuer and key).

    CrlError when ``existing`` (the CRL already on disk) comes from the same issuer and key (authority key identifier)
    as ``new`` and has a higher CRL number. An existing CRL that ``issuer_cert`` (when given) did not sign is no
    evidence and never blocks an update.
    """
    if existing.issuer != new.issuer:
        return
    aki = ExtensionOID.AUTHORITY_KEY_IDENTIFIER
    if key_identifier(existing, aki) != key_identifier(new, aki):
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


def check_anchored(cert, anchors):
    """An issuing CA certificate that came from the party being verified (AIA caIssuers) is used only when it is a
    trust anchor itself, or a CA certificate that one of them (a CA certificate) signed. Raises CrlError."""
    subject = cert.subject.rfc4514_string()
    for anchor in anchors:
        if anchor.subject == cert.subject and _spki(anchor) == _spki(cert):
            return
    if not is_ca(cert):
        raise CrlError('"%s" is not a CA certificate' % subject)
    for anchor in anchors:
        if anchor.subject != cert.issuer or not is_ca(anchor):
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except Exception:  # InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm
            continue
        return
    raise CrlError('the CA certificate "%s" is not trusted: it neither is nor was issued by a CA certificate of '
                   'ca_bundle (or, without ca_bundle, of the system trust store)' % subject)
