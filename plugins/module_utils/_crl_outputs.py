# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL outputs: one job, writing the CRLs of a finished ``_crl_job.CrlJob`` where wcce_crl is told to.

- ``dest``/``delta_dest``: the CRL in PEM or DER through ``_staged.ModuleFileWriter`` (atomic, file attributes,
  check mode), rewritten only when the file does not already hold this CRL number of this issuer in this format,
  and never replaced by an older CRL of the same issuer and key (``_crl_validate.check_not_rolled_back``) unless
  ``force``;
- pipe mode (``return_content``): the base CRL as PEM text in the result, compared with ``current_crl``, for
  callers that keep the file elsewhere (the certificate role's controller mode); nothing is written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography.hazmat.primitives import serialization


def encode_crl(crl, fmt='pem'):
    enc = serialization.Encoding.PEM if fmt == 'pem' else serialization.Encoding.DER
    return crl.public_bytes(enc)


def content_for(path, crl, fmt, issuer_cert=None, force=False):
    """What to write to ``path``: see choose_content (the file's bytes are the current content)."""
    try:
        with open(path, 'rb') as handle:
            old = handle.read()
    except (IOError, OSError):
        old = None
    return choose_content(old, crl, fmt, issuer_cert, force, where=path, kept='the file')


def choose_content(old, crl, fmt, issuer_cert=None, force=False, where='current_crl', kept='the current CRL'):
    """The CRL's bytes in ``fmt``, or ``old`` itself when it already holds this CRL number of this issuer in this
    format. CrlError when ``old`` is a newer CRL of the same issuer and key (a rollback), unless force."""
    new = encode_crl(crl, fmt)
    if not old:
        return new
    try:
        existing = v.load_crl(old)
    except v.CrlError:
        return new
    if not force:
        try:
            v.check_not_rolled_back(existing, crl, issuer_cert)
        except v.CrlError as exc:
            raise v.CrlError('%s: %s; %s is kept (force=true replaces it)' % (where, exc, kept))
    same_format = old.lstrip().startswith(b'-----BEGIN') == (fmt == 'pem')
    if same_format and existing.issuer == crl.issuer and v.crl_number(existing) is not None and \
            v.crl_number(existing) == v.crl_number(crl):
        return old
    return new


def pipe_outputs(params, job):
    """Pipe mode (return_content): the base CRL as PEM text in ``crl``, ``changed`` against ``current_crl``
    (the content of the file the caller keeps, e.g. on a managed host); nothing is written."""
    old = params['current_crl'].encode('utf-8') if params.get('current_crl') else None
    content = choose_content(old, job.base, 'pem', job.issuer_cert, params['force'])
    return {'changed': content != old, 'crl': content.decode('ascii')}


def write_outputs(module, job):
    """Write ``dest`` (base CRL) and ``delta_dest`` (delta CRL); the return values about it."""
    p = module.params
    specs = []
    for path, crl in ((p['dest'], job.base), (p['delta_dest'], job.delta)):
        if not path or crl is None:
            continue
        content = content_for(path, crl, p['format'], job.issuer_cert, p['force'])
        specs.append(_staged.FileSpec(path, content, mode=p.get('mode'), owner=p.get('owner'), group=p.get('group'),
                                      backup=p['backup']))
    out = {'changed': False}
    if specs:
        result = _staged.ModuleFileWriter(module).write(specs)
        out['changed'] = result['changed']
        if p['dest'] and result.get('backup_files', {}).get(specs[0].path):
            out['backup_file'] = result['backup_files'][specs[0].path]
    if p['dest']:
        out['dest'] = p['dest']
    return out
