# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The outputs of a request: one job, the files a request writes and how they are written.

``Outputs`` lays out the private key, certificate, chain, full chain and PKCS#12 bundle of a plan (format,
modes, owner/group, backups; a PKCS#12 bundle with the same content is kept byte for byte) and writes them
all-or-nothing through the writer (``_staged.ModuleFileWriter``: ``_staged.StagedWrite`` with check mode), with a
last check that the staged certificate belongs to the staged key. It also writes the pending key of a request the
CA holds, the refusal record of ``_match``, and fixes owner/group/mode of files that need no new content.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _match
from ansible_collections.adcs.enrollment.plugins.module_utils import _plan
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import (
    CertificateError,
    InvalidInput,
    WcceError,
)

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:  # else reported by the module (_deps.check)
    from cryptography import x509


class Outputs(object):
    """Writes the files of planned requests through ``writer`` (write(specs, validator) -> dict(changed,
    changed_paths, backup_files)); ``check_mode``: the writer only tells what would change."""

    def __init__(self, writer, check_mode=False):
        self.writer = writer
        self.check_mode = check_mode

    def write_pending_key(self, plan):
        """A new key of a request the CA holds: at private_key_path when there is no key yet, else beside it as
        ``<private_key_path>.pending`` until the certificate is retrieved."""
        spec = plan.spec
        out = {}
        if plan.current_key is None:
            target = spec['private_key_path']
        else:
            target = spec['private_key_path'] + _plan.PENDING_KEY_SUFFIX
            out['pending_private_key_path'] = target
        written = self.writer.write([self.key_spec(plan, target)])
        out['paths'] = {'private_key': target}
        out['backup_files'] = written.get('backup_files') or {}
        if written.get('commit') is not None:
            out['_commit'] = written['commit']
        return out

    def record_refusal(self, plan, request_id, diffs, now):
        """Record next to the certificate that the CA issued something else; returns why it failed, or None."""
        spec = plan.spec
        content = _match.refusal_content(request_id, diffs, _match.asked(spec, plan.csr), now)
        try:
            # the record is our own state, owned by us and not writable by others (read_refusal trusts no other)
            self.writer.write([_staged.FileSpec(_match.refusal_path(spec['certificate_path']), content,
                                                mode=_files.CERT_MODE)])
        except WcceError as exc:
            return exc.to_message()
        return None

    def key_spec(self, plan, path=None):
        spec = plan.spec
        mode = spec.get('private_key_mode')
        if mode is None and plan.current_key_bytes is not None and path in (None, spec['private_key_path']):
            mode = _files.current_secret_mode(spec['private_key_path'])
        content = _keys.private_key_bytes(plan.key, 'pem', spec.get('private_key_passphrase'))
        return _staged.FileSpec(path or spec['private_key_path'], content, mode=mode, owner=spec.get('owner'),
                                group=spec.get('group'), backup=spec['backup'], secret=True)

    def output_specs(self, plan, cert, chain):
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
            ks = self.key_spec(plan)
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
                            _plan.same_public_key(old_key.public_key(), key.public_key()) and \
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

    def write(self, plan, cert, chain, request_id):
        specs, kinds = self.output_specs(plan, cert, chain)
        key = plan.key or plan.current_key
        cert_path = plan.spec['certificate_path']
        key_path = plan.spec.get('private_key_path')
        passphrase = plan.spec.get('private_key_passphrase')

        def validator(staged):
            # Last check on the bytes about to be renamed into place: the certificate belongs to the key.
            staged_cert = _x509.load_certificates(_files.read_file(staged[cert_path]))[0]
            if key_path and key_path in staged and key is not None:
                # only its public half is compared: no RSA consistency check (tens of ms per key)
                staged_key = _keys.load_private_key(_files.read_file(staged[key_path]), passphrase, validate=False)
                if not _x509.key_matches_certificate(staged_key, staged_cert):
                    raise CertificateError('The staged certificate does not match the staged private key; nothing '
                                           'was written', request_id=request_id)

        written = self.writer.write(specs, validator=validator)
        out = {'changed': bool(written.get('changed')), 'paths': kinds,
               'backup_files': written.get('backup_files') or {}}

        def remove_leftovers():
            for leftover in (plan.pending_key_path, _match.refusal_path(plan.spec['certificate_path'])):
                try:
                    if leftover:
                        os.unlink(leftover)
                except OSError:
                    pass

        commit = written.get('commit')
        if commit is not None:   # switched with the other new files of the run (_write_group): ``_commit`` tells
            out['_commit'] = commit
            commit.then(remove_leftovers)
        elif not self.check_mode:
            remove_leftovers()
        return out

    def write_unchanged(self, plan):
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
        return out
