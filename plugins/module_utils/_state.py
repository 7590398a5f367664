# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state of one certificate: one job, what became of its last request (the ``status`` of a result) and the
versioned state file next to the certificate that remembers it between runs.

The state file (``<certificate>.adcs.json`` in the certificate role; JSON, no secrets, mode 0644) holds:

- ``format``/``version``: ``adcs.enrollment.state`` version 1. A newer version is refused (a downgrade must not
  clobber what a newer collection wrote); a corrupt file, or one someone else could have written, is reported
  as a warning and ignored (it is rewritten by the next request).
- ``status``: ``issued``, ``pending`` or ``denied`` (what the CA last said about this certificate).
- ``request_id``, ``ca``, ``template``, ``requested`` (template, subject, SANs, key parameters, as in the refusal
  record of ``_match``): the last request. A ``pending`` request is resumed (``request_id``) only while the
  request is unchanged; otherwise a new one is submitted. ``pending_csr``/``new_key``: the CSR of a pending
  request made elsewhere (pipe mode) and whether it is for a new key staged on the host.
- ``renewal``: the template's renewal period learned at enrollment (days, source, template), so a later run that
  has nothing to do needs no directory lookup.
- ``certificate``: subject, issuer, serial number, validity and fingerprint of the installed certificate (what the
  ``adcs.enrollment.expiring`` playbook reports).

Nothing here is trusted for security: a resumed request ID only saves a submission (the certificate retrieved is
checked like any other: key, names, template, chain), a pending CSR is checked against the expected names like
``csr_content``, and a renewal period only moves the renewal date.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError, FileOutputError, InvalidInput

FORMAT = 'adcs.enrollment.state'
VERSION = 1
SUFFIX = '.adcs.json'
MAX_SIZE = 1 << 20
STATE_MODE = 0o644

# The status of a result: what happened to the certificate in this run.
ISSUED = 'issued'
RENEWED = 'renewed'
UNCHANGED = 'unchanged'
PENDING = 'pending'
DENIED = 'denied'
FAILED = 'failed'
WOULD_ENROLL = 'would_enroll'
STATUSES = (ISSUED, RENEWED, UNCHANGED, PENDING, DENIED, FAILED, WOULD_ENROLL)
CERTIFICATE_FACTS = ('subject', 'issuer', 'serial_number', 'not_before', 'not_after', 'fingerprint_sha256')
KEY_PARAMETERS = ('key_type', 'key_size', 'curve')


class StateFileError(InvalidInput):
    """A state file this version cannot use (written by a newer collection)."""


def status(result, check_mode=False, resumed=False):
    """The status of one result of the enroller (see STATUSES); ``resumed``: the request ID came from the state."""
    if result.get('failed'):
        from ansible_collections.adcs.enrollment.plugins.module_utils import _hresults   # only for a failure
        denied = (_hresults.CERTSRV_E_ENROLL_DENIED, _hresults.CERTSRV_E_TEMPLATE_DENIED)
        return DENIED if result.get('disposition') == 'denied' or \
            _hresult((result.get('error') or {}).get('hresult')) in denied else FAILED
    if result.get('disposition') == 'pending' or (check_mode and resumed and result.get('action') == 'retrieve'):
        return PENDING
    if result.get('action') not in ('enroll', 'retrieve'):
        return UNCHANGED
    if check_mode or result.get('disposition') != 'issued':
        return WOULD_ENROLL
    if result.get('renewal') or result.get('reason_code') not in (None, 'no_certificate'):
        return RENEWED
    return ISSUED


def _hresult(text):
    """The HRESULT of an error dict (``0x80094012``) as an integer, or None."""
    try:
        return int(str(text), 16) if text else None
    except ValueError:
        return None


def requested(asked, spec):
    """What a request asks for (``_match.asked()`` without the request ID, with the key parameters)."""
    out = dict((k, v) for k, v in (asked or {}).items() if k != 'request_id')
    for key in KEY_PARAMETERS:
        out[key] = spec.get(key)
    return out


class State(object):
    """The state of one certificate as read from its file or content (``data`` is None when there is none)."""

    def __init__(self, data=None, origin=None, warnings=None):
        self.data = data
        self.origin = origin
        self.warnings = list(warnings or [])

    # ---- reading ----
    @classmethod
    def from_content(cls, content, origin='state_content'):
        """From the text or bytes of a state file (None or empty: no state), or its data (a dict: what ansible-core
        before 2.19 makes of JSON text passed through a template)."""
        if isinstance(content, dict):
            return cls(_upgrade(content, origin), origin=origin)
        if content is None or not content.strip():
            return cls(origin=origin)
        if isinstance(content, bytes):
            try:
                content = content.decode('utf-8')
            except UnicodeDecodeError:
                return cls(origin=origin, warnings=['The state %s is not UTF-8 text; it is ignored and will be '
                                                    'rewritten' % origin])
        try:
            data = json.loads(content)
        except ValueError as exc:
            return cls(origin=origin, warnings=['The state %s is corrupt (%s); it is ignored and will be rewritten'
                                                % (origin, exc)])
        if not isinstance(data, dict):
            return cls(origin=origin, warnings=['The state %s is not a JSON object; it is ignored and will be '
                                                'rewritten' % origin])
        return cls(_upgrade(data, origin), origin=origin)

    @classmethod
    def read(cls, path):
        """From the file at ``path``: only a regular file owned by the effective user and not writable by others
        (someone who may write in the certificate directory must not steer the requests)."""
        try:
            data = _files.read_file(path, max_size=MAX_SIZE, private=True)
        except FileOutputError as exc:
            return cls(origin=path, warnings=['The state file %s is ignored: %s' % (path, exc.summary)])
        return cls.from_content(data, origin=path)

    # ---- what it tells ----
    def pending(self, wanted):
        """(request_id, csr, new_key) of a pending request for the same request ``wanted`` (see requested()),
        else None."""
        data = self.data or {}
        if data.get('status') != PENDING or not isinstance(data.get('request_id'), int):
            return None
        if data.get('requested') != wanted:
            return None
        return data['request_id'], data.get('pending_csr'), bool(data.get('new_key'))

    def renewal_days(self, template):
        """The renewal period of ``template`` learned from Active Directory at enrollment, or None."""
        renewal = (self.data or {}).get('renewal') or {}
        if renewal.get('source') != 'template' or not template or \
                str(renewal.get('template') or '').lower() != template.lower():
            return None
        days = renewal.get('days')
        return float(days) if isinstance(days, (int, float)) and not isinstance(days, bool) and days >= 0 else None

    # ---- recording ----
    def updated(self, result, wanted, check_mode=False, csr=None, new_key=False, template_days=None, now=None):
        """The state after ``result`` (a result of the enroller with its ``status``), or None when the file stays
        as it is: failures and check mode leave it alone, and so does a run that changes nothing in it."""
        state = result.get('status')
        if check_mode or state in (FAILED, WOULD_ENROLL):
            return None
        old = self.data or {}
        data = {'format': FORMAT, 'version': VERSION, 'template': result.get('template'), 'requested': wanted,
                'renewal': old.get('renewal'), 'certificate': old.get('certificate'),
                'request_id': result.get('request_id') or (result.get('error') or {}).get('request_id')}
        if result.get('ca'):
            data['ca'] = dict((k, result['ca'].get(k)) for k in ('name', 'host'))
        if state == PENDING:
            same = old.get('status') == PENDING and old.get('request_id') == data['request_id']
            data.update(status=PENDING, pending_csr=csr, new_key=bool(new_key),
                        since=old.get('since') if same else _stamp(now))
            if same:
                data.setdefault('ca', old.get('ca'))
        elif state == DENIED:
            data.update(status=DENIED, message=result.get('msg'), since=_stamp(now))
        else:
            data['status'] = ISSUED
            facts = result.get('certificate') or {}
            if facts:
                data['certificate'] = dict((k, facts.get(k)) for k in CERTIFICATE_FACTS)
            if state == UNCHANGED and old.get('status') == ISSUED:
                data.update(request_id=old.get('request_id'), ca=old.get('ca'), since=old.get('since'))
            else:
                data['since'] = _stamp(now) if state != UNCHANGED else None
        if template_days is not None and result.get('template'):
            data['renewal'] = {'days': float(template_days), 'source': 'template', 'template': result['template']}
        data = dict((k, v) for k, v in data.items() if v is not None)
        return None if data == dict((k, v) for k, v in (self.data or {}).items() if k != 'fits') else data


def _stamp(now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime('%Y-%m-%dT%H:%M:%SZ')


def _upgrade(data, origin):
    """Version 1 as it is; the unversioned file of the certificate role before 1.x as version 1 (its pending
    request is kept when it was for a key on the host); a newer version is refused."""
    if data.get('format') == FORMAT:
        version = data.get('version')
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StateFileError('The state %s has an invalid version %r' % (origin, version),
                                 remedy='Remove the state file; the next run writes it again.')
        if version > VERSION:
            raise StateFileError('The state %s was written by a newer version of adcs.enrollment (state version '
                                 '%d; this one reads version %d); nothing was done' % (origin, version, VERSION),
                                 remedy='Upgrade the collection on this node, or remove the state file to start '
                                        'over (a pending request is then submitted again).')
        return data
    if 'version' in data or 'format' in data:
        raise StateFileError('The state %s is not an adcs.enrollment state file' % origin,
                             remedy='Point state_path at another file, or remove this one.')
    return _legacy(data)


def _legacy(data):
    """The certificate role's own state file (unversioned, before the module kept the state)."""
    spec = data.get('spec') if isinstance(data.get('spec'), dict) else {}
    out = {'format': FORMAT, 'version': VERSION, 'status': data.get('status'), 'template': spec.get('template'),
           'request_id': data.get('request_id') if isinstance(data.get('request_id'), int) else None}
    if data.get('status') == ISSUED:
        out['certificate'] = dict((k, data.get(k)) for k in CERTIFICATE_FACTS)
    if data.get('status') == PENDING and data.get('new_key'):
        out['status'] = None   # the key of that request was staged by the old role: submit a new request
    return out


def serialize(data):
    """The bytes of a state file."""
    return (json.dumps(data, indent=2, sort_keys=True) + '\n').encode('utf-8')


def state_spec(path, data):
    """The ``_staged.FileSpec`` that writes the state ``data`` to ``path`` (through the caller's writer, atomically,
    0644: no secrets in it; owned by the effective user, the only owner read() trusts)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _staged   # not on a run answered by _fits
    return _staged.FileSpec(path, serialize(data), mode=STATE_MODE)


class Keeper(object):
    """The states of the requests of one module run: pending requests are resumed before the run, the states are
    recorded after it (a file at ``state_path`` of a request, or ``state_content`` in and out in pipe mode)."""

    def __init__(self, specs, check_mode=False, state_content=None, pipe=False, now=None):
        self.check_mode = check_mode
        self.pipe = pipe
        self.now = now
        self._states = {}
        self._resumed = {}
        for spec in specs:
            if pipe:
                state = State.from_content(state_content)
            elif spec.get('state_path'):
                state = State.read(spec['state_path'])
            else:
                continue
            self._states[spec['index']] = state
            self._resume(spec, state)

    def state(self, spec):
        return self._states.get(spec['index'])

    def _resume(self, spec, state):
        if spec.get('request_id') or (state.data or {}).get('status') != PENDING:
            return
        found = state.pending(wanted(spec))
        if found is None:
            return
        request_id, csr, new_key = found
        spec['request_id'] = request_id
        if self.pipe and csr:
            spec['csr_content'], spec['csr_path'] = csr, None
        self._resumed[spec['index']] = new_key

    def new_key(self, spec, given=False):
        """Whether the certificate (or pending request) of ``spec`` is for a new key staged on the host."""
        return self._resumed.get(spec['index'], given)

    def renewal_days(self):
        """{template (lower case): days}: the renewal periods the states learned from Active Directory."""
        known = {}
        for state in self._states.values():
            renewal = (state.data or {}).get('renewal') or {}
            days = state.renewal_days(renewal.get('template'))
            if days is not None:
                known[renewal['template'].lower()] = days
        return known

    def directory(self, directory):
        """``directory`` answering the renewal periods the states learned without asking Active Directory."""
        known = self.renewal_days()
        return _KnownRenewal(directory, known) if directory is not None and known else directory

    def record(self, specs, results, writer, directory=None, new_key=False, project=None):
        """Adds ``status`` to each result and records its state; returns the results. ``project(spec, known)``:
        the no-op record (``_fits``) of a request whose certificate is in place after this run (``known``: the
        template renewal periods the states know, this run's included), or None; it is kept in the state file
        (a cache: writing it alone changes nothing)."""
        for spec, result in zip(specs, results):
            index = spec['index']
            result['status'] = status(result, self.check_mode, resumed=index in self._resumed)
            state = self._states.get(index)
            for warning in state.warnings if state is not None else []:
                result.setdefault('warnings', []).append(warning)
            if state is None:
                continue
            if result['status'] == PENDING and not self.check_mode:
                result['msg'] = ('Request %s waits for a certificate manager on the CA; it is retrieved on a later '
                                 'run (the request ID is kept in the state)' % result.get('request_id'))
            days = _template_days(result, directory)
            data = state.updated(result, wanted(spec), self.check_mode, csr=spec.get('csr_content'),
                                 new_key=self.new_key(spec, new_key), template_days=days, now=self.now)
            changes = data is not None
            if project is not None and not (self.pipe or self.check_mode):
                data = self._with_fits(state, data, project, spec, result, days)
            if self.pipe:
                result['state_content'] = serialize(data).decode('utf-8') if data is not None else None
                result['new_key'] = self.new_key(spec, new_key) if result['status'] in (ISSUED, RENEWED) else False
            elif data is not None:
                try:
                    # the state file stays the effective user's whatever the outputs' owner: read() trusts no other
                    written = writer.write([state_spec(spec['state_path'], data)])
                    result['changed'] = bool(result.get('changed') or (changes and written.get('changed')))
                except AdcsError as exc:
                    result.setdefault('warnings', []).append(
                        'The state file %s could not be written (a pending request is then submitted again): %s'
                        % (spec['state_path'], exc.to_message()))
        return results

    def _with_fits(self, state, data, project, spec, result, days):
        """The state data to write (None: the file stays) with the request's no-op record, or without a stale one.
        Other outcomes leave the state as updated() has it (a failure leaves the file alone: its record, if any, no
        longer holds for these options and files, and holds again only if they come back unchanged)."""
        if result['status'] not in (ISSUED, RENEWED, UNCHANGED):
            return data
        known = self.renewal_days()
        if days is not None and result.get('template'):
            known[result['template'].lower()] = float(days)
        fits = project(spec, known)
        new = dict(data if data is not None else (state.data or {}))
        old = new.pop('fits', None)
        if isinstance(old, dict) and fits is not None and dict(old, since=None) == dict(fits, since=None):
            fits = old   # the same record: the file stays as it is
        if fits is not None and new.get('status') == ISSUED:
            new['fits'] = fits
        return None if new == (state.data or {}) or not new.get('format') else new


def wanted(spec):
    """What the request of ``spec`` asks for (see requested())."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _match
    csr = None
    if spec.get('csr_content') and not (spec.get('wanted_subject') or spec.get('wanted_sans')):
        csr = _load_csr(spec['csr_content'])
    return requested(_match.asked(dict(spec, request_id=None), csr), spec)


def _load_csr(content):
    from cryptography import x509
    data = content.encode('utf-8') if isinstance(content, str) else bytes(content)
    try:
        return x509.load_pem_x509_csr(data) if data.lstrip().startswith(b'-----') else x509.load_der_x509_csr(data)
    except ValueError:
        return None   # planning reports it


def _template_days(result, directory):
    """The renewal period of the result's template, when this run knows it."""
    if result.get('renew_before_source') == 'template':
        return result.get('renew_before')
    if directory is None or result.get('status') not in (ISSUED, RENEWED) or not result.get('template'):
        return None
    return directory.template_renewal_days(result['template'])


class _KnownRenewal(object):
    """A directory whose template renewal periods are known from the state files first."""

    def __init__(self, directory, known):
        self._directory = directory
        self._known = known

    def template_renewal_days(self, template):
        days = self._known.get((template or '').lower())
        return days if days is not None else self._directory.template_renewal_days(template)

    def __getattr__(self, name):
        return getattr(self._directory, name)
