# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CRL outputs: one job, writing the CRLs of a finished ``_crl_job.CrlJob`` where wcce_crl is told to.

- ``dest``/``delta_dest``: the CRL in PEM or DER through ``_staged.ModuleFileWriter`` (atomic, file attributes,
  check mode), rewritten only when the file does not already hold this CRL number of this issuer in this format,
  and never replaced by an older CRL of the same issuer and key (``_crl_validate.check_not_rolled_back``) unless
  ``force``
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
    """What to write: the file's own bytes when it already holds this CRL number of this issuer in this format.
    CrlError when the file holds a newer CRL of the same issuer and key (unless force)."""
    new = encode_crl(crl, fmt)
    try:
        with open(path, 'rb') as handle:
            old = handle.read()
    except (IOError, OSError):
        return new
    try:
        existing = v.load_crl(old)
    except v.CrlError:
        return new
    if not force:
        try:
            v.check_not_rolled_back(existing, crl, issuer_cert)
        except v.CrlError as exc:
            raise v.CrlError('%s: %s; the file is kept (force=true replaces it)' % (path, exc))
    same_format = old.lstrip().startswith(b'-----BEGIN') == (fmt == 'pem')
    if same_format and existing.issuer == crl.issuer and v.crl_number(existing) is not None and \
            v.crl_number(existing) == v.crl_number(crl):
        return old
    return new


def write_outputs(module, job):
    """Write ``dest`` (base CRL) and ``delta_dest`` (delta CRL); the return values about it."""
    p = module.params
    specs = []
    for path, crl in ((p['dest'], job.base), (p['delta_dest'], job.delta)):
        if not path or crl is None:
            continue
        content = content_for(path, crl, p['format'], job.issuer_cert, p['force'])
        specs.append(_staged.FileSpec(path, content, mode=p.get('mode'),
                                     owner=p.get('owner'), group=p.get('group'), backup=p['backup']))
    out = {'changed': False}
    if specs:
        result = _staged.ModuleFileWriter(module).write(specs)
        out['changed'] = result['changed']
        if p['dest'] and result.get('backup_files', {}).get(specs[0].path):
            out['backup_file'] = result['backup_files'][specs[0].path]
    if p['dest']:
        out['dest'] = p['dest']
    return out
