# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible_collections.adcs.enrollment.plugins.module_utils import _argspec
from ansible_collections.adcs.enrollment.plugins.doc_fragments import connection, key, subject

FRAGMENTS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins', 'doc_fragments')


def _documented(text):
    return yaml.safe_load(text)['options']


def _check_matches(spec, options):
    """Every option of the spec is documented with the same type, choices, elements and default."""
    assert sorted(spec) == sorted(options)
    for name, option in spec.items():
        doc = options[name]
        assert doc['type'] == option['type'], name
        assert doc.get('choices') == option.get('choices'), name
        assert doc.get('elements') == option.get('elements'), name
        assert doc.get('default') == option.get('default'), name


def test_connection_spec_matches_its_fragment():
    spec = _argspec.connection_argument_spec()
    options = _documented(connection.ModuleDocFragment.DOCUMENTATION)
    _check_matches(spec, options)
    assert sorted(_argspec.CONNECTION_OPTION_NAMES) == sorted(spec)
    assert options['domain_controller']['aliases'] == spec['domain_controller']['aliases']


def test_key_spec_matches_its_fragments():
    options = _documented(key.ModuleDocFragment.DOCUMENTATION)
    _check_matches(_argspec.key_argument_spec(), options)
    generated = _documented(key.ModuleDocFragment.GENERATED)
    for name, option in generated.items():
        options[name].update(option)
    _check_matches(_argspec.key_argument_spec(generated_defaults=True), options)


def test_subject_spec_matches_its_fragment():
    _check_matches(_argspec.subject_argument_spec(), _documented(subject.ModuleDocFragment.DOCUMENTATION))


def test_specs_are_fresh_dicts():
    spec = _argspec.key_argument_spec()
    spec['key_type']['default'] = 'ecdsa'
    assert 'default' not in _argspec.key_argument_spec()['key_type']
    assert _argspec.key_argument_spec(True)['key_size']['default'] == 2048
    secrets = [n for n, o in _argspec.key_argument_spec().items() if o.get('no_log')]
    assert secrets == ['private_key_passphrase']


def test_connection_module_kwargs_and_params():
    kwargs = _argspec.connection_module_kwargs()
    assert kwargs['required_one_of'] == [['domain', 'domain_controller']]
    params = dict((n, n.upper()) for n in _argspec.CONNECTION_OPTION_NAMES)
    params.update(template='WebServer')
    picked = _argspec.connection_params(params)
    assert 'template' not in picked and picked['domain'] == 'DOMAIN' and len(picked) == len(params) - 1


def test_modules_use_the_same_key_and_subject_options():
    """wcce_csr and wcce_request declare what _argspec declares (names, types, choices; the defaults differ: see
    GENERATED_KEY_DEFAULTS)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec
    request = _request_spec.request_options()
    for name, option in list(_argspec.key_argument_spec().items()) + list(_argspec.subject_argument_spec().items()):
        mine = dict((k, v) for k, v in option.items() if k not in ('no_log', 'default'))
        theirs = dict((k, v) for k, v in request[name].items() if k not in ('no_log', 'default'))
        assert mine == theirs, name
