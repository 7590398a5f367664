# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certificate role's entries: one job, turning the entries of the role's ``certificate_requests`` (with the
role's defaults) into wcce_request requests, and their results into the role's ``certificate_results`` entries and
follow-ups, so that the role enrolls every certificate of a host in one module call.

``entries(params)`` maps each entry (option ``certificates``) over ``certificate_defaults`` onto the request options
of ``_request_spec`` (default paths from ``directory`` and ``name``, SANs from ``dns``/``ip``/``upn``/``email``,
``reuse_key``, ``key_path``, ``key_mode``) and its connection overrides (``connection``, ``ca_name``, ``ca_host``,
``domain``); ``run(params, check_mode, results_for)`` enrolls them, one ``results_for(params)`` call per distinct
connection, and returns the module's results: ``results``, ``certificate_results`` (one entry per certificate,
with its one-line ``summary``; also the host fact ``certificate_results``, in ``ansible_facts``),
``certificate_summaries``, ``certificate_failures`` (the summaries of those denied or failed) and ``followups``
(what the role does after the call: ``run_before``, ``run_after``, ``notify``, ``crl``, ``trust``; only the kinds
that apply).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import role_defaults_argument_spec
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._request_spec import check_request


def _given(value):
    return value not in (None, '')


def _pick(entry, defaults, key):
    return entry.get(key) if _given(entry.get(key)) else defaults.get(key)


def _sans(entry):
    sans = list(entry.get('subject_alt_name') or [])
    for key, prefix in (('dns', 'DNS:'), ('ip', 'IP:'), ('upn', 'UPN:'), ('email', 'email:')):
        sans.extend(prefix + value for value in entry.get(key) or [])
    return sans or None


def paths(entry, defaults):
    """The files of an entry: {private_key, certificate, chain, fullchain, pkcs12, crl, state} (None: not
    written), by the role's default layout ``<directory>/private/<name>.key``, ``<directory>/certs/<name>.crt``,
    ``-chain.crt``, ``-fullchain.crt``, ``<certificate>.adcs.json``."""
    name, base = entry['name'], _pick(entry, defaults, 'directory')
    certificate = entry.get('certificate_path') or os.path.join(base, 'certs', name + '.crt')
    out = {'private_key': entry.get('key_path') or os.path.join(base, 'private', name + '.key'),
           'certificate': certificate, 'pkcs12': entry.get('pkcs12_path') or None,
           'crl': entry.get('crl_path') or None, 'state': entry.get('state_path') or certificate + '.adcs.json'}
    for key in ('chain', 'fullchain'):
        wanted = _pick(entry, defaults, key)
        out[key] = (entry.get(key + '_path') or os.path.join(base, 'certs', '%s-%s.crt' % (name, key))) \
            if wanted in (True, None) else None
    return out


def request(entry, defaults):
    """The wcce_request options of one entry (the request options of ``_request_spec``, create_directories)."""
    files = paths(entry, defaults)
    key_type = _pick(entry, defaults, 'key_type')
    reuse = _pick(entry, defaults, 'reuse_key')
    out = dict(
        template=_pick(entry, defaults, 'template'), subject=entry.get('subject') or None,
        common_name=entry.get('common_name') or None, subject_alt_name=_sans(entry), key_type=key_type,
        key_size=_pick(entry, defaults, 'key_size') if key_type == 'rsa' else None,
        curve=_pick(entry, defaults, 'curve') if key_type == 'ecdsa' else None,
        regenerate_key=reuse is False, private_key_path=files['private_key'],
        private_key_mode=_pick(entry, defaults, 'key_mode'), certificate_path=files['certificate'],
        chain_path=files['chain'], fullchain_path=files['fullchain'], pkcs12_path=files['pkcs12'],
        pkcs12_passphrase=entry.get('pkcs12_passphrase') or None, state_path=files['state'],
        owner=_pick(entry, defaults, 'owner') or None, group=_pick(entry, defaults, 'group') or None,
        mode=_pick(entry, defaults, 'mode'))
    renew_before = _pick(entry, defaults, 'renew_before')
    out['renew_before'] = renew_before if _given(renew_before) else None
    return out


def connection(entry):
    """The connection options an entry sets over the module's (``connection``, ``ca_name``, ``ca_host``,
    ``domain``; the module's argument spec checked ``connection``)."""
    out = dict((k, v) for k, v in (entry.get('connection') or {}).items() if v is not None)
    for key in ('ca_name', 'ca_host', 'domain'):
        if _given(entry.get(key)):
            out[key] = entry[key]
    return out


class Entry(object):
    """One entry of ``certificates``: its request options and connection overrides, or the error that stops it."""

    def __init__(self, index, entry, defaults, base, check=True):
        self.index, self.entry, self.name = index, entry, entry['name']
        self.files = paths(entry, defaults)
        self.template = _pick(entry, defaults, 'template')
        self.install_ca_trust = bool(_pick(entry, defaults, 'install_ca_trust'))
        self.error, self.request, self.overrides = None, None, {}
        try:
            self.overrides = connection(entry)
            self.request = request(entry, defaults)
            merged = dict(base)
            merged.update((k, v) for k, v in self.request.items() if v is not None)
            if check:   # not for a run answered by the no-op records (_fits): those options were checked then
                check_request(merged, 0)   # this entry's own errors fail this entry only
        except AdcsError as exc:
            if isinstance(exc, InvalidInput) and not exc.summary.startswith('certificate '):
                exc.summary = 'certificate %s: %s' % (self.name, exc.summary)
            self.error = exc
        self.create_directories = entry.get('create_directories') is not False

    def group_key(self):
        return json.dumps([self.overrides, self.create_directories], sort_keys=True, default=str)


def base_options(params):
    """The module's request options that apply to every entry."""
    return dict((k, params.get(k)) for k in ('force', 'backup', 'format', 'renewal_request'))


def entries(params, base, check=True):
    """The Entry of each certificate; InvalidInput when two entries have the same name (``check``: see Entry)."""
    defaults = dict((k, v.get('default')) for k, v in role_defaults_argument_spec().items())
    defaults.update((k, v) for k, v in (params.get('certificate_defaults') or {}).items() if v is not None)
    if params.get('pipe'):
        raise InvalidInput('certificates cannot be used with pipe=true (the role passes contents per certificate)')
    out, seen = [], set()
    for index, entry in enumerate(params['certificates']):
        if entry['name'] in seen:
            raise InvalidInput('the names of the certificates must be unique: %s is given twice' % entry['name'])
        seen.add(entry['name'])
        out.append(Entry(index, entry, defaults, base, check))
    return out


def _before_failures(params):
    """{(name, command): message} of the certificates whose run_before command failed (``run_before_results``:
    the registered results of the role's loop over ``followups.run_before``)."""
    out = {}
    for result in params.get('run_before_results') or []:
        item = result.get('item') if isinstance(result, dict) else None
        # the role registers them with failed_when false: a non-zero return code is the failure
        if isinstance(item, dict) and (result.get('failed') or result.get('rc') not in (None, 0)):
            out[(item.get('name'), item.get('command'))] = 'run_before failed (rc=%s): %s' % (
                result.get('rc'), result.get('stderr') or result.get('msg') or 'no message')
    return out


def _failure(exc):
    return {'failed': True, 'changed': False, 'status': 'failed', 'msg': exc.to_message(), 'error': exc.to_dict()}


def run(params, check_mode, results_for):
    """Enroll the entries of ``params['certificates']``: ``results_for(group_params, check_mode)`` returns the
    wcce_request results of ``group_params['requests']`` (or raises AdcsError, which fails that group's
    certificates).

    When an entry has ``run_before`` and ``run_before_results`` is not given, the entries are planned first (check
    mode): if one with ``run_before`` is about to be replaced, nothing is enrolled and the plan is returned
    (``planned`` true, ``followups.run_before`` listing the commands to run before the call is made again with
    their ``run_before_results``); otherwise they are enrolled at once."""
    todo = entries(params, base_options(params))
    if not check_mode and params.get('run_before_results') is None and \
            any(item.entry.get('run_before') for item in todo):
        raw = _enroll(todo, params, True, results_for)
        plan = outcome(todo, raw, True, plan=True)
        if plan['followups'].get('run_before'):
            for result in raw:
                result['changed'] = False   # nothing was done
            return dict(plan, planned=True)
    return dict(outcome(todo, _enroll(todo, params, check_mode, results_for), check_mode), planned=False)


def _enroll(todo, params, check_mode, results_for):
    """The wcce_request result of each entry, in their order (one results_for() call per connection)."""
    raw = [None] * len(todo)
    before = _before_failures(params)
    groups = {}
    for item in todo:
        failed = before.get((item.name, item.entry.get('run_before')))
        error = item.error or (AdcsError(failed) if failed is not None else None)
        if error is not None:
            raw[item.index] = _failure(error)
        else:
            groups.setdefault(item.group_key(), []).append(item)
    for members in groups.values():
        group = group_params(params, members[0])
        group['requests'] = [m.request for m in members]
        try:
            results = results_for(group, check_mode)
        except AdcsError as exc:
            results = [_failure(exc) for _m in members]
        for member, result in zip(members, results):
            raw[member.index] = result
    return raw


def answered(params, check_mode, results_of):
    """run()'s return value for a run answered without enrolling: ``results_of(requests)`` gives the results of
    the entries from ``requests`` (in order: (state file, the options of its connection, its request options)),
    or None (then so does this)."""
    todo = entries(params, base_options(params), check=False)
    if any(item.error is not None for item in todo):
        return None
    results = results_of([(item.files['state'], group_params(params, item), item.request) for item in todo])
    return None if results is None else dict(outcome(todo, results, check_mode), planned=False)


def group_params(params, item):
    """The module options of the call that enrolls ``item`` (its connection's), without the list of requests."""
    group = dict(params, certificates=None, create_directories=item.create_directories)
    group.update(item.overrides)
    return group


REPLACED = ('issued', 'renewed', 'would_enroll')


def _text(result, facts, status):
    if facts and status in ('issued', 'renewed', 'unchanged'):
        return '%s, issued by %s, valid until %s (%s)' % (
            facts.get('subject'), facts.get('issuer'), facts.get('not_after'), result.get('reason') or '')
    return result.get('msg') or 'unknown error'


def certificate_result(item, result):
    """The ``certificate_results`` entry of one certificate (the role's documented fields)."""
    status = result.get('status') or 'failed'
    facts = result.get('certificate') if isinstance(result.get('certificate'), dict) else {}
    error = result.get('error') or None
    files = item.files
    return {
        'name': item.name, 'status': status,
        'changed': status in REPLACED or (status == 'pending' and bool(result.get('changed'))),
        'reason': result.get('reason'), 'reason_code': result.get('reason_code'),
        'request_id': result.get('request_id') or (error or {}).get('request_id') or None,
        'message': result.get('msg') if status in ('denied', 'failed') else None, 'error': error,
        'subject': facts.get('subject'), 'issuer': facts.get('issuer'), 'not_after': facts.get('not_after'),
        'serial_number': facts.get('serial_number'), 'template': item.template, 'enroll_on': 'host',
        'paths': dict((k, files[k]) for k in ('private_key', 'certificate', 'chain', 'fullchain', 'pkcs12', 'crl')),
        'summary': '%s: %s: %s' % (item.name, status.replace('_', ' '), _text(result, facts, status)),
    }


def _chain(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _notify(entry):
    names = entry.get('notify') or []
    return [names] if isinstance(names, str) else [str(name) for name in names]


def outcome(todo, raw, check_mode, plan=False):
    """The module's results of the certificates: results, certificate_results, certificate_summaries,
    certificate_failures, followups (``plan``: the plan pass, which lists only the run_before commands)."""
    certs = [certificate_result(item, result) for item, result in zip(todo, raw)]
    follow = dict(run_before=[], run_after=[], notify=[], changed=[], crl=[], trust=[])
    for item, result, cert in zip(todo, raw, certs):
        entry, present = item.entry, isinstance(result.get('certificate'), dict)
        if plan:
            if entry.get('run_before') and not result.get('failed') and result.get('action') in ('enroll', 'retrieve'):
                follow['run_before'].append({'name': item.name, 'command': entry['run_before']})
            continue
        if cert['status'] in REPLACED:   # a pending request that changed replaced nothing yet
            if entry.get('run_after') and not check_mode:
                follow['run_after'].append({'name': item.name, 'command': entry['run_after']})
            names = [n for n in _notify(entry) if n not in follow['notify']]
            if _notify(entry):
                follow['notify'].extend(names)
                follow['changed'].append('certificate %s changed: %s' % (item.name, cert['summary']))
        if item.files['crl'] and present:
            follow['crl'].append({'index': item.index, 'name': item.name})
        content = _chain(item.files['chain']) if item.install_ca_trust and item.files['chain'] and present else None
        if content:
            follow['trust'].append({'name': item.name, 'content': content, 'verify': True})
    # the role's public results, as a host fact (no set_fact task: a run with nothing to do is one module task)
    return {'results': raw, 'certificate_results': certs, 'ansible_facts': {'certificate_results': certs},
            'certificate_failures': [c['summary'] for c in certs if c['status'] in ('denied', 'failed')],
            'certificate_summaries': [c['summary'] for c in certs],
            'followups': dict((k, v) for k, v in follow.items() if v)}
