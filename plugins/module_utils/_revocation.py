# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revocation check: one job, what a validated base CRL (and delta CRL) say about one certificate.

- the status of a certificate against base + delta (the delta's entry wins; ``removeFromCRL`` in a delta lifts a
  certificateHold of the base, RFC 5280 5.3.1), refused when the CRL is not of the certificate's issuer and key
- the facts of one revoked entry (serial, date, RFC 5280 CRLReason name and code)

The CRLs must have been validated first (``_crl_validate``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils._crl_validate import (
    CrlError,
    aware_utc,
    iso_utc,
    key_identifier,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

# RFC 5280 5.3.1 CRLReason codes (7 is not used)
REASON_CODES = {
    'unspecified': 0, 'keyCompromise': 1, 'cACompromise': 2, 'affiliationChanged': 3, 'superseded': 4,
    'cessationOfOperation': 5, 'certificateHold': 6, 'removeFromCRL': 8, 'privilegeWithdrawn': 9,
    'aACompromise': 10,
}


def _revocation_date(entry):
    return aware_utc(getattr(entry, 'revocation_date_utc', None) or entry.revocation_date)


def reason_of(entry):
    """The CRLReason name of a revoked entry, or None when it has none."""
    try:
        ext = entry.extensions.get_extension_for_oid(CRLEntryExtensionOID.CRL_REASON)
    except x509.ExtensionNotFound:
        return None
    return ext.value.reason.value


def entry_facts(entry):
    reason = reason_of(entry)
    return {
        'serial_number': '%X' % entry.serial_number,
        'revocation_date': iso_utc(_revocation_date(entry)),
        'reason': reason,
        'reason_code': REASON_CODES.get(reason) if reason else None,
    }


def revocation_status(cert, base, delta=None, issuer_cert=None):
    """Status of ``cert`` against the complete CRL ``base`` and an optional ``delta`` CRL.

    Returns {'serial_number', 'revoked', 'reason', 'reason_code', 'revocation_date', 'source', 'on_hold'}.
    """
    if cert.issuer != base.issuer:
        raise CrlError('the certificate was issued by "%s", the CRL by "%s": this CRL cannot tell its status'
                       % (cert.issuer.rfc4514_string(), base.issuer.rfc4514_string()))
    if issuer_cert is not None:
        cert_aki = key_identifier(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        ski = key_identifier(issuer_cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
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
