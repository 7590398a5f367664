# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The renewal policy: one job, deciding from what is on disk whether to enroll again, and how.

- the renewal window: ``renew_before`` from the option, else the template's renewal period (pKIOverlapPeriod,
  ``template_window_days()``), else 30 days capped to a third of the certificate's lifetime
  (``default_renew_before()``);
- ``needs_enrollment()``: whether the certificate and key on disk fit the request, as a ``Reason`` with a code;
  ``decide()`` applies it with the renewal window as the plan needs it;
- renewal requests (MS-WCCE 3.1.1.4.3.2.1): whether one is sent (``sends_renewal_request()``), the subject it keeps
  (``renewal_subject()``), and which refusals of the CA are retried as a new request (``falls_back()``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import WcceError

DEFAULT_RENEW_BEFORE_DAYS = 30

# HRESULTs after which a refused renewal request is retried as a new PKCS#10 request in the same session.
RENEWAL_FALLBACK_HRESULTS = frozenset([
    0x8009400E,  # CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE
    0x80094806,  # CERTSRV_E_BAD_RENEWAL_SUBJECT
    0x80090006,  # NTE_BAD_SIGNATURE
    0x8009100E,  # CRYPT_E_NO_SIGNER
    0x80091004,  # CRYPT_E_INVALID_MSG_TYPE
    0x80093102,  # CRYPT_E_ASN1_EOD
    0x8009310B,  # CRYPT_E_ASN1_BADTAG (what Windows answers to a CMS it cannot parse)
    0x800B0109,  # CERT_E_UNTRUSTEDROOT (the CA cannot chain the old certificate)
    0x800B010A,  # CERT_E_CHAINING
    0x80094816,  # CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY (a new key on a same-key renewal template)
    0x800B0101,  # CERT_E_EXPIRED (the signing certificate expired meanwhile)
    0x80092013,  # CRYPT_E_REVOCATION_OFFLINE
    0x80092012,  # CRYPT_E_NO_REVOCATION_CHECK
    0x80092010,  # CRYPT_E_REVOKED
])

# Why the CA refused a renewal that a new request does not have to fear, for the refusals that have one reason.
FALLBACK_WHY = {
    0x80094816: ('the template requires renewal with the same key (CT_FLAG_REQUIRE_SAME_KEY_RENEWAL) and this '
                 'request has a new key (regenerate_key=true or new key parameters); a new request may have one'),
    0x800B0109: 'the CA cannot chain the certificate being renewed to a root it trusts',
    0x800B010A: 'the CA cannot chain the certificate being renewed (issued by another CA or a renewed CA key)',
    0x8009310B: 'the CA could not parse the renewal request (CMS)',
    0x80092010: 'the certificate being renewed is revoked',
    0x800B0101: 'the certificate being renewed expired meanwhile',
}

_UTC = datetime.timezone.utc


# ---------------------------------------------------------------------------------------------------------------
# Does the certificate on disk fit?
# ---------------------------------------------------------------------------------------------------------------
class Reason(str):
    """A reason text with a stable machine code (``reason.code``)."""

    def __new__(cls, code, text):
        obj = str.__new__(cls, text)
        obj.code = code
        return obj


REASON_FORCE = 'force'
REASON_NO_CERT = 'no_certificate'
REASON_NO_KEY = 'no_key'
REASON_KEY_MISMATCH = 'key_mismatch'
REASON_EXPIRED = 'expired'
REASON_RENEW_WINDOW = 'renew_window'
REASON_SUBJECT = 'subject_changed'
REASON_SANS = 'sans_changed'
REASON_TEMPLATE = 'template_changed'
REASON_KEY_PARAMS = 'key_parameters_changed'
REASON_OK = 'up_to_date'


def _name_set(name):
    out = []
    for rdn in name.rdns:
        for attr in rdn:
            out.append((attr.oid.dotted_string, str(attr.value).strip().lower()))
    return sorted(out)


def _template_matches(cert, wanted):
    """Return (matches, text). ``wanted``: template name, template OID, or dict(name=, oid=)."""
    have = _x509.certificate_template(cert)
    if isinstance(wanted, dict):
        w_name, w_oid = wanted.get('name'), wanted.get('oid')
    elif _csr._OID_RE.match(str(wanted)):
        w_name, w_oid = None, str(wanted)
    else:
        w_name, w_oid = str(wanted), None
    if w_oid and have['oid']:
        return have['oid'] == w_oid, have['oid']
    if w_name and have['name']:
        return have['name'].lower() == w_name.lower(), have['name']
    if not have['oid'] and not have['name']:
        return False, 'none'
    # The certificate names its template only in the form we cannot compare with: do not churn.
    return True, have['oid'] or have['name']


def renewal_opens(not_after, renew_before_days):
    """The moment the renewal window of a certificate valid until ``not_after`` opens (``renew_before_days``
    days before; 0 or None: at expiry)."""
    return not_after - datetime.timedelta(days=float(renew_before_days or 0))


def needs_enrollment(cert, key, wanted_subject=None, wanted_sans=None, wanted_template=None, renew_before_days=30,
                     now=None, force=False, sans_exact=False, key_params=None):
    """Decide whether a (re-)enrollment is needed. Returns (bool, Reason).

    ``cert``/``key``: the current certificate and private key (None when absent). ``wanted_*`` None means "do not
    compare". SANs must all be present in the certificate (CAs may add names from the directory); with
    ``sans_exact`` any difference counts. ``key_params``: dict(key_type=, key_size=, curve=) the key must match.
    """
    now = now or datetime.datetime.now(_UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=_UTC)
    if force:
        return True, Reason(REASON_FORCE, 'enrollment forced')
    if cert is None:
        return True, Reason(REASON_NO_CERT, 'no certificate present')
    if key is None:
        return True, Reason(REASON_NO_KEY, 'no private key present for the certificate')
    if not _x509.key_matches_certificate(key, cert):
        return True, Reason(REASON_KEY_MISMATCH, 'the private key does not match the certificate')
    if key_params:
        problem = _keys.validate_private_key(key, key_params.get('key_type'), key_params.get('key_size'),
                                             key_params.get('curve'))
        if problem:
            return True, Reason(REASON_KEY_PARAMS, 'the key does not fit: %s' % problem)
    end = _x509.not_after(cert)
    if now >= end:
        return True, Reason(REASON_EXPIRED, 'the certificate expired on %s' % end.strftime('%Y-%m-%d %H:%M:%SZ'))
    if now >= renewal_opens(end, renew_before_days):
        left = end - now
        return True, Reason(REASON_RENEW_WINDOW, 'the certificate expires on %s (in %d days), within the renewal '
                            'window of %s days' % (end.strftime('%Y-%m-%d %H:%M:%SZ'), left.days,
                                                   renew_before_days))
    if wanted_subject:
        wanted = _csr.parse_subject(wanted_subject)
        if _name_set(wanted) != _name_set(cert.subject):
            return True, Reason(REASON_SUBJECT, 'the subject differs: certificate has "%s", wanted "%s"'
                                % (cert.subject.rfc4514_string(), wanted.rfc4514_string()))
    if wanted_sans is not None:
        want = set(_x509.normalize_sans(wanted_sans))
        have = set(_x509.certificate_sans(cert))
        missing = sorted(want - have)
        extra = sorted(have - want)
        if missing or (sans_exact and extra):
            parts = []
            if missing:
                parts.append('missing %s' % ', '.join(_x509.format_sans(missing)))
            if sans_exact and extra:
                parts.append('unexpected %s' % ', '.join(_x509.format_sans(extra)))
            return True, Reason(REASON_SANS, 'the subject alternative names differ: %s' % '; '.join(parts))
    if wanted_template:
        ok, have_t = _template_matches(cert, wanted_template)
        if not ok:
            return True, Reason(REASON_TEMPLATE, 'the certificate was issued from template %s, wanted %s'
                                % (have_t, wanted_template))
    return False, Reason(REASON_OK, 'the certificate is valid until %s and matches the request'
                         % end.strftime('%Y-%m-%d %H:%M:%SZ'))


# ---------------------------------------------------------------------------------------------------------------
# The renewal window
# ---------------------------------------------------------------------------------------------------------------
def default_renew_before(cert, template_days=None):
    """(days, source): the template's renewal period when known, else 30 days capped to a third of the
    certificate's lifetime (so short-lived certificates are not renewed on every run)."""
    if template_days is not None:
        return float(template_days), 'template'
    if cert is not None:
        lifetime = (_x509.not_after(cert) - _x509.not_before(cert)).total_seconds() / 86400.0
        if lifetime / 3.0 < DEFAULT_RENEW_BEFORE_DAYS:
            return round(lifetime / 3.0, 4), 'lifetime'
    return float(DEFAULT_RENEW_BEFORE_DAYS), 'default'


def template_window_days(overlap_period):
    """The renewal period of a template in days, from its raw pKIOverlapPeriod (None when absent)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _templates
    period = _templates.decode_period(overlap_period)
    return period['seconds'] / 86400.0 if period is not None else None


def decide(cert, key, renew_before=None, template_days=None, **wanted):
    """(needed, reason, renew_before, renew_before_source) for the certificate and key on disk.

    ``renew_before``: the option (days) or None; ``template_days()``: the template's renewal period in days or
    None, only asked when the certificate fits otherwise (it may read Active Directory). ``wanted``: the other
    arguments of needs_enrollment()."""
    if renew_before is not None:
        needed, reason = needs_enrollment(cert, key, renew_before_days=renew_before, **wanted)
        return needed, reason, renew_before, 'option'
    needed, reason = needs_enrollment(cert, key, renew_before_days=0, **wanted)
    if needed:
        return needed, reason, None, None
    days, source = default_renew_before(cert, template_days() if template_days is not None else None)
    needed, reason = needs_enrollment(cert, key, renew_before_days=days, **wanted)
    return needed, reason, days, source


# ---------------------------------------------------------------------------------------------------------------
# Renewal requests
# ---------------------------------------------------------------------------------------------------------------
def sends_renewal_request(enabled, cert, current_key, reason, now):
    """A renewal request (signed with the current key) is sent when enabled and the current certificate is valid,
    belongs to the current key and is replaced for its renewal window, by force or for new key parameters."""
    return bool(
        enabled and cert is not None and current_key is not None
        and _x509.key_matches_certificate(current_key, cert)
        and _x509.not_before(cert) <= now < _x509.not_after(cert)
        and reason.code in (REASON_RENEW_WINDOW, REASON_FORCE, REASON_KEY_PARAMS))


def renewal_subject(wanted_subject, current_cert):
    """Renewals keep the subject of the certificate being renewed unless a subject is asked for."""
    if wanted_subject:
        return wanted_subject
    return [(attr.oid.dotted_string, attr.value) for rdn in current_cert.subject.rdns for attr in rdn]


def falls_back(enrollment):
    """The CA refused the renewal request for a reason a new PKCS#10 request does not have."""
    return not (enrollment.issued or enrollment.pending) and enrollment.hresult in RENEWAL_FALLBACK_HRESULTS


class _Facts(WcceError):
    """An error's summary, HRESULT, request ID and detail, without its remedy."""
    remedy = None


def fallback_warning(enrollment):
    """The warning saying that the renewal request was refused and a new request sent instead."""
    err = enrollment.error('The CA refused the renewal request')
    facts = _Facts(err.summary, hresult=err.hresult, request_id=err.request_id, detail=err.detail)
    why = FALLBACK_WHY.get(enrollment.hresult)
    return '%s; %sa new request was sent instead' % (facts.to_message().rstrip('.'), (why + ', so ') if why else '')
