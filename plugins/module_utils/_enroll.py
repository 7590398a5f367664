# -*- coding: utf-8 -*-
# Copyright (c) adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enrollment workflow: one job, taking a list of enrollment requests from "what is wanted" to "files on disk".

Shared by the wcce_request module and the roles. Per request:

1. ``plan_request()`` (no network): read the key, certificate and CSR on disk and decide with
   ``_certs.needs_enrollment()`` whether the CA must be contacted (action ``none``, ``enroll``, ``retrieve`` or
   ``refresh`` = only the derived outputs - chain, full chain, PKCS#12 - are missing or stale). It chooses the key:
   reuse the key at ``private_key_path``, generate one when missing (never overwritten unless
   ``regenerate_key``), or take the public key of ``csr_path``/``csr_content``; and whether to send a renewal
   request (CMS signed with the current certificate's key, MS-WCCE 3.1.1.4.3.2.1).
2. ``Enroller.run()`` (network): all requests go over ONE authenticated ``DcomSession`` per CA (opened lazily,
   only when some request needs the CA). CAs come from ``ca_host`` + ``ca_name`` or from discovery in Active
   Directory (``_discovery``, the next CA is tried when one is unavailable). Issued certificates are verified
   (public key equals the request's, the path ends at an anchor from ``_anchors``, never one from the CA) and
   written all-or-nothing (``_files``): nothing on disk changes unless the new key, certificate and outputs are
   complete and consistent. Pending requests return their request ID; a newly generated key that would replace an
   existing one is kept next to it as ``<private_key_path>.pending`` until the certificate is retrieved.

Failures raise ``_errors.WcceError`` subclasses whose ``to_message()`` names the HRESULT, its meaning, the request
ID and what to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket

from ansible_collections.adcs.enrollment.plugins.module_utils import _auth
from ansible_collections.adcs.enrollment.plugins.module_utils import _certs
from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _kerberos
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _match
from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal_request
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    CaUnavailable,
    CertificateError,
    InvalidInput,
    TransportError,
    WcceError,
)

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
except ImportError:  # reported by the callers through _requests/_certs HAS_CRYPTOGRAPHY
    x509 = None
    serialization = None

ACTION_NONE = 'none'
ACTION_ENROLL = 'enroll'
ACTION_RETRIEVE = 'retrieve'
ACTION_REFRESH = 'refresh'

DEFAULT_RENEW_BEFORE_DAYS = 30
PENDING_KEY_SUFFIX = '.pending'

# Options of one request (module option name -> default). Top-level module options are the defaults of every
# entry of ``requests``.
REQUEST_OPTIONS = {
    'template': None,
    'csr_path': None,
    'csr_content': None,
    'private_key_path': None,
    'private_key_passphrase': None,
    'private_key_mode': None,
    'key_type': None,
    'key_size': None,
    'curve': None,
    'regenerate_key': False,
    'renewal_request': True,
    'subject': None,
    'common_name': None,
    'subject_alt_name': None,
    'certificate_path': None,
    'chain_path': None,
    'fullchain_path': None,
    'format': 'pem',
    'pkcs12_path': None,
    'pkcs12_passphrase': None,
    'force': False,
    'renew_before': None,
    'request_id': None,
    'backup': False,
    'owner': None,
    'group': None,
    'mode': None,
}

# HRESULTs after which a refused renewal request is retried as a new PKCS#10 request in the same session.
RENEWAL_FALLBACK_HRESULTS = frozenset([
    0x8009400E,  # CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE
    0x80094806,  # CERTSRV_E_BAD_RENEWAL_SUBJECT
    0x80090006,  # NTE_BAD_SIGNATURE
    0x8009100E,  # CRYPT_E_NO_SIGNER
    0x80091004,  # CRYPT_E_INVALID_MSG_TYPE
    0x80093102,  # CRYPT_E_ASN1_BADTAG
    0x800B0101,  # CERT_E_EXPIRED (the signing certificate expired meanwhile)
    0x80092013,  # CRYPT_E_REVOCATION_OFFLINE
    0x80092012,  # CRYPT_E_NO_REVOCATION_CHECK
    0x80092010,  # CRYPT_E_REVOKED
])

_UTC = datetime.timezone.utc


# ---------------------------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------------------------
def normalize_requests(params):
    """The list of per-request option dicts: ``params['requests']`` entries over the top-level defaults, or the
    top-level options alone. Unknown keys in an entry raise InvalidInput."""
    base = dict((k, params.get(k, v)) for k, v in REQUEST_OPTIONS.items())
    entries = params.get('requests') or []
    if not entries:
        return [check_request(base, 0)]
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidInput('requests[%d] must be a dictionary of request options' % index)
        unknown = sorted(set(entry) - set(REQUEST_OPTIONS))
        if unknown:
            raise InvalidInput('requests[%d] has unknown options: %s (allowed: %s)'
                               % (index, ', '.join(unknown), ', '.join(sorted(REQUEST_OPTIONS))))
        merged = dict(base)
        for key, value in entry.items():
            if value is not None:
                merged[key] = value
        out.append(check_request(merged, index))
    paths = {}
    for spec in out:
        for key in ('certificate_path', 'private_key_path', 'chain_path', 'fullchain_path', 'pkcs12_path'):
            path = spec.get(key)
            if not path:
                continue
            other = paths.get(path)
            if other is not None and other != (spec['index'], key):
                raise InvalidInput('requests[%d].%s (%s) is also written by requests[%d].%s'
                                   % (spec['index'], key, path, other[0], other[1]))
            paths[path] = (spec['index'], key)
    return out


def _as_bool(value, name):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'on', 'y'):
        return True
    if text in ('0', 'false', 'no', 'off', 'n', ''):
        return False
    raise InvalidInput('%s must be a boolean, got %r' % (name, value))


def _abs(path):
    return os.path.abspath(os.path.expanduser(path)) if path else path


def check_request(spec, index=0):
    """Validate and normalize one request's options (no file or network access)."""
    spec = dict(spec)
    spec['index'] = index
    where = 'requests[%d]: ' % index if index else ''
    for key in ('certificate_path', 'private_key_path', 'chain_path', 'fullchain_path', 'pkcs12_path', 'csr_path'):
        spec[key] = _abs(spec.get(key))
    for key in ('force', 'regenerate_key', 'renewal_request', 'backup'):
        spec[key] = _as_bool(spec.get(key) or False, key) if key != 'renewal_request' else \
            _as_bool(True if spec.get(key) is None else spec[key], key)
    if not spec.get('template') and not spec.get('request_id'):
        raise InvalidInput(where + 'template is required (the certificate template name, for example WebServer)')
    if not spec.get('certificate_path'):
        raise InvalidInput(where + 'certificate_path is required')
    if spec.get('csr_path') and spec.get('csr_content'):
        raise InvalidInput(where + 'csr_path and csr_content are mutually exclusive')
    csr_mode = bool(spec.get('csr_path') or spec.get('csr_content'))
    spec['csr_mode'] = csr_mode
    if not csr_mode and not spec.get('private_key_path'):
        raise InvalidInput(where + 'give private_key_path (the key is generated there when missing) or a CSR '
                                   '(csr_path or csr_content)')
    if csr_mode and spec.get('regenerate_key'):
        raise InvalidInput(where + 'regenerate_key cannot be used with a CSR (csr_path/csr_content): the CSR '
                                   'fixes the key')
    fmt = (spec.get('format') or 'pem').lower()
    if fmt not in _x509.FORMATS:
        raise InvalidInput(where + 'format must be pem or der, got %r' % spec.get('format'))
    spec['format'] = fmt
    if spec.get('pkcs12_path') and not spec.get('private_key_path'):
        raise InvalidInput(where + 'pkcs12_path needs private_key_path (the bundle holds the private key)')
    key_type = (spec.get('key_type') or '').lower() or None
    if key_type == 'ec':
        key_type = 'ecdsa'
    if key_type not in (None, 'rsa', 'ecdsa'):
        raise InvalidInput(where + 'key_type must be rsa or ecdsa, got %r' % spec.get('key_type'))
    spec['key_type'] = key_type
    if spec.get('key_size') is not None:
        _keys.validate_rsa_size(spec['key_size'])
        spec['key_size'] = int(spec['key_size'])
    if spec.get('curve'):
        _keys.normalize_curve(spec['curve'])
    if spec.get('key_size') and key_type == 'ecdsa':
        raise InvalidInput(where + 'key_size applies to RSA keys; use curve with key_type=ecdsa')
    if spec.get('renew_before') is not None:
        try:
            spec['renew_before'] = float(spec['renew_before'])
        except (TypeError, ValueError):
            raise InvalidInput(where + 'renew_before must be a number of days, got %r' % spec['renew_before'])
        if spec['renew_before'] < 0:
            raise InvalidInput(where + 'renew_before must not be negative')
    if spec.get('request_id') is not None:
        try:
            spec['request_id'] = int(spec['request_id'])
        except (TypeError, ValueError):
            raise InvalidInput(where + 'request_id must be a number, got %r' % spec['request_id'])
        if spec['request_id'] <= 0:
            raise InvalidInput(where + 'request_id must be a positive number')
    subject = spec.get('subject')
    if spec.get('common_name'):
        if isinstance(subject, dict):
            subject = dict(subject)
            if any(k in subject for k in ('CN', 'commonName')):
                raise InvalidInput(where + 'give the common name either in subject or in common_name, not both')
            subject['CN'] = spec['common_name']
        elif subject:
            raise InvalidInput(where + 'common_name cannot be combined with a subject string; add CN= to subject')
        else:
            subject = {'CN': spec['common_name']}
    spec['wanted_subject'] = subject or None
    if subject:
        _csr.parse_subject(subject)  # validates
    sans = spec.get('subject_alt_name')
    if isinstance(sans, str):
        sans = [s for s in (part.strip() for part in sans.split(',')) if s]
    spec['subject_alt_name'] = sans or None
    spec['wanted_sans'] = _x509.normalize_sans(sans) if sans else None
    # With a CSR, any of the names or key parameters given are expectations the CSR must meet (names not given
    # are then expected absent): the CSR may come from a managed host (controller-side enrollment).
    spec['csr_pinned'] = bool(csr_mode and (subject or sans or key_type or spec.get('key_size') or spec.get('curve')))
    for key in ('mode', 'private_key_mode'):
        if spec.get(key) is not None:
            try:   # as ansible.builtin.file: an integer is the mode, a string octal or symbolic
                value = _files.check_secret_mode(spec[key], key) if key == 'private_key_mode' else \
                    _files.parse_mode(spec[key], _files.CERT_MODE)
            except InvalidInput as exc:
                exc.summary = where + exc.summary
                raise
            if not isinstance(spec[key], str) or value == _files.parse_mode(spec[key], 0, base=0o7777):
                spec[key] = value   # symbolic modes relative to the file's mode are resolved when writing
    return spec


OUTPUT_OPTIONS = ('private_key_path', 'certificate_path', 'chain_path', 'fullchain_path', 'pkcs12_path')


def output_paths(spec):
    """{option: path} of the files a request writes."""
    return dict((key, spec[key]) for key in OUTPUT_OPTIONS if spec.get(key))


# ---------------------------------------------------------------------------------------------------------------
# Planning (no network)
# ---------------------------------------------------------------------------------------------------------------
class Plan(object):
    """What to do for one request; filled by plan_request()."""

    def __init__(self, spec):
        self.spec = spec
        self.action = ACTION_NONE
        self.reason = None
        self.current_cert = None
        self.current_key = None        # key loaded from private_key_path (None if absent)
        self.current_key_bytes = None
        self.csr = None                # x509.CertificateSigningRequest in CSR mode
        self.csr_der = None
        self.key = None                # the key the new certificate is for (None in CSR mode without key)
        self.key_is_new = False
        self.renewal = False
        self.renew_before = None
        self.renew_before_source = None
        self.pending_key_path = None
        self.warnings = []

    @property
    def request_public_key(self):
        if self.key is not None:
            return self.key.public_key()
        if self.csr is not None:
            return self.csr.public_key()
        return None


def _read_existing_cert(path, plan):
    data = _files.read_file(path, replaceable=True)   # a symlink or FIFO there is not ours: it will be replaced
    if data is None:
        return None
    try:
        certs = _x509.load_certificates(data)
    except WcceError as exc:
        plan.warnings.append('The certificate at %s cannot be read and will be replaced: %s'
                             % (path, exc.to_message()))
        return None
    if not certs:
        plan.warnings.append('The file %s holds no certificate and will be replaced' % path)
        return None
    return certs[0]


def _load_csr(spec):
    if spec.get('csr_content'):
        data = spec['csr_content']
        data = data.encode('utf-8') if isinstance(data, str) else bytes(data)
        origin = 'csr_content'
    else:
        data = _files.read_file(spec['csr_path'])
        if data is None:
            raise InvalidInput('The CSR file %s does not exist' % spec['csr_path'])
        origin = spec['csr_path']
    try:
        if data.lstrip().startswith(b'-----'):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidInput('Cannot parse the certificate signing request in %s' % origin, detail=str(exc))
    if not csr.is_signature_valid:
        raise InvalidInput('The signature of the certificate signing request in %s does not verify' % origin)
    return csr, csr.public_bytes(serialization.Encoding.DER)


def _csr_sans(csr):
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    fake = _SansHolder(ext)
    return _x509.certificate_sans(fake) or None


class _SansHolder(object):
    """Lets _x509.certificate_sans read a CSR's SAN extension."""

    def __init__(self, ext):
        self._ext = ext

    @property
    def extensions(self):
        return self

    def get_extension_for_oid(self, oid):
        return self._ext


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


def plan_request(spec, now=None, template_renewal_days=None):
    """Decide what one request needs. ``template_renewal_days(template)`` returns the template's renewal period in
    days or None; it is only called when the certificate on disk fits otherwise. Raises InvalidInput for keys or
    CSRs that cannot be used."""
    now = now or datetime.datetime.now(_UTC)
    plan = Plan(spec)
    plan.current_cert = _read_existing_cert(spec['certificate_path'], plan)
    key_path = spec.get('private_key_path')
    if key_path:
        data = _files.read_file(key_path)
        if data is not None:
            plan.current_key_bytes = data
            try:
                plan.current_key = _keys.load_private_key(data, spec.get('private_key_passphrase'))
            except InvalidInput as exc:
                raise InvalidInput('Cannot load the private key %s (wrong private_key_passphrase, or not a key); '
                                   'it was left untouched' % key_path, detail=exc.detail)
    if spec['csr_mode']:
        plan.csr, plan.csr_der = _load_csr(spec)
        if spec.get('csr_pinned'):
            _check_csr(spec, plan.csr, plan.csr_der)
        if plan.current_key is not None and not _same_public_key(plan.current_key.public_key(),
                                                                 plan.csr.public_key()):
            raise InvalidInput('The CSR was not made with the private key %s' % key_path)
        plan.key = plan.current_key
        match_key = plan.current_key or plan.csr
        wanted_sans = _csr_sans(plan.csr)
        key_params = None
    else:
        match_key = plan.current_key
        wanted_sans = spec.get('wanted_sans')
        key_params = None
        if spec.get('key_type') or spec.get('key_size') or spec.get('curve'):
            key_params = {'key_type': spec.get('key_type') or ('ecdsa' if spec.get('curve') else 'rsa'),
                          'key_size': spec.get('key_size'), 'curve': spec.get('curve')}
    kwargs = dict(wanted_subject=spec.get('wanted_subject'), wanted_sans=wanted_sans,
                  wanted_template=spec.get('template'), now=now, force=spec['force'], key_params=key_params)
    if spec.get('renew_before') is not None:
        plan.renew_before, plan.renew_before_source = spec['renew_before'], 'option'
        needed, reason = _certs.needs_enrollment(plan.current_cert, match_key, renew_before_days=plan.renew_before,
                                                 **kwargs)
    else:
        needed, reason = _certs.needs_enrollment(plan.current_cert, match_key, renew_before_days=0, **kwargs)
        if not needed:
            days = template_renewal_days(spec['template']) if (template_renewal_days and spec.get('template')) \
                else None
            plan.renew_before, plan.renew_before_source = default_renew_before(plan.current_cert, days)
            needed, reason = _certs.needs_enrollment(plan.current_cert, match_key,
                                                     renew_before_days=plan.renew_before, **kwargs)
    plan.reason = reason
    if not needed:
        stale = _stale_outputs(plan)
        if stale:
            plan.action = ACTION_REFRESH
            plan.reason = _certs.Reason('outputs_stale', 'the certificate fits but %s' % stale)
        plan.key = plan.current_key
        return plan
    if reason.code == _certs.REASON_KEY_PARAMS and not spec['regenerate_key']:
        raise InvalidInput('The private key %s does not fit the requested key parameters (%s); it is never '
                           'replaced unless regenerate_key=true' % (key_path, reason))
    plan.action = ACTION_RETRIEVE if spec.get('request_id') else ACTION_ENROLL
    _check_refusal(plan)
    if not spec['csr_mode']:
        _choose_key(plan, now)
    return plan


def _key_params(spec):
    if spec.get('key_type') or spec.get('key_size') or spec.get('curve'):
        return {'key_type': spec.get('key_type') or ('ecdsa' if spec.get('curve') else 'rsa'),
                'key_size': spec.get('key_size'), 'curve': spec.get('curve')}
    return None


def _check_csr(spec, csr, csr_der):
    """A CSR with expectations (csr_pinned) must carry exactly the expected names and a key that fits."""
    diffs = _match.csr_differences(csr, csr_der, spec.get('wanted_subject'), spec.get('wanted_sans'),
                                   _key_params(spec))
    if diffs:
        raise InvalidInput('The CSR (%s) is not the one expected; nothing was sent to the CA'
                           % ('csr_content' if spec.get('csr_content') else spec['csr_path']),
                           detail='; '.join(diffs),
                           remedy='The CSR must carry exactly the subject, subject_alt_name and key type given '
                                  'with it. If it comes from a managed host, that host may be compromised.')


def _check_refusal(plan):
    """An earlier issuance for the same request was refused (the certificate was not what was asked for): fail
    without contacting the CA until the request changes or force is set."""
    spec = plan.spec
    if spec['force']:
        return
    record = _match.read_refusal(spec['certificate_path'], plan.warnings)
    if not _match.refusal_applies(record, _match.asked(spec, plan.csr)):
        return
    raise CertificateError(
        'Request %s was refused on an earlier run because the CA issued a certificate that is not what was asked '
        'for (recorded in %s next to the certificate); the CA is not asked again for the same request'
        % (record.get('request_id'), os.path.basename(_match.refusal_path(spec['certificate_path']))),
        request_id=record.get('request_id'), detail='; '.join(record.get('differences') or []),
        remedy='Correct the template or the CA policy, then run with force=true or remove that record (or change '
               'the request).')


def _choose_key(plan, now):
    spec = plan.spec
    if plan.action == ACTION_RETRIEVE:
        # The certificate is for the key of the original request: the pending key or the current one.
        pending = spec['private_key_path'] + PENDING_KEY_SUFFIX
        data = _files.read_file(pending)
        if data is not None:
            plan.pending_key_path = pending
            plan.key = _keys.load_private_key(data, spec.get('private_key_passphrase'))
            plan.key_is_new = True
        else:
            plan.key = plan.current_key
        return
    if plan.current_key is None or spec['regenerate_key']:
        key_type = spec.get('key_type') or ('ecdsa' if spec.get('curve') else 'rsa')
        plan.key = _keys.generate_private_key(key_type, spec.get('key_size') or 2048,
                                              spec.get('curve') or 'secp256r1')
        plan.key_is_new = True
    else:
        plan.key = plan.current_key
    cert = plan.current_cert
    plan.renewal = bool(
        spec['renewal_request'] and cert is not None and plan.current_key is not None
        and _x509.key_matches_certificate(plan.current_key, cert)
        and _x509.not_before(cert) <= now < _x509.not_after(cert)
        and plan.reason.code in (_certs.REASON_RENEW_WINDOW, _certs.REASON_FORCE, _certs.REASON_KEY_PARAMS))


def _same_public_key(a, b):
    return _keys.public_key_der(a) == _keys.public_key_der(b)


def _stale_outputs(plan):
    """Text naming the derived output that is missing or does not belong to the current certificate, or None."""
    spec, cert = plan.spec, plan.current_cert
    for key in ('certificate_path', 'chain_path', 'fullchain_path'):
        data = _files.read_file(spec[key], replaceable=True) if spec.get(key) else None
        if data is not None and data.lstrip().startswith(b'-----') != (spec['format'] == 'pem'):
            return '%s (%s) is not in the %s format' % (key, spec[key], spec['format'].upper())
    for key in ('chain_path', 'fullchain_path'):
        path = spec.get(key)
        if not path:
            continue
        data = _files.read_file(path, replaceable=True)
        if data is None:
            return '%s (%s) is missing' % (key, path)
        try:
            certs = _x509.load_certificates(data)
        except WcceError:
            return '%s (%s) cannot be read' % (key, path)
        if not certs:
            return '%s (%s) holds no certificate' % (key, path)
        # DER bundles are PKCS#7 (a SET: no order), so compare membership, not positions.
        ders = [_x509.cert_der(c) for c in certs]
        if key == 'fullchain_path' and _x509.cert_der(cert) not in ders:
            return '%s (%s) does not hold the current certificate' % (key, path)
        if not any(c.subject == cert.issuer for c in certs):
            return '%s (%s) does not hold the issuer of the current certificate' % (key, path)
    if spec.get('pkcs12_path'):
        data = _files.read_file(spec['pkcs12_path'], replaceable=True)
        if data is None:
            return 'pkcs12_path (%s) is missing' % spec['pkcs12_path']
        try:
            key, p12_cert, _extra = _x509.load_pkcs12(data, spec.get('pkcs12_passphrase'))
        except WcceError:
            return 'pkcs12_path (%s) cannot be opened with pkcs12_passphrase' % spec['pkcs12_path']
        if p12_cert is None or _x509.cert_der(p12_cert) != _x509.cert_der(cert) or key is None or \
                not _same_public_key(key.public_key(), cert.public_key()):
            return 'pkcs12_path (%s) does not hold the current certificate and key' % spec['pkcs12_path']
    return None


# ---------------------------------------------------------------------------------------------------------------
# CA selection
# ---------------------------------------------------------------------------------------------------------------
class CaTarget(object):
    def __init__(self, name, host, address=None, source='options'):
        self.name = name
        self.host = host
        self.address = address or host
        self.source = source

    def key(self):
        return (self.address.lower(), self.name.lower())

    def to_dict(self):
        return {'name': self.name, 'host': self.host, 'address': self.address, 'source': self.source}

    def __repr__(self):
        return 'CaTarget(%r, %r)' % (self.name, self.host)


def resolve_host(host, dns_server=None, timeout=5):
    """An address for ``host``: the system resolver first, then the domain controller's DNS (AD-integrated DNS
    knows the CA host even when the system resolver does not). Returns ``host`` unchanged if nothing resolves."""
    try:
        socket.inet_aton(host)
        return host
    except (OSError, socket.error):
        pass
    try:
        return socket.getaddrinfo(host, 135, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except (OSError, socket.error, IndexError):
        pass
    if dns_server:
        try:
            import dns.resolver
            resolver = dns.resolver.Resolver(configure=False)
            try:
                socket.inet_aton(dns_server)
                server = dns_server
            except (OSError, socket.error):
                server = socket.getaddrinfo(dns_server, 53)[0][4][0]
            resolver.nameservers = [server]
            resolver.lifetime = timeout
            answer = resolver.resolve(host, 'A')
            for rr in answer:
                return str(rr)
        except Exception:  # dnspython missing or the DC does not serve DNS: the connect attempt reports it
            pass
    return host


class Directory(object):
    """Lazy LDAP access for discovery and template renewal periods (through the other owner's _ldap/_discovery).

    ``connect`` is a callable returning a connected ``_ldap.AdConnection``; errors become InvalidInput/
    CaUnavailable messages naming the directory."""

    def __init__(self, connect):
        self._connect = connect
        self._conn = None
        self._services = None
        self._templates = {}
        self.error = None
        self.template_error = None

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def services(self):
        if self._services is None:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _discovery
            self._services = _discovery.list_enrollment_services(self.conn, self.conn.configuration_nc)
        return self._services

    def template_renewal_days(self, template):
        """The template's renewal period (pKIOverlapPeriod) in days, or None when it cannot be read."""
        key = template.lower()
        if key not in self._templates:
            days = None
            try:
                from ansible_collections.adcs.enrollment.plugins.module_utils import _discovery, _templates
                conn = self.conn
                found = conn.search(_discovery.templates_dn(conn.configuration_nc),
                                    '(&(objectClass=pKICertificateTemplate)(cn=%s))' % _ldap_escape(template),
                                    ['cn', 'pKIOverlapPeriod'], scope='LEVEL')
                if found:
                    period = _templates.decode_period(
                        (found[0]['attributes'].get('pKIOverlapPeriod') or [None])[0])
                    if period is not None:
                        days = period['seconds'] / 86400.0
            except Exception as exc:  # fall back to the default; say why
                self.error = 'the renewal period of template %s could not be read from Active Directory: %s' \
                             % (template, exc)
            self._templates[key] = days
        return self._templates[key]

    def account(self, principal):
        """dict(dn, cn, mail, dns_host_name, upn) of an account (by sAMAccountName or UPN), or None when it cannot
        be read (``template_error`` then says why)."""
        key = 'account:' + principal.lower()
        if key not in self._templates:
            found = None
            try:
                from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap
                conn = self.conn
                entry = conn.find_account(principal)
                if entry is None:
                    self.template_error = 'the account %s was not found in Active Directory' % principal
                else:
                    attrs = ['cn', 'mail', 'dNSHostName', 'userPrincipalName']
                    entry = conn.search(entry['dn'], '(objectClass=*)', attrs, scope='BASE', paged=False)[0]
                    found = {'dn': entry['dn'], 'cn': _ldap.first_text(entry, 'cn'),
                             'mail': _ldap.first_text(entry, 'mail'),
                             'dns_host_name': _ldap.first_text(entry, 'dNSHostName'),
                             'upn': _ldap.first_text(entry, 'userPrincipalName')}
            except Exception as exc:  # the comparison then skips the names from AD; say why
                self.template_error = 'the account %s could not be read from Active Directory: %s' % (principal, exc)
            self._templates[key] = found
        return self._templates[key]

    def template_info(self, template):
        """The template decoded from Active Directory (_templates.decode_template), or None when it cannot be read
        (``template_error`` then says why)."""
        key = 'info:' + template.lower()
        if key not in self._templates:
            info = None
            try:
                from ansible_collections.adcs.enrollment.plugins.module_utils import _discovery, _templates
                conn = self.conn
                attributes = [a for a in _templates.TEMPLATE_ATTRIBUTES if a != 'nTSecurityDescriptor']
                found = conn.search(_discovery.templates_dn(conn.configuration_nc),
                                    '(&(objectClass=pKICertificateTemplate)(cn=%s))' % _ldap_escape(template),
                                    attributes, scope='LEVEL')
                if found:
                    info = _templates.decode_template(found[0]['attributes'])
                else:
                    self.template_error = 'the template %s was not found in Active Directory' % template
            except Exception as exc:  # the comparison then skips what needs the template; say why
                self.template_error = 'the template %s could not be read from Active Directory: %s' % (template, exc)
            self._templates[key] = info
        return self._templates[key]


def _ldap_escape(value):
    out = []
    for ch in value:
        if ch in '\\*()\x00':
            out.append('\\%02x' % ord(ch))
        else:
            out.append(ch)
    return ''.join(out)


def select_cas(template, ca_host=None, ca_name=None, directory=None, dns_server=None):
    """Candidate CAs for ``template``, in the order to try them.

    ``ca_host`` + ``ca_name``: that CA only. Otherwise the enrollment services in Active Directory (``directory``)
    that publish the template, restricted to ``ca_name``/``ca_host`` when given."""
    if ca_host and ca_name:
        return [CaTarget(ca_name, ca_host, resolve_host(ca_host, dns_server), 'options')]
    if directory is None:
        raise InvalidInput('Give ca_host and ca_name, or domain (with the directory credentials) to find the CA '
                           'in Active Directory')
    try:
        services = directory.services()
    except WcceError:
        raise
    except Exception as exc:
        raise CaUnavailable('Finding the enterprise CAs in Active Directory failed', detail=str(exc),
                            remedy='Check domain, domain_controller and the directory credentials, or give '
                                   'ca_host and ca_name.')
    from ansible_collections.adcs.enrollment.plugins.module_utils import _discovery
    services = _discovery.filter_services(services, ca_name=ca_name)
    if ca_host:
        services = [s for s in services if (s.get('dns_host_name') or '').lower().rstrip('.') ==
                    ca_host.lower().rstrip('.')] or [dict(s, dns_host_name=ca_host) for s in services]
    if not services:
        raise InvalidInput('No enterprise CA%s found in Active Directory'
                           % (' named %s' % ca_name if ca_name else ''))
    publishing = [s for s in services if template and any(t.lower() == template.lower() for t in s['templates'])]
    if template and not publishing:
        raise InvalidInput('No enterprise CA publishes the certificate template %s (CAs found: %s)'
                           % (template, ', '.join('%s (%s)' % (s['name'], ', '.join(s['templates']) or 'none')
                                                  for s in services)))
    return [CaTarget(s['name'], s['dns_host_name'], resolve_host(s['dns_host_name'], dns_server), 'discovery')
            for s in (publishing or services) if s.get('dns_host_name')]


# ---------------------------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------------------------
class _CaConnection(object):
    """One DcomSession + CertRequestClient for one CA, and the CA certificates read once per session."""

    def __init__(self, target, session_factory, client_factory):
        self.target = target
        self.session = session_factory(target)
        self.client = None
        self._client_factory = client_factory
        self._ca_certs = None

    def open(self):
        self.session.open()
        self.client = self._client_factory(self.session, self.target.name)
        return self

    def ca_certificates(self):
        """The CA signing certificate and its chain (GetCACert with GETCERT_CHAIN, else the certificate)."""
        if self._ca_certs is None:
            certs = []
            try:
                data = self.client.get_ca_cert(_ndr.GETCERT_CASIGCERT | _ndr.GETCERT_CHAIN)
                certs = _x509.load_certificates(data) if data else []
            except WcceError:
                certs = []
            if not certs:
                data = self.client.get_ca_cert(_ndr.GETCERT_CASIGCERT)
                certs = _x509.load_certificates(data) if data else []
            self._ca_certs = certs
        return self._ca_certs

    def close(self):
        self.session.close()


class Enroller(object):
    """Runs planned requests over one authenticated session per CA.

    ``auth``: an _auth.AuthMethod; ``ca_host``/``ca_name``/``directory``: CA selection (see select_cas);
    ``session_factory(target)`` defaults to _dcom.DcomSession(address, auth, timeout); ``client_factory(session,
    name)`` to _wcce.CertRequestClient. ``check_mode``: plan only, no CA contact and no writes.
    ``writer``: object with write(specs, validator) -> dict(changed, changed_paths, backup_files)
    (``_staged.ModuleFileWriter`` in modules). ``anchors``: an ``_anchors.AnchorSource``; issued certificates must
    chain to its anchors (without one, nothing is enrolled)."""

    def __init__(self, auth=None, ca_host=None, ca_name=None, directory=None, dns_server=None, timeout=30,
                 writer=None, check_mode=False, session_factory=None, client_factory=None, now=None,
                 auth_error=None, anchors=None):
        self.auth = auth
        self.anchors = anchors
        self.auth_error = auth_error
        self.ca_host = ca_host
        self.ca_name = ca_name
        self.directory = directory
        self.dns_server = dns_server
        self.timeout = timeout
        self.writer = writer or _PlainWriter()
        self.check_mode = check_mode
        self._session_factory = session_factory or self._default_session
        self._client_factory = client_factory or self._default_client
        self.now = now
        self._connections = {}
        self._down = {}
        self.sessions_opened = 0
        self.ca_contacted = False

    # ---- sessions ----
    def _default_session(self, target):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _dcom
        if getattr(self.auth, 'kind', '') == 'kerberos' and target.host and target.host != target.address:
            # Kerberos names the CA by its DNS name (the service ticket); the connection goes to its address.
            return _dcom.DcomSession(target.host, self.auth, timeout=self.timeout, remote_host=target.address)
        return _dcom.DcomSession(target.address, self.auth, timeout=self.timeout)

    @staticmethod
    def _default_client(session, name):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _wcce
        return _wcce.CertRequestClient(session, name)

    def connection_for(self, template):
        """An open _CaConnection to a CA for ``template`` (the next candidate when one is unavailable)."""
        if self.auth is None:
            if self.auth_error is not None:
                raise self.auth_error
            raise InvalidInput('Credentials are required to contact the CA (username with password or nt_hash)')
        targets = select_cas(template, self.ca_host, self.ca_name, self.directory, self.dns_server)
        for target in targets:
            conn = self._connections.get(target.key())
            if conn is not None:
                return conn
        errors = []
        for target in targets:
            if target.key() in self._down:
                errors.append(self._down[target.key()])
                continue
            conn = _CaConnection(target, self._session_factory, self._client_factory)
            self.ca_contacted = True
            try:
                conn.open()
            except (CaUnavailable, TransportError) as exc:
                if isinstance(exc, _errors.ProtocolError):
                    conn.close()
                    raise
                conn.close()
                self._down[target.key()] = (target, exc)
                errors.append((target, exc))
                continue
            except Exception:
                conn.close()
                raise
            self.sessions_opened += 1
            self._connections[target.key()] = conn
            return conn
        if len(errors) == 1:
            target, exc = errors[0]
            raise exc
        raise CaUnavailable('No CA for template %s could be reached' % template,
                            detail='; '.join('%s (%s): %s' % (t.name, t.address, e.to_message())
                                             for t, e in errors),
                            remedy='Check that the CA hosts are reachable on TCP 135 and the dynamic RPC ports '
                                   'and that Certificate Services runs.')

    def close(self):
        for conn in self._connections.values():
            conn.close()
        self._connections = {}
        if self.directory is not None:
            self.directory.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- the workflow ----
    def run(self, specs):
        """Plan and execute every request; returns a list of result dicts (``failed`` + ``msg`` on errors; the
        other requests still run)."""
        results = []
        renewal_days = self.directory.template_renewal_days if self.directory is not None else None
        for spec in specs:
            try:
                if not self.check_mode:   # a switch of these files a killed run left half done is finished first
                    _journal.recover(output_paths(spec).values())
                plan = plan_request(spec, now=self.now, template_renewal_days=renewal_days)
                results.append(self.execute(plan))
            except WcceError as exc:
                results.append(failure_result(spec, exc))
        if self.directory is not None and self.directory.error:
            for result in results:
                if result.get('renew_before_source') != 'option':
                    result.setdefault('warnings', []).append(self.directory.error)
        return results

    def execute(self, plan):
        spec = plan.spec
        result = base_result(plan)
        if plan.action == ACTION_NONE:
            result.update(self._write_unchanged(plan))
            return result
        if self.check_mode:
            result['changed'] = True
            result['disposition'] = None
            result['diff'] = plan_diff(plan)
            return result
        # every output can be written: found out now, not after the CA issued
        _files.check_output_paths(output_paths(spec), probe=not self.check_mode)
        self._trust()  # no independent anchor: fail before the CA is contacted
        conn = self.connection_for(spec.get('template'))
        result['ca'] = conn.target.to_dict()
        if plan.action == ACTION_REFRESH:
            ca_certs = conn.ca_certificates()
            chain = self._verified_chain(plan.current_cert, ca_certs, [], None)
            result.update(self._write(plan, plan.current_cert, chain, None))
            result['certificate'] = _x509.certificate_facts(plan.current_cert)
            result['diff'] = plan_diff(plan, plan.current_cert)
            return result
        try:
            enrollment = self._submit(plan, conn, result)
        except WcceError as exc:
            # only the CA's own HRESULT answer ('<call> failed (<host>)'); timeouts and lost connections keep
            # their summary
            if exc.summary.startswith('ICertRequestD') and exc.summary.split(' (', 1)[0].endswith(' failed'):
                exc.summary = 'The CA "%s" at %s refused the call' % (conn.target.name, conn.target.address)
                if exc.hresult == 0x80070057:
                    exc.summary += ' (is "%s" the CA name?)' % conn.target.name
            raise
        result['request_id'] = enrollment.request_id
        result['disposition_message'] = enrollment.message
        if enrollment.pending:
            result.update(self._handle_pending(plan, enrollment))
            result['diff'] = plan_diff(plan)
            return result
        if not enrollment.issued:
            summary = 'Retrieving request %s failed' % spec['request_id'] if plan.action == ACTION_RETRIEVE else \
                'The CA %s did not issue a certificate from template %s' % (conn.target.name, spec.get('template'))
            raise enrollment.error(summary)
        cert = _x509.load_certificate(enrollment.certificate_der)
        # The chain first: only a certificate that verifies as the CA's can be recorded as refused (a forged reply
        # must not block later runs).
        chain = self._verified_chain(cert, conn.ca_certificates(), enrollment.chain_der_list,
                                     enrollment.request_id)
        self._check_issued(plan, cert, enrollment.request_id, result)
        result['disposition'] = 'issued'
        result.update(self._write(plan, cert, chain, enrollment.request_id))
        result['changed'] = True
        result['certificate'] = _x509.certificate_facts(cert)
        result['diff'] = plan_diff(plan, cert)
        return result

    def _submit(self, plan, conn, result):
        spec = plan.spec
        client = conn.client
        if plan.action == ACTION_RETRIEVE:
            return client.retrieve(spec['request_id'])
        attributes = _csr.build_request_attributes(template=spec['template'])
        if plan.csr is not None:
            return client.request(spec['template'], plan.csr_der, attributes=attributes,
                                  flags=_ndr.CR_IN_PKCS10)
        if plan.renewal:
            sans = spec.get('wanted_sans') or _x509.certificate_sans(plan.current_cert) or None
            csr = _csr.build_csr(plan.key, subject=_renewal_subject(plan), sans=sans,
                                 renewal_certificate=plan.current_cert)
            cms = _renewal_request.build_renewal_request(csr, plan.current_cert, plan.current_key)
            enrollment = client.request(spec['template'], cms, attributes=attributes, flags=_ndr.CR_IN_PKCS7)
            if enrollment.issued or enrollment.pending or enrollment.hresult not in RENEWAL_FALLBACK_HRESULTS:
                result['renewal'] = True
                return enrollment
            err = enrollment.error('The CA refused the renewal request')
            result.setdefault('warnings', []).append(
                '%s; a new request was sent instead' % err.to_message().split('. What to do:')[0])
            plan.renewal = False
        csr = _csr.build_csr(plan.key, subject=spec.get('wanted_subject'), sans=spec.get('wanted_sans'))
        return client.request(spec['template'], csr, attributes=attributes, flags=_ndr.CR_IN_PKCS10)

    def _template_info(self, plan, result):
        template = plan.spec.get('template')
        lookup = getattr(self.directory, 'template_info', None)  # directories that only discover CAs lack it
        if lookup is None and template and self.directory is None:
            result.setdefault('warnings', []).append(
                'No directory (domain is not set): the certificate template %s was not read from Active Directory, '
                'so the extended key usages of the issued certificate were not compared with the template\'s and '
                'subject alternative names beyond the asked ones were accepted; set domain (with the directory '
                'credentials) for the full check' % template)
        if lookup is None or not template:
            return None
        info = lookup(template)
        if info is None and getattr(self.directory, 'template_error', None):
            result.setdefault('warnings', []).append('%s; the extended key usages of the issued certificate were '
                                                     'not compared' % self.directory.template_error)
        return info

    def _names_from_ad(self, info, result):
        """What the CA builds from the requester's account, for templates that build the names from AD (None when
        not known: no directory, no account, or the names come from the request)."""
        lookup = getattr(self.directory, 'account', None)
        user = getattr(self.auth, 'user', None)
        if lookup is None or not user or info is None or _match.names_from_request(info) is not False:
            return None
        domain = getattr(self.auth, 'domain', None)
        account = lookup('%s@%s' % (user, domain) if domain and '.' in domain else user)
        if account is None:
            if getattr(self.directory, 'template_error', None):
                result.setdefault('warnings', []).append('%s; the names of the issued certificate were not compared '
                                                         'with it' % self.directory.template_error)
            return None
        return _match.names_from_ad(info, account)

    def _check_issued(self, plan, cert, request_id, result):
        """The issued certificate must be what was asked for (_match.issued_differences); otherwise nothing is
        written and the refusal is recorded next to the certificate, so later runs do not ask the CA again."""
        spec = plan.spec
        wanted = plan.request_public_key  # None: retrieve in CSR mode without the key, nothing to compare with
        if wanted is not None and not _same_public_key(wanted, cert.public_key()):
            diffs = ['public key: the certificate is not for the key of the request']
            summary = ('The CA issued a certificate whose public key differs from the key of the request; nothing '
                       'was written')
            remedy = 'Check that request_id belongs to this key and CSR; if it does, report the CA behaviour.'
        else:
            sans = spec.get('wanted_sans')
            if plan.csr is not None and not sans:
                sans = _x509.certificate_sans(plan.csr) or None
            info = self._template_info(plan, result)
            diffs = _match.issued_differences(
                cert, subject=spec.get('wanted_subject'), sans=sans, template=spec.get('template'),
                template_info=info, csr_subject=plan.csr.subject if plan.csr is not None else None,
                ad_names=self._names_from_ad(info, result),
                renewed=plan.current_cert if result.get('renewal') else None)
            summary = 'The CA issued a certificate that is not what was asked for; nothing was written'
            remedy = 'Check the template (does it build the names from Active Directory?) and the CA policy.'
        if not diffs:
            return
        record_error = self._record_refusal(plan, request_id, diffs)
        if record_error:
            diffs.append('the refusal could not be recorded (%s)' % record_error)
        else:
            remedy += (' The refusal is recorded in %s next to the certificate: the CA is not asked again for the '
                       'same request until the request changes or force=true.'
                       % os.path.basename(_match.refusal_path(spec['certificate_path'])))
        raise CertificateError(summary, request_id=request_id, detail='; '.join(diffs), remedy=remedy)

    def _record_refusal(self, plan, request_id, diffs):
        spec = plan.spec
        content = _match.refusal_content(request_id, diffs, _match.asked(spec, plan.csr), self.now)
        try:
            # the record is our own state, owned by us and not writable by others (read_refusal trusts no other)
            self.writer.write([_staged.FileSpec(_match.refusal_path(spec['certificate_path']), content,
                                                mode=_files.CERT_MODE)])
        except WcceError as exc:
            return exc.to_message()
        return None

    def _trust(self):
        """The independent trust anchors (_anchors), read before the CA is contacted."""
        if self.anchors is None:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors
            _anchors.AnchorSource().check()
        return self.anchors.load()

    def _verified_chain(self, cert, ca_certs, chain_der_list, request_id):
        """The CA certificates of the path from ``cert`` to an independent anchor; the CA's certificates
        (GetCACert, the reply) only serve as intermediates."""
        untrusted = list(ca_certs) + [_x509.load_certificate(d) for d in (chain_der_list or [])]
        return self._trust().verify(cert, untrusted, request_id=request_id, now=self.now)

    def _handle_pending(self, plan, enrollment):
        spec = plan.spec
        out = {'disposition': 'pending', 'changed': plan.action == ACTION_ENROLL}
        how = ('run the task again with request_id=%s after a CA manager approved it' % enrollment.request_id)
        out['msg'] = 'Request %s is pending approval by a certificate manager of %s; %s' % (
            enrollment.request_id, plan.spec.get('template'), how)
        if plan.key_is_new and plan.action == ACTION_ENROLL:
            if plan.current_key is None:
                target = spec['private_key_path']
            else:
                target = spec['private_key_path'] + PENDING_KEY_SUFFIX
                out['pending_private_key_path'] = target
            written = self.writer.write([self._key_spec(plan, target)])
            out['paths'] = {'private_key': target}
            out['backup_files'] = written.get('backup_files') or {}
        return out

    # ---- output ----
    def _key_spec(self, plan, path=None):
        spec = plan.spec
        mode = spec.get('private_key_mode')
        if mode is None and plan.current_key_bytes is not None and path in (None, spec['private_key_path']):
            mode = _files.current_secret_mode(spec['private_key_path'])
        content = _keys.private_key_bytes(plan.key, 'pem', spec.get('private_key_passphrase'))
        return _staged.FileSpec(path or spec['private_key_path'], content, mode=mode, owner=spec.get('owner'),
                                group=spec.get('group'), backup=spec['backup'], secret=True)

    def _output_specs(self, plan, cert, chain):
        spec = plan.spec
        fmt = spec['format']
        out = []
        kinds = {}

        def add(kind, path, content, secret=False, mode=None):
            fs = _staged.FileSpec(path, content, mode=mode if mode is not None else spec.get('mode'),
                                  owner=spec.get('owner'), group=spec.get('group'), backup=spec['backup'],
                                  secret=secret)
            out.append(fs)
            kinds[kind] = fs.path

        if plan.key_is_new:
            ks = self._key_spec(plan)
            out.append(ks)
            kinds['private_key'] = ks.path
        add('certificate', spec['certificate_path'], _x509.encode_certificate(cert, fmt))
        if spec.get('chain_path'):
            add('chain', spec['chain_path'], _x509.encode_chain(chain, fmt))
        if spec.get('fullchain_path'):
            add('fullchain', spec['fullchain_path'], _x509.encode_chain([cert] + list(chain), fmt))
        if spec.get('pkcs12_path'):
            key = plan.key or plan.current_key
            if key is None:
                raise InvalidInput('pkcs12_path needs the private key at private_key_path')
            content = None
            existing = _files.read_file(spec['pkcs12_path'])
            if existing is not None:
                try:
                    old_key, old_cert, old_extra = _x509.load_pkcs12(existing, spec.get('pkcs12_passphrase'))
                    if old_cert is not None and old_key is not None and \
                            _x509.cert_der(old_cert) == _x509.cert_der(cert) and \
                            _same_public_key(old_key.public_key(), key.public_key()) and \
                            [_x509.cert_der(c) for c in old_extra or []] == [_x509.cert_der(c) for c in chain]:
                        content = existing   # same content; a new bundle would differ only by its random salt
                except WcceError:
                    content = None
            if content is None:
                cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                content = _x509.pkcs12_bundle(key, cert, chain, spec.get('pkcs12_passphrase'),
                                              friendly_name=cn[0].value if cn else None)
            add('pkcs12', spec['pkcs12_path'], content, secret=True,
                mode=spec.get('private_key_mode') if spec.get('private_key_mode') is not None else 0o600)
        return out, kinds

    def _write(self, plan, cert, chain, request_id):
        specs, kinds = self._output_specs(plan, cert, chain)
        key = plan.key or plan.current_key
        cert_path = plan.spec['certificate_path']
        key_path = plan.spec.get('private_key_path')
        passphrase = plan.spec.get('private_key_passphrase')

        def validator(staged):
            # Last check on the bytes about to be renamed into place: the certificate belongs to the key.
            staged_cert = _x509.load_certificates(_files.read_file(staged[cert_path]))[0]
            if key_path and key_path in staged and key is not None:
                staged_key = _keys.load_private_key(_files.read_file(staged[key_path]), passphrase)
                if not _x509.key_matches_certificate(staged_key, staged_cert):
                    raise CertificateError('The staged certificate does not match the staged private key; nothing '
                                           'was written', request_id=request_id)

        written = self.writer.write(specs, validator=validator)
        if not self.check_mode:
            for leftover in (plan.pending_key_path, _match.refusal_path(plan.spec['certificate_path'])):
                try:
                    if leftover:
                        os.unlink(leftover)
                except OSError:
                    pass
        return {'changed': bool(written.get('changed')), 'paths': kinds,
                'backup_files': written.get('backup_files') or {}}

    def _write_unchanged(self, plan):
        """Nothing to enroll: only owner/group/mode of the existing files may need fixing."""
        spec = plan.spec
        out = {'changed': False, 'disposition': None, 'paths': {}}
        if plan.current_cert is not None:
            out['certificate'] = _x509.certificate_facts(plan.current_cert)
        specs = []
        for kind, key in (('certificate', 'certificate_path'), ('chain', 'chain_path'),
                          ('fullchain', 'fullchain_path'), ('pkcs12', 'pkcs12_path'),
                          ('private_key', 'private_key_path')):
            path = spec.get(key)
            data = _files.read_file(path) if path else None
            if data is None:
                continue
            secret = kind in ('pkcs12', 'private_key')
            mode = spec.get('private_key_mode') if secret else spec.get('mode')
            if mode is None and spec.get('owner') is None and spec.get('group') is None:
                continue
            if mode is None:
                mode = os.stat(path).st_mode & 0o7777
            specs.append(_staged.FileSpec(path, data, mode=mode, owner=spec.get('owner'), group=spec.get('group'),
                                          secret=secret))
        if specs:
            written = self.writer.write(specs)
            out['changed'] = bool(written.get('changed'))
        out['diff'] = plan_diff(plan, plan.current_cert)
        return out


class _PlainWriter(object):
    """Writer for use outside Ansible (roles' helpers, tests): StagedWrite directly, with its own backups."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode

    def write(self, specs, validator=None):
        specs = list(specs)
        if self.check_mode:
            return {'changed': _staged.StagedWrite(specs).would_change(), 'backup_files': {}, 'changed_paths': []}
        with _staged.StagedWrite(specs, validator=validator) as sw:
            sw.commit()
        return {'changed': sw.changed, 'backup_files': dict(sw.backups), 'changed_paths': sw.changed_paths}


def _renewal_subject(plan):
    """Renewals keep the subject of the certificate being renewed unless a subject is asked for."""
    if plan.spec.get('wanted_subject'):
        return plan.spec['wanted_subject']
    return [(attr.oid.dotted_string, attr.value) for rdn in plan.current_cert.subject.rdns for attr in rdn]


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------
def base_result(plan):
    spec = plan.spec
    out = {
        'changed': False,
        'action': plan.action,
        'reason': str(plan.reason) if plan.reason is not None else None,
        'reason_code': getattr(plan.reason, 'code', None),
        'template': spec.get('template'),
        'certificate_path': spec['certificate_path'],
        'request_id': spec.get('request_id'),
        'disposition': None,
        'disposition_message': None,
        'renewal': False,
        'key_generated': bool(plan.key_is_new and plan.action == ACTION_ENROLL),
        'renew_before': plan.renew_before,
        'renew_before_source': plan.renew_before_source,
        'paths': {},
        'backup_files': {},
    }
    if plan.warnings:
        out['warnings'] = list(plan.warnings)
    return out


def failure_result(spec, exc):
    out = {
        'failed': True,
        'changed': False,
        'msg': exc.to_message(),
        'template': spec.get('template'),
        'certificate_path': spec.get('certificate_path'),
        'request_id': exc.request_id if exc.request_id is not None else spec.get('request_id'),
        'disposition': 'denied' if isinstance(exc, (_errors.RequestDenied, _errors.BadRequest)) else 'error',
        'disposition_message': exc.detail if isinstance(exc.detail, str) else None,
        'error': exc.to_dict(),
    }
    return out


def _cert_view(cert):
    if cert is None:
        return {'state': 'absent'}
    facts = _x509.certificate_facts(cert)
    return dict((k, facts[k]) for k in ('subject', 'subject_alt_names', 'issuer', 'serial_number', 'not_before',
                                        'not_after', 'fingerprint_sha256'))


def plan_diff(plan, new_cert=None):
    """before/after of the certificate for --diff (what is known of the new one in check mode)."""
    before = _cert_view(plan.current_cert)
    if plan.action == ACTION_NONE:
        return {'before': before, 'after': before}
    if new_cert is not None:
        after = _cert_view(new_cert)
    else:
        after = {'state': 'pending' if plan.action != ACTION_REFRESH else 'outputs refreshed',
                 'template': plan.spec.get('template'), 'reason': str(plan.reason)}
        if plan.spec.get('wanted_subject'):
            after['subject'] = _csr.parse_subject(plan.spec['wanted_subject']).rfc4514_string()
        if plan.spec.get('wanted_sans'):
            after['subject_alt_names'] = _x509.format_sans(plan.spec['wanted_sans'])
        if plan.action == ACTION_REFRESH:
            after = dict(before, outputs='rewritten: %s' % plan.reason)
        else:
            after['state'] = 'a new certificate would be requested' if not new_cert else 'issued'
    return {'before': before, 'after': after}


# ---------------------------------------------------------------------------------------------------------------
# Authentication from the shared connection options
# ---------------------------------------------------------------------------------------------------------------
def dcom_auth_from_params(params):
    """The _auth method for DCOM from the shared connection options: auth=password/ntlm -> NTLM with the password
    or NT hash; auth=kerberos -> Kerberos (password/NT hash or the ccache in KRB5CCNAME)."""
    username = params.get('username')
    method = params.get('auth') or 'password'
    if method == 'kerberos':
        # Kerberos: the principal is username, or the one in the ccache, or the machine's <HOST>$ from a keytab.
        if not username and params.get('kerberos_keytab'):
            username = _kerberos.default_machine_principal()
        elif not username and not params.get('password') and not params.get('nt_hash'):
            username = _kerberos.ccache_principal(params.get('kerberos_ccache'))
        user, domain = _auth.split_user(username, None) if username else (None, None)
        return _auth.KerberosAuth(user, domain or params.get('domain') or '', password=params.get('password'),
                                  nt_hash=params.get('nt_hash'), kdc_host=params.get('domain_controller'),
                                  ccache=params.get('kerberos_ccache'), keytab=params.get('kerberos_keytab'),
                                  dns_server=params.get('domain_controller'))
    if not username:
        raise InvalidInput('username is required to authenticate to the CA')
    user, domain = _auth.split_user(username, None)
    domain = domain or params.get('domain') or ''
    if params.get('nt_hash') and not params.get('password'):
        return _auth.NtHashAuth(user, domain, params['nt_hash'])
    return _auth.PasswordAuth(user, domain, params.get('password'))
