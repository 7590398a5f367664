# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The idempotency decision ``needs_enrollment()`` (helper enroll moves it to ``_renewal``).

Certificates are read and described by ``_x509``, chains by ``_chain``, keys by ``_keys``, requests by ``_csr``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _keys
from ansible_collections.adcs.enrollment.plugins.module_utils._x509 import (  # noqa: F401 (the decision below)
    certificate_sans, certificate_template, format_sans, key_matches_certificate, not_after,
)

_UTC = datetime.timezone.utc


class _requests(object):
    """Where the decision below (moved as it is by helper enroll) finds what ``_requests`` gave it: now ``_csr``
    and ``_keys`` (the lead points its imports there at the merge)."""
    _OID_RE = _csr._OID_RE
    parse_subject = staticmethod(_csr.parse_subject)
    normalize_sans = staticmethod(_csr.normalize_sans)
    validate_private_key = staticmethod(_keys.validate_private_key)


# ---------------------------------------------------------------------------------------------------------------
# Idempotency decision
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
    have = certificate_template(cert)
    if isinstance(wanted, dict):
        w_name, w_oid = wanted.get('name'), wanted.get('oid')
    elif _requests._OID_RE.match(str(wanted)):
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
    if not key_matches_certificate(key, cert):
        return True, Reason(REASON_KEY_MISMATCH, 'the private key does not match the certificate')
    if key_params:
        problem = _requests.validate_private_key(key, key_params.get('key_type'), key_params.get('key_size'),
                                                 key_params.get('curve'))
        if problem:
            return True, Reason(REASON_KEY_PARAMS, 'the key does not fit: %s' % problem)
    end = not_after(cert)
    if now >= end:
        return True, Reason(REASON_EXPIRED, 'the certificate expired on %s' % end.strftime('%Y-%m-%d %H:%M:%SZ'))
    renew_before = datetime.timedelta(days=float(renew_before_days or 0))
    if now >= end - renew_before:
        left = end - now
        return True, Reason(REASON_RENEW_WINDOW, 'the certificate expires on %s (in %d days), within the renewal '
                            'window of %s days' % (end.strftime('%Y-%m-%d %H:%M:%SZ'), left.days,
                                                   renew_before_days))
    if wanted_subject:
        wanted = _requests.parse_subject(wanted_subject)
        if _name_set(wanted) != _name_set(cert.subject):
            return True, Reason(REASON_SUBJECT, 'the subject differs: certificate has "%s", wanted "%s"'
                                % (cert.subject.rfc4514_string(), wanted.rfc4514_string()))
    if wanted_sans is not None:
        want = set(_requests.normalize_sans(wanted_sans))
        have = set(certificate_sans(cert))
        missing = sorted(want - have)
        extra = sorted(have - want)
        if missing or (sans_exact and extra):
            parts = []
            if missing:
                parts.append('missing %s' % ', '.join(format_sans(missing)))
            if sans_exact and extra:
                parts.append('unexpected %s' % ', '.join(format_sans(extra)))
            return True, Reason(REASON_SANS, 'the subject alternative names differ: %s' % '; '.join(parts))
    if wanted_template:
        ok, have_t = _template_matches(cert, wanted_template)
        if not ok:
            return True, Reason(REASON_TEMPLATE, 'the certificate was issued from template %s, wanted %s'
                                % (have_t, wanted_template))
    return False, Reason(REASON_OK, 'the certificate is valid until %s and matches the request'
                         % end.strftime('%Y-%m-%d %H:%M:%SZ'))
