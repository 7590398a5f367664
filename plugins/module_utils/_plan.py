# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of one enrollment request: one job, deciding without the network what a request needs.

``plan_request(spec)`` reads the key, certificate and CSR on disk and decides with ``_renewal`` whether the CA
must be contacted: action ``none``, ``enroll``, ``retrieve`` or ``refresh`` (only the derived outputs - chain, full
chain, PKCS#12 - are missing or stale). It chooses the key: reuse the key at ``private_key_path``, generate one
when missing (never overwritten unless ``regenerate_key``), the pending key of a retrieved request, or the public
key of ``csr_path``/``csr_content``; it checks a pinned CSR and refuses a request the CA already answered with a
certificate that was not what was asked for (``_match`` refusal record), unless ``force``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import functools
import os

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _keygen
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _match
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    CertificateError,
    InvalidInput,
    WcceError,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._results import (  # noqa: F401 - the plan's vocabulary
    ACTION_ENROLL,
    ACTION_NONE,
    ACTION_REFRESH,
    ACTION_RETRIEVE,
)

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:  # else reported by the module (_deps.check)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization


PENDING_KEY_SUFFIX = '.pending'

_UTC = datetime.timezone.utc


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
        self._key = None               # the key the new certificate is for (None in CSR mode without key)
        self.key_is_new = False
        self.renewal = False
        self.renew_before = None
        self.renew_before_source = None
        self.pending_key_path = None
        self.key_rule = None           # the template's key rule (_templates.key_rule), read only to enroll
        self.hash_name = None          # signature hash of a CSR we build (the template's msPKI-Hash-Algorithm)
        self.warnings = []

    @property
    def key(self):
        """The key the new certificate is for; a new key made in the background (``_keygen``) is waited for
        here."""
        if isinstance(self._key, _keygen.PendingKey):
            self._key = self._key.result()
        return self._key

    @key.setter
    def key(self, value):
        self._key = value

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


def plan_request(spec, now=None, template_renewal_days=None, template_key_rule=None, keygen=None, check_key=True):
    """Decide what one request needs. ``template_renewal_days(template)`` returns the template's renewal period in
    days or None; it is only called when the certificate on disk fits otherwise. ``template_key_rule(template)``
    returns the template's key rule (_templates.key_rule) or None; it is only called to enroll. ``keygen``: a
    ``_keygen.KeyMaker`` that makes a new key in the background (default: at once). ``check_key=False`` skips the
    RSA consistency check of the key on disk (for a plan whose key signs nothing: the no-op path). Raises
    InvalidInput for keys or CSRs that cannot be used (for the template too: before the CA is contacted)."""
    now = now or datetime.datetime.now(_UTC)
    plan = Plan(spec)
    plan.current_cert = _read_existing_cert(spec['certificate_path'], plan)
    key_path = spec.get('private_key_path')
    if key_path:
        data = _files.read_file(key_path)
        if data is not None:
            plan.current_key_bytes = data
            try:
                plan.current_key = _keys.load_private_key(data, spec.get('private_key_passphrase'), check_key)
            except InvalidInput as exc:
                raise InvalidInput('Cannot load the private key %s (wrong private_key_passphrase, or not a key); '
                                   'it was left untouched' % key_path, detail=exc.detail)
    if spec['csr_mode']:
        plan.csr, plan.csr_der = _load_csr(spec)
        if spec.get('csr_pinned'):
            _check_csr(spec, plan.csr, plan.csr_der)
        if plan.current_key is not None and not same_public_key(plan.current_key.public_key(),
                                                                plan.csr.public_key()):
            raise InvalidInput('The CSR was not made with the private key %s' % key_path)
        plan.key = plan.current_key
        match_key = plan.current_key or plan.csr
        wanted_sans = _csr_sans(plan.csr)
        key_params = None
    else:
        match_key = plan.current_key
        wanted_sans = spec.get('wanted_sans')
        key_params = _key_params(spec)
    template_days = None
    if template_renewal_days is not None and spec.get('template'):
        template_days = functools.partial(template_renewal_days, spec['template'])
    needed, reason, plan.renew_before, plan.renew_before_source = _renewal.decide(
        plan.current_cert, match_key, renew_before=spec.get('renew_before'), template_days=template_days,
        wanted_subject=spec.get('wanted_subject'), wanted_sans=wanted_sans, wanted_template=spec.get('template'),
        now=now, force=spec['force'], key_params=key_params)
    plan.reason = reason
    if not needed:
        stale = _stale_outputs(plan)
        if stale:
            plan.action = ACTION_REFRESH
            plan.reason = _renewal.Reason('outputs_stale', 'the certificate fits but %s' % stale)
        plan.key = plan.current_key
        return plan
    if reason.code == _renewal.REASON_KEY_PARAMS and not spec['regenerate_key']:
        raise InvalidInput('The private key %s does not fit the requested key parameters (%s); it is never '
                           'replaced unless regenerate_key=true' % (key_path, reason))
    plan.action = ACTION_RETRIEVE if spec.get('request_id') else ACTION_ENROLL
    _check_refusal(plan)
    if plan.action == ACTION_ENROLL and template_key_rule is not None:
        plan.key_rule = template_key_rule(spec['template'])
        plan.hash_name = _keys.template_hash(plan.key_rule)
        if plan.csr is not None:
            _check_template_key(plan, plan.csr.public_key(), 'The key of the CSR does not fit: %s; nothing was sent '
                                                             'to the CA')
    if not spec['csr_mode']:
        _choose_key(plan, now, keygen or _keygen.KeyMaker(background=False))
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


def _choose_key(plan, now, keygen):
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
        params = _keys.template_key_params(plan.key_rule, spec.get('key_type'), spec.get('key_size'),
                                           spec.get('curve'))
        plan.key = keygen(params['key_type'], params['key_size'] or 2048, params['curve'] or 'secp256r1')
        plan.key_is_new = True
    else:
        _check_template_key(plan, plan.current_key, 'The private key %s does not fit: %%s; it is never replaced '
                                                    'unless regenerate_key=true' % spec['private_key_path'])
        plan.key = plan.current_key
    plan.renewal = _renewal.sends_renewal_request(spec['renewal_request'], plan.current_cert, plan.current_key,
                                                  plan.reason, now)


def _check_template_key(plan, key, message):
    problem = _keys.template_key_problem(plan.key_rule, key)
    if problem:
        raise InvalidInput(message % problem)


def same_public_key(a, b):
    """The two public keys are the same (SubjectPublicKeyInfo)."""
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
                not same_public_key(key.public_key(), cert.public_key()):
            return 'pkcs12_path (%s) does not hold the current certificate and key' % spec['pkcs12_path']
    return None
