# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pipe mode of wcce_request: one job, an enrollment on contents instead of files (the community.crypto ``*_pipe``
precedent), so that enrolling on the controller for a managed host needs no scratch directory.

The CSR comes in as ``csr_content``; the host's current certificate, chain, full chain and refusal record come in as
contents (optional) and the state as ``state_content``; the certificate, chain, full chain, refusal record and state
to install on the host go out as contents. In between, the enroller works as for files, in a private temporary
directory (0700, removed at the end) holding only the module's own file names: no name from the managed host is
ever used as a path.

A new key for every enrollment (``regenerate_key``) cannot be made here - the key stays on the host - so when a
certificate is due and ``csr_content`` is for the key of the current certificate, nothing is submitted and the
result asks for a CSR of a new key (``new_key_needed``); the next call passes that CSR with ``new_key=true`` and the
certificate is then for the new key (``new_key`` in the result, also when a pending request for it is retrieved
later).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import tempfile

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput

NAMES = {'certificate': 'certificate.pem', 'chain': 'chain.pem', 'fullchain': 'fullchain.pem',
         'refusal': 'certificate.pem.refused'}
# file options that make no sense without files
FILE_OPTIONS = ('certificate_path', 'chain_path', 'fullchain_path', 'pkcs12_path', 'private_key_path', 'csr_path',
                'state_path', 'backup', 'requests')
CONTENT_OPTIONS = ('certificate_content', 'chain_content', 'fullchain_content', 'refusal_content', 'state_content',
                   'new_key')


def check(params, check_mode=False):
    """Options that only pipe mode takes, or that pipe mode refuses, raise InvalidInput."""
    if params.get('pipe'):
        given = [o for o in FILE_OPTIONS if params.get(o)]
        if given:
            raise InvalidInput('pipe=true takes contents and returns contents; %s cannot be used with it'
                               % ', '.join(given))
        if (params.get('format') or 'pem') != 'pem':
            raise InvalidInput('pipe=true returns PEM contents; format=der cannot be used with it')
        if not params.get('csr_content') and not check_mode:
            raise InvalidInput('pipe=true needs csr_content (the CSR made on the host with its key)')
        return
    given = [o for o in CONTENT_OPTIONS if params.get(o) not in (None, False)]
    if given:
        raise InvalidInput('%s need pipe=true' % ', '.join(given))


class Pipe(object):
    """The files of one request in a private temporary directory: ``params()`` gives the module parameters that
    point the enroller at them, ``contents()`` reads the outcome back. Without ``pipe`` in the parameters it
    changes nothing (``active`` is False)."""

    def __init__(self, params):
        self._params = params
        self.active = bool(params.get('pipe'))
        self.dir = None
        self._kinds = []

    def __enter__(self):
        if self.active:
            self.dir = tempfile.mkdtemp(prefix='adcs-pipe-')
        return self

    def __exit__(self, *exc):
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def path(self, kind):
        return os.path.join(self.dir, NAMES[kind])

    def _stage(self, kind, content):
        if isinstance(content, dict):   # JSON text made a dict by the templating of ansible-core before 2.19
            content = json.dumps(content, indent=2, sort_keys=True) + '\n'
        if content:
            data = content.encode('utf-8') if not isinstance(content, bytes) else content
            fd = os.open(self.path(kind), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
        return self.path(kind)

    def params(self):
        """The module parameters of the request, on the pipe's files. A chain or full chain is returned when its
        current content is given (an empty string when there is none yet)."""
        source = self._params
        if not self.active:
            return source
        out = dict(source)
        out['certificate_path'] = self._stage('certificate', source.get('certificate_content'))
        self._kinds = ['certificate']
        for kind in ('chain', 'fullchain'):
            if source.get(kind + '_content') is not None:
                out[kind + '_path'] = self._stage(kind, source[kind + '_content'])
                self._kinds.append(kind)
        self._stage('refusal', source.get('refusal_content'))
        out['regenerate_key'] = False   # the key is on the host: see new_key_needed()
        if source.get('new_key'):
            out['force'] = True         # the certificate is due (the call that asked for the new key said so)
        return out

    def contents(self, results):
        """The one result of ``results`` with the files as contents (None: there is none) and without the pipe's
        paths."""
        if not self.active:
            return results
        result = results[0]
        for kind in self._kinds:
            data = _files.read_file(self.path(kind))
            result[kind + '_content'] = data.decode('utf-8') if data else None
        data = _files.read_file(self.path('refusal'))
        result['refusal_content'] = data.decode('utf-8') if data else None
        result['paths'] = {}
        result['backup_files'] = {}
        result['certificate_path'] = 'certificate_content'
        return results


def new_key_needed(params, plan):
    """Whether a certificate is due while ``csr_content`` is the current certificate's key although
    ``regenerate_key`` asks for a new key with every enrollment (and this is no retrieval)."""
    if not params.get('regenerate_key') or params.get('new_key') or plan.action != 'enroll':
        return False
    cert, csr = plan.current_cert, plan.csr
    if cert is None or csr is None:
        return False
    return _spki(cert.public_key()) == _spki(csr.public_key())


def _spki(public_key):
    from cryptography.hazmat.primitives import serialization   # only here: the module's options need no cryptography
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def no_csr_result():
    """Check mode without a CSR: the host has no key yet (adcs.enrollment.wcce_csr makes none in check mode)."""
    return {'changed': True, 'action': 'enroll', 'status': 'would_enroll', 'reason_code': 'no_certificate',
            'reason': 'the private key does not exist yet; a key and a certificate would be created',
            'disposition': None, 'request_id': None, 'renewal': False, 'key_generated': False, 'paths': {},
            'backup_files': {}, 'new_key': False, 'new_key_needed': False, 'state_content': None}


def new_key_result(params, spec, template_renewal_days=None, check_mode=False):
    """The results (one) that ask for a CSR of a new key (see new_key_needed()), or None when the request goes
    on."""
    if not params.get('pipe') or check_mode or not params.get('regenerate_key') or params.get('new_key'):
        return None
    from ansible_collections.adcs.enrollment.plugins.module_utils import _enroller, _plan
    plan = _plan.plan_request(spec, template_renewal_days=template_renewal_days)
    if not new_key_needed(params, plan):
        return None
    result = _enroller.base_result(plan)
    result.update(status='would_enroll', new_key_needed=True,
                  msg='A certificate is due (%s) and regenerate_key asks for a new key: run again with csr_content '
                      'of a new key and new_key=true' % plan.reason)
    return [result]
