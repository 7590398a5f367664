# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Installing a certificate enrolled elsewhere: one job, putting a certificate (with its chain and full chain) that
was enrolled on the controller in place next to its private key on the managed host, as one switch.

Controller-side enrollment makes a new key and CSR on the host (``<key>.new``, ``<csr>.new``), enrolls on the
controller and hands the certificate back. ``install()`` checks that the certificate belongs to the key it will sit
next to (the staged new key when there is one, else the current key), then writes key, certificate, chain, full
chain and CSR together through ``_files`` (``StagedWrite`` with a validator on the staged bytes): either all of them
switch or none does. The staged key and CSR are removed afterwards.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _staged
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError, InvalidInput


def _certificates(content, what):
    if content is None:
        return None
    try:
        certs = _x509.load_certificates(content)
    except (CertificateError, ValueError) as exc:
        raise InvalidInput('%s cannot be read as certificates' % what, detail=getattr(exc, 'summary', str(exc)))
    if not certs:
        raise InvalidInput('%s holds no certificate' % what)
    return certs


def install(writer, certificate_path, certificate_content, private_key_path, chain_path=None, chain_content=None,
            fullchain_path=None, fullchain_content=None, staged_private_key_path=None, csr_path=None,
            staged_csr_path=None, private_key_passphrase=None, private_key_mode=None, mode=None, owner=None,
            group=None, fmt='pem', check_mode=False):
    """Install the certificate files and, when a staged new key exists, the key, all-or-nothing. ``writer`` is a
    ``_staged.ModuleFileWriter`` (or anything with its ``write(specs, validator)``). Returns a result dict."""
    if fmt not in _x509.FORMATS:
        raise InvalidInput('format must be pem or der, got %r' % fmt)
    cert = _certificates(certificate_content, 'certificate_content')[0]
    chain = _certificates(chain_content, 'chain_content')
    fullchain = _certificates(fullchain_content, 'fullchain_content')
    if fullchain is not None and _x509.cert_der(fullchain[0]) != _x509.cert_der(cert):
        raise InvalidInput('fullchain_content does not start with the certificate of certificate_content')

    staged_key_bytes = _files.read_file(staged_private_key_path) if staged_private_key_path else None
    current_key_bytes = _files.read_file(private_key_path)
    if staged_key_bytes is None and current_key_bytes is None:
        raise InvalidInput('Neither the private key %s nor a staged key%s exists; nothing was written'
                           % (private_key_path, ' (%s)' % staged_private_key_path if staged_private_key_path else ''))
    # The certificate is installed next to the key it was issued for: the staged new key, or the current key when
    # the staged one is a leftover (a renewal with the same key after an interrupted key change); that leftover is
    # removed with the others below.
    candidates = [(staged_private_key_path, staged_key_bytes), (private_key_path, current_key_bytes)]
    candidates = [(origin, data) for origin, data in candidates if data is not None]
    for key_origin, key_bytes in candidates:
        try:
            key = _keys.load_private_key(key_bytes, private_key_passphrase)
        except InvalidInput as exc:
            raise InvalidInput('Cannot load the private key %s (wrong private_key_passphrase, or not a key); '
                               'nothing was written' % key_origin, detail=exc.detail)
        if _x509.key_matches_certificate(key, cert):
            break
    else:
        raise CertificateError('The certificate for %s does not belong to the private key %s; nothing was written'
                               % (certificate_path, candidates[0][0]),
                               remedy='Enroll again: the certificate and the key it was requested for must be '
                                      'installed together.')
    if key_origin != staged_private_key_path:
        staged_key_bytes = None

    specs, paths = [], {}

    def add(kind, path, content, secret=False, file_mode=None):
        specs.append(_staged.FileSpec(path, content, mode=file_mode, owner=owner, group=group, secret=secret))
        paths[kind] = specs[-1].path

    switching_key = staged_key_bytes is not None and staged_key_bytes != current_key_bytes
    if switching_key:
        key_mode = private_key_mode if private_key_mode is not None else _files.current_secret_mode(private_key_path)
        add('private_key', private_key_path, staged_key_bytes, secret=True, file_mode=key_mode)
    add('certificate', certificate_path, _x509.encode_certificate(cert, fmt), file_mode=mode)
    if chain_path and chain is not None:
        add('chain', chain_path, _x509.encode_chain(chain, fmt), file_mode=mode)
    if fullchain_path and fullchain is not None:
        add('fullchain', fullchain_path, _x509.encode_chain(fullchain, fmt), file_mode=mode)
    staged_csr = _files.read_file(staged_csr_path) if (staged_csr_path and csr_path and switching_key) else None
    if staged_csr is not None:
        add('csr', csr_path, staged_csr, file_mode=mode)

    cert_target = specs[1 if switching_key else 0].path
    key_target = specs[0].path if switching_key else None

    def validator(staged):
        # The bytes about to be renamed into place: the certificate belongs to the key it will sit next to.
        staged_cert = _x509.load_certificates(_files.read_file(staged[cert_target]))[0]
        key_data = _files.read_file(staged[key_target]) if key_target else _files.read_file(private_key_path)
        staged_key = _keys.load_private_key(key_data, private_key_passphrase)
        if not _x509.key_matches_certificate(staged_key, staged_cert):
            raise CertificateError('The staged certificate does not match the staged private key; nothing was '
                                   'written')

    written = writer.write(specs, validator=validator)
    removed = []
    if not check_mode:
        for leftover in (staged_private_key_path, staged_csr_path):
            if leftover and os.path.exists(leftover):
                os.unlink(leftover)
                removed.append(leftover)
    return {'changed': bool(written.get('changed')) or bool(removed), 'paths': paths,
            'key_switched': switching_key, 'removed': removed,
            'certificate': _x509.certificate_facts(cert)}
