# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of an enrollment request: one job, their argument spec and their re-validation.

``request_options()`` is the argument spec of one request (top level: with defaults; inside ``requests``: without,
plus owner/group/mode); ``normalize_requests(params)`` merges ``requests`` entries over the top-level options and
``check_request()`` validates and normalizes one request (paths absolute, modes parsed, subject/SANs parsed, what a
CSR pins) without file or network access. ``output_paths()`` names the files a request writes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._argspec import (
    connection_argument_spec,
    key_argument_spec,
    pipe_argument_spec,
    role_defaults_argument_spec,
    role_entry_argument_spec,
    subject_argument_spec,
)


def request_options(top_level=True):
    """argument_spec of the per-request options (with _argspec's key and subject options); top-level ones carry
    the defaults."""
    spec = dict(
        template=dict(type='str'),
        csr_path=dict(type='path'),
        csr_content=dict(type='str'),
        regenerate_key=dict(type='bool', default=False),
        renewal_request=dict(type='bool', default=True),
        certificate_path=dict(type='path'),
        chain_path=dict(type='path'),
        fullchain_path=dict(type='path'),
        format=dict(type='str', choices=['pem', 'der'], default='pem'),
        pkcs12_path=dict(type='path'),
        pkcs12_passphrase=dict(type='str', no_log=True),
        force=dict(type='bool', default=False),
        renew_before=dict(type='float'),
        request_id=dict(type='int'),
        backup=dict(type='bool', default=False),
        state_path=dict(type='path'),
    )
    spec.update(key_argument_spec())        # no defaults: derived per request
    spec.update(subject_argument_spec())
    if not top_level:
        for option in spec.values():
            option.pop('default', None)
        spec.update(owner=dict(type='str'), group=dict(type='str'), mode=dict(type='raw'))
    return spec


def argument_spec():
    """The argument spec of wcce_request: the connection options, one request's options at the top level and the
    ``requests`` list of them."""
    spec = connection_argument_spec()
    spec.update(request_options())
    spec['requests'] = dict(type='list', elements='dict', options=request_options(top_level=False))
    spec['create_directories'] = dict(type='bool', default=False)
    # the enrollment policy cache (_policy_cache): what discovery learned from AD, kept on the host
    spec.update(policy_cache=dict(type='bool', default=True), policy_cache_dir=dict(type='path'),
                policy_cache_ttl=dict(type='int', default=28800))
    spec.update(pipe_argument_spec())
    spec.update(certificates=dict(type='list', elements='dict', options=role_entry_argument_spec()),
                certificate_defaults=dict(type='dict', options=role_defaults_argument_spec()),
                run_before_results=dict(type='list', elements='raw'))
    return spec


def module_kwargs():
    """AnsibleModule() keyword arguments of wcce_request besides the argument spec."""
    return dict(supports_check_mode=True, add_file_common_args=True,
                mutually_exclusive=[['password', 'nt_hash'], ['csr_path', 'csr_content'],
                                    ['certificates', 'requests']],
                required_if=[['auth', 'ntlm', ['password', 'nt_hash'], True]])


# Options of one request (module option name -> default). Top-level module options are the defaults of every
# entry of ``requests``.
REQUEST_OPTIONS = dict((name, option.get('default')) for name, option in request_options().items())
REQUEST_OPTIONS.update(owner=None, group=None, mode=None)


def normalize_requests(params):
    """The list of per-request option dicts: ``params['requests']`` entries over the top-level defaults, or the
    top-level options alone. Unknown keys in an entry raise InvalidInput."""
    out = [check_request(merged, index) for index, merged in enumerate(merged_requests(params))]
    if not params.get('requests'):
        return out
    paths = {}
    for spec in out:
        for key in ('certificate_path', 'private_key_path', 'chain_path', 'fullchain_path', 'pkcs12_path',
                    'state_path'):
            path = spec.get(key)
            if not path:
                continue
            other = paths.get(path)
            if other is not None and other != (spec['index'], key):
                raise InvalidInput('requests[%d].%s (%s) is also written by requests[%d].%s'
                                   % (spec['index'], key, path, other[0], other[1]))
            paths[path] = (spec['index'], key)
    return out


def merged_requests(params):
    """The options of each request as given: ``requests`` entries over the top-level options, or the top-level
    options alone (not yet checked: see check_request). Unknown keys in an entry raise InvalidInput."""
    base = dict((k, params.get(k, v)) for k, v in REQUEST_OPTIONS.items())
    entries = params.get('requests') or []
    if not entries:
        return [base]
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
        out.append(merged)
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


def absolute(path):
    return os.path.abspath(os.path.expanduser(path)) if path else path


def _to_number(spec, key, convert, what, where):
    """spec[key] converted in place (int or float); InvalidInput naming the option otherwise."""
    try:
        spec[key] = convert(spec[key])
    except (TypeError, ValueError):
        raise InvalidInput(where + '%s must be %s, got %r' % (key, what, spec[key]))


def check_request(spec, index=0):
    """Validate and normalize one request's options (no file or network access)."""
    # imported here: the argument spec and a run answered by its no-op record (_fits) never load cryptography
    from ansible_collections.adcs.enrollment.plugins.module_utils import _csr, _keys, _x509
    spec = dict(spec)
    spec['index'] = index
    where = 'requests[%d]: ' % index if index else ''
    for key in ('certificate_path', 'private_key_path', 'chain_path', 'fullchain_path', 'pkcs12_path', 'csr_path',
                'state_path'):
        spec[key] = absolute(spec.get(key))
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
        _to_number(spec, 'renew_before', float, 'a number of days', where)
        if spec['renew_before'] < 0:
            raise InvalidInput(where + 'renew_before must not be negative')
    if spec.get('request_id') is not None:
        _to_number(spec, 'request_id', int, 'a number', where)
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
