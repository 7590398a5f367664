# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The enroller: one job, the workflow taking planned requests from "what is wanted" to "files on disk".

Per request (``Enroller.run``): finish a file switch a killed run left half done (``_journal.recover``), plan
(``_plan.plan_request``, no network), then execute: nothing to do (only file attributes, ``_outputs``), check mode
(say what would change), or contact the CA over the session pool (``_ca_session.CaPool``: one authenticated session
per CA, CAs from the options or the directory, the next one when a CA is unavailable), submit a new, renewal
(with fallback to a new request, ``_renewal``) or retrieval request, verify the issued certificate (public key,
``IssuedCheck`` against what was asked, the path to an independent anchor of ``_anchors``, never one from the CA)
and write the outputs all-or-nothing (``_outputs``). Pending requests return their request ID. In a run of
several requests the CA is talked to in the calling thread while the previous request is finished (verified,
compared, written) in a background thread (``_finisher``), and new files are switched together at the end of the
run (``_write_group``).

Results: ``base_result``/``failure_result``/``plan_diff`` (the result dict of one request, --diff), ``summary``
and ``finish`` (the module's exit). Failures raise ``_errors.AdcsError`` subclasses (``WcceError`` for the CA)
whose ``to_message()`` names the HRESULT, its meaning, the request ID and what to do.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import functools
import os
import threading

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _errors
from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _finisher
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _keygen
from ansible_collections.adcs.enrollment.plugins.module_utils import _match
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, CertificateError, WcceError
from ansible_collections.adcs.enrollment.plugins.module_utils._outputs import Outputs
from ansible_collections.adcs.enrollment.plugins.module_utils._plan import (
    ACTION_ENROLL,
    ACTION_NONE,
    ACTION_REFRESH,
    ACTION_RETRIEVE,
    plan_request,
    same_public_key,
)
from ansible_collections.adcs.enrollment.plugins.module_utils._request_spec import output_paths


class Enroller(object):
    """Runs planned requests over one authenticated session per CA.

    ``auth``: an _auth.AuthMethod; ``ca_host``/``ca_name``/``directory``: CA selection (see
    _directory.select_cas); ``session_factory(target)`` and ``client_factory(session, name)``: see
    _ca_session.CaSession. ``check_mode``: plan only, no CA contact and no writes. ``writer``: object with
    write(specs, validator) -> dict(changed, changed_paths, backup_files) (``_staged.ModuleFileWriter``), honouring
    the same check mode. ``anchors``: an ``_anchors.AnchorSource``; issued certificates must chain to its anchors
    (without one, nothing is enrolled)."""

    def __init__(self, auth=None, ca_host=None, ca_name=None, directory=None, dns_server=None, timeout=30,
                 writer=None, check_mode=False, session_factory=None, client_factory=None, now=None,
                 auth_error=None, anchors=None, keys=None):
        if writer is None:
            raise ValueError('Enroller needs a writer (_staged.ModuleFileWriter)')
        self.auth = auth
        self.anchors = anchors
        self.directory = directory
        self.check_mode = check_mode
        self.outputs = Outputs(writer, check_mode)
        self.now = now
        self._pool_args = (auth, dict(ca_host=ca_host, ca_name=ca_name, directory=directory, dns_server=dns_server),
                           timeout, session_factory, client_factory, auth_error)
        self._pool = None
        self._probed = set()   # output directories a probe file showed writable in this run
        # (index, CA unavailable?) of the requests whose CA failure says the cached policy changed
        self.policy_refused = []
        self._directory_lock = threading.RLock()
        # new keys: made in background threads; ``keys`` may have begun one already (early_key)
        self.keys = keys if keys is not None else _keygen.KeyMaker(background=not check_mode)

    @property
    def pool(self):
        """The CA session pool (``_ca_session.CaPool``), made (and the protocol stack imported) on first use."""
        if self._pool is None:
            from ansible_collections.adcs.enrollment.plugins.module_utils import _directory
            from ansible_collections.adcs.enrollment.plugins.module_utils._ca_session import CaPool
            auth, where, timeout, session_factory, client_factory, auth_error = self._pool_args
            select = functools.partial(_directory.select_cas, **where)
            self._pool = CaPool(auth, select, timeout, session_factory, client_factory, auth_error)
        return self._pool

    @property
    def sessions_opened(self):
        return self._pool.sessions_opened if self._pool is not None else 0

    @property
    def ca_contacted(self):
        return self._pool.ca_contacted if self._pool is not None else False

    def close(self):
        for held in (self._pool, self.directory):
            if held is not None:
                held.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- the workflow ----
    def run(self, specs):
        """Plan and execute every request; returns a list of result dicts (``failed`` + ``msg`` on errors; the
        other requests still run)."""
        renewal_days = self.directory.template_renewal_days if self.directory is not None else None
        # Every request is planned first; the new keys are generated in background threads (_keygen) while the
        # CA is contacted for the requests before them.
        with self.keys as keys:
            plans = []
            listings = {}   # each output directory listed once for the leftovers of killed runs
            for spec in specs:
                try:
                    if not self.check_mode:   # a switch of these files a killed run left half done is finished first
                        _journal.recover(output_paths(spec).values(), listings)
                    plans.append(plan_request(spec, now=self.now, template_renewal_days=renewal_days,
                                              template_key_rule=self._key_rule, keygen=keys))
                except AdcsError as exc:
                    plans.append(failure_result(spec, exc))
            with self._write_group(specs, plans), \
                    _finisher.Finisher(background=len(specs) > 1 and not self.check_mode) as finisher:
                for index, (spec, plan) in enumerate(zip(specs, plans)):
                    try:
                        finisher.add(spec, plan if isinstance(plan, dict) else self.execute(plan))
                    except AdcsError as exc:
                        if getattr(self.directory, 'from_cache', False) and _says_policy_changed(exc):
                            self.policy_refused.append((index, isinstance(exc, _errors.CaUnavailable)))
                        finisher.add(spec, failure_result(spec, exc))
            results = [_committed(spec, result) for spec, result in zip(specs, finisher.results(failure_result))]
        if self.directory is not None and self.directory.error:
            for result in results:
                if result.get('renew_before_source') != 'option':
                    result.setdefault('warnings', []).append(self.directory.error)
        return results

    def _write_group(self, specs, plans):
        """The run's new files are switched together at its end (``_write_group``), when the writer can and more
        than nothing is to be written."""
        group = getattr(self.outputs.writer, 'group', None)
        if group is None or self.check_mode or all(isinstance(p, dict) or p.action == ACTION_NONE for p in plans):
            return contextlib.nullcontext()
        return group([path for spec in specs for path in output_paths(spec).values()])

    def _key_rule(self, template):
        """The template's key rule (_templates.key_rule) from the directory, or None (no directory, not read)."""
        lookup = getattr(self.directory, 'template_info', None)
        info = lookup(template) if lookup is not None and template else None
        return (info or {}).get('requirements', {}).get('key')

    def execute(self, plan):
        """The result of ``plan``, or a function that finishes it (verify, compare, write: no CA contact), which
        ``run`` calls in order in its finisher thread while the next request is at the CA."""
        spec = plan.spec
        result = base_result(plan)
        if plan.action == ACTION_NONE:
            def unchanged():
                result.update(self.outputs.write_unchanged(plan))
                result['diff'] = plan_diff(plan, plan.current_cert)
                return result
            return unchanged
        if self.check_mode:
            result['changed'] = True
            result['disposition'] = None
            result['diff'] = plan_diff(plan)
            return result
        # every output can be written: found out now, not after the CA issued
        _files.check_output_paths(output_paths(spec), probe=not self.check_mode, probed=self._probed)
        self._trust()  # no independent anchor: fail before the CA is contacted
        with self._directory_lock:   # the finisher thread may read the directory (IssuedCheck)
            ca = self.pool.session_for(spec.get('template'))
        result['ca'] = ca.target.to_dict()
        if plan.action == ACTION_REFRESH:
            ca_certs = ca.ca_certificates()   # GetCACert on the session: in this thread

            def refreshed():
                chain = self._verified_chain(plan.current_cert, ca_certs, [], None)
                result.update(self.outputs.write(plan, plan.current_cert, chain, None))
                result['certificate'] = _x509.certificate_facts(plan.current_cert)
                result['diff'] = plan_diff(plan, plan.current_cert)
                return result
            return refreshed
        try:
            enrollment = submit(plan, ca.client, result)
        except WcceError as exc:
            from ansible_collections.adcs.enrollment.plugins.module_utils._ca_session import name_the_ca
            raise name_the_ca(exc, ca.target)
        result['request_id'] = enrollment.request_id
        result['disposition_message'] = enrollment.message
        if enrollment.pending:
            def pending():
                result.update(self._handle_pending(plan, enrollment))
                result['diff'] = plan_diff(plan)
                return result
            return pending
        if not enrollment.issued:
            summary = 'Retrieving request %s failed' % spec['request_id'] if plan.action == ACTION_RETRIEVE else \
                'The CA %s did not issue a certificate from template %s' % (ca.target.name, spec.get('template'))
            raise enrollment.error(summary)
        ca_certs = ca.ca_certificates()   # GetCACert on the session (once): in this thread
        return lambda: self._finish_issued(plan, enrollment, ca_certs, result)

    def _finish_issued(self, plan, enrollment, ca_certs, result):
        cert = _x509.load_certificate(enrollment.certificate_der)
        # The chain first: only a certificate that verifies as the CA's can be recorded as refused (a forged reply
        # must not block later runs).
        chain = self._verified_chain(cert, ca_certs, enrollment.chain_der_list, enrollment.request_id)
        with self._directory_lock:
            IssuedCheck(self.directory, self.auth, self.outputs, self.now).check(plan, cert, enrollment.request_id,
                                                                                 result)
        result['disposition'] = 'issued'
        result.update(self.outputs.write(plan, cert, chain, enrollment.request_id))
        result['changed'] = True
        result['certificate'] = _x509.certificate_facts(cert)
        result['diff'] = plan_diff(plan, cert, result['certificate'])
        return result

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
        out = {'disposition': 'pending', 'changed': plan.action == ACTION_ENROLL}
        how = ('run the task again with request_id=%s after a CA manager approved it' % enrollment.request_id)
        out['msg'] = 'Request %s is pending approval by a certificate manager of %s; %s' % (
            enrollment.request_id, plan.spec.get('template'), how)
        if plan.key_is_new and plan.action == ACTION_ENROLL:
            out.update(self.outputs.write_pending_key(plan))
        return out


def _says_policy_changed(exc):
    from ansible_collections.adcs.enrollment.plugins.module_utils import _policy_cache
    return _policy_cache.says_policy_changed(exc)


def submit(plan, client, result):
    """Send the request of ``plan`` to the CA (``client``: a _wcce.CertRequestClient): a retrieval, the CSR, a
    renewal request (a refused one is retried as a new request, with a warning) or a new request."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
    spec = plan.spec
    if plan.action == ACTION_RETRIEVE:
        return client.retrieve(spec['request_id'])
    attributes = _csr.build_request_attributes(template=spec['template'])
    if plan.csr is not None:
        return client.request(spec['template'], plan.csr_der, attributes=attributes, flags=_ndr.CR_IN_PKCS10)
    if plan.renewal:
        from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal_request
        sans = spec.get('wanted_sans') or _x509.certificate_sans(plan.current_cert) or None
        csr = _csr.build_csr(plan.key, subject=_renewal.renewal_subject(spec.get('wanted_subject'),
                                                                        plan.current_cert),
                             sans=sans, renewal_certificate=plan.current_cert, hash_name=plan.hash_name or 'sha256')
        cms = _renewal_request.build_renewal_request(csr, plan.current_cert, plan.current_key)
        enrollment = client.request(spec['template'], cms, attributes=attributes, flags=_ndr.CR_IN_PKCS7)
        if not _renewal.falls_back(enrollment):
            result['renewal'] = True
            return enrollment
        result.setdefault('warnings', []).append(_renewal.fallback_warning(enrollment))
        plan.renewal = False
    csr = _csr.build_csr(plan.key, subject=spec.get('wanted_subject'), sans=spec.get('wanted_sans'),
                         hash_name=plan.hash_name or 'sha256')
    return client.request(spec['template'], csr, attributes=attributes, flags=_ndr.CR_IN_PKCS10)


class IssuedCheck(object):
    """The issued certificate must be what was asked for (_match.issued_differences, with the template and the
    requester's account from the directory when there is one); otherwise nothing is written and the refusal is
    recorded next to the certificate, so later runs do not ask the CA again."""

    def __init__(self, directory, auth, outputs, now=None):
        self.directory = directory
        self.auth = auth
        self.outputs = outputs
        self.now = now

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

    def _differences(self, plan, cert, result):
        spec = plan.spec
        sans = spec.get('wanted_sans')
        if plan.csr is not None and not sans:
            sans = _x509.certificate_sans(plan.csr) or None
        info = self._template_info(plan, result)
        return _match.issued_differences(
            cert, subject=spec.get('wanted_subject'), sans=sans, template=spec.get('template'),
            template_info=info, csr_subject=plan.csr.subject if plan.csr is not None else None,
            ad_names=self._names_from_ad(info, result),
            renewed=plan.current_cert if result.get('renewal') else None)

    def check(self, plan, cert, request_id, result):
        """Raises CertificateError (after recording the refusal) when ``cert`` is not what was asked for."""
        spec = plan.spec
        wanted = plan.request_public_key  # None: retrieve in CSR mode without the key, nothing to compare with
        if wanted is not None and not same_public_key(wanted, cert.public_key()):
            diffs = ['public key: the certificate is not for the key of the request']
            summary = ('The CA issued a certificate whose public key differs from the key of the request; nothing '
                       'was written')
            remedy = 'Check that request_id belongs to this key and CSR; if it does, report the CA behaviour.'
        else:
            diffs = self._differences(plan, cert, result)
            if diffs and getattr(self.directory, 'from_cache', False) and self.directory.refresh():
                # the template (or account) came from the policy cache: compared again with Active Directory's
                # before anything is refused
                diffs = self._differences(plan, cert, result)
            summary = 'The CA issued a certificate that is not what was asked for; nothing was written'
            remedy = 'Check the template (does it build the names from Active Directory?) and the CA policy.'
        if not diffs:
            return
        record_error = self.outputs.record_refusal(plan, request_id, diffs, self.now)
        if record_error:
            diffs.append('the refusal could not be recorded (%s)' % record_error)
        else:
            remedy += (' The refusal is recorded in %s next to the certificate: the CA is not asked again for the '
                       'same request until the request changes or force=true.'
                       % os.path.basename(_match.refusal_path(spec['certificate_path'])))
        raise CertificateError(summary, request_id=request_id, detail='; '.join(diffs), remedy=remedy)


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


def _committed(spec, result):
    """The result of a request whose new files were switched with the group: a failure when the switch failed."""
    commit = result.pop('_commit', None)
    if commit is None or commit.error is None:
        return result
    failed = failure_result(spec, commit.error)
    failed['request_id'] = result.get('request_id')
    return failed


def failure_result(spec, exc):
    """The result of a request that failed with ``exc`` (an AdcsError; WcceErrors add request ID and detail)."""
    request_id, detail = getattr(exc, 'request_id', None), getattr(exc, 'detail', None)
    return {
        'failed': True,
        'changed': False,
        'msg': exc.to_message(),
        'template': spec.get('template'),
        'certificate_path': spec.get('certificate_path'),
        'request_id': request_id if request_id is not None else spec.get('request_id'),
        'disposition': 'denied' if isinstance(exc, (_errors.RequestDenied, _errors.BadRequest)) else 'error',
        'disposition_message': detail if isinstance(detail, str) else None,
        'error': exc.to_dict(),
    }


def _cert_view(cert, facts=None):
    if cert is None:
        return {'state': 'absent'}
    facts = facts or _x509.certificate_facts(cert)
    return dict((k, facts[k]) for k in ('subject', 'subject_alt_names', 'issuer', 'serial_number', 'not_before',
                                        'not_after', 'fingerprint_sha256'))


def plan_diff(plan, new_cert=None, new_facts=None):
    """before/after of the certificate for --diff (what is known of the new one in check mode)."""
    before = _cert_view(plan.current_cert)
    if plan.action == ACTION_NONE:
        return {'before': before, 'after': before}
    if new_cert is not None:
        after = _cert_view(new_cert, new_facts)
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


def enroll(params, specs, keeper, writer, check_mode=False, project=None, keys=None, cache=None):
    """The results of wcce_request's requests ``specs`` that need the CA or Active Directory: what discovery
    learns comes from and goes to the policy cache (``cache``: ``_keygen.begin``'s), the first request's new key
    begins at once (``keys``: the run's ``_keygen.KeyMaker``, which may have begun it), requests the CA refused in a
    way that says the cached policy changed are retried once with Active Directory read again, and ``keeper``
    records the states (``project``: see ``_state.Keeper.record``)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _deps, _pipe
    if keys is None:
        keys, cache = _keygen.begin(params, specs[0], check_mode)
    # a key that only regenerate_key asks for begins now (one for an absent key file began before the plan)
    _keygen.early_key(keys, specs[0], known_template=cache.template if cache is not None else None,
                      replacing=True)
    from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _auth, _directory
    found = _directory.from_params(params, check_mode=check_mode, cache=cache)
    directory = keeper.directory(found)
    _deps.require('impacket')
    auth, auth_error = None, None
    try:
        auth = _auth.dcom_auth(params)
    except AdcsError as exc:
        auth_error = exc
    anchors = _anchors.AnchorSource.from_params(
        params, connect_directory=(lambda: directory.conn) if directory is not None else None)

    def enroller(keys=None):
        return Enroller(
            auth=auth, ca_host=params.get('ca_host'), ca_name=params.get('ca_name'), directory=directory,
            dns_server=params.get('domain_controller'), timeout=params.get('timeout') or 30,
            writer=writer, check_mode=check_mode, auth_error=auth_error, anchors=anchors, keys=keys)
    with keys, enroller(keys) as first:
        results = _pipe.new_key_result(
            params, specs[0], check_mode=check_mode,
            template_renewal_days=directory.template_renewal_days if directory is not None else None)
        results = results or first.run(specs)
        refused = first.policy_refused
        retry = []
        if refused and directory.refresh():
            moved = directory.cas_moved()   # an unavailable CA is retried only when AD names other CAs now
            retry = [index for index, unavailable in refused if moved or not unavailable]
        if retry:
            with enroller() as again:
                for index, result in zip(retry, again.run([specs[i] for i in retry])):
                    error = results[index].get('error') or {}
                    why = ('%s %s' % (error['hresult'], error['error_name']) if error.get('error_name') else
                           results[index]['msg'].split(';')[0].rstrip('.'))
                    result.setdefault('warnings', []).append(
                        'The request made with the enrollment policy cached from Active Directory failed (%s); '
                        'Active Directory was read again and the request retried' % why)
                    results[index] = result
        results = keeper.record(specs, results, writer, directory, new_key=params['new_key'], project=project)
    if found is not None and found.cache_warning and results:
        results[0].setdefault('warnings', []).append(found.cache_warning)
    return results
