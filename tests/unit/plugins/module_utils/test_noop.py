# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.adcs.enrollment.plugins.module_utils import _noop, _state
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    NOW,
    PlainWriter,
    issue,
    spec,
    write_cert,
    write_key,
)


def fitting(tmp_path, days=365, renewal=None, **kw):
    key = wcce_pki.rsa_key('noop')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key, days=days))
    state_path = tmp_path / 'c.pem.adcs.json'
    data = {'format': _state.FORMAT, 'version': 1, 'status': 'issued', 'template': 'WebServer'}
    if renewal is not None:
        data['renewal'] = {'days': renewal, 'source': 'template', 'template': 'WebServer'}
    state_path.write_text(json.dumps(data))
    state_path.chmod(0o644)
    specs = [spec(tmp_path, state_path=str(state_path), **kw)]
    return specs, _state.Keeper(specs)


def test_a_fitting_certificate_is_answered_without_the_enroller(tmp_path):
    specs, keeper = fitting(tmp_path)
    [result] = _noop.results(specs, keeper, PlainWriter(), now=NOW)
    assert result['action'] == 'none' and result['changed'] is False and result['disposition'] is None
    assert result['certificate']['subject'] == 'CN=host.lab.adcs.test'
    assert result['diff']['before'] == result['diff']['after']


def test_the_renewal_period_comes_from_the_state_when_a_directory_is_named(tmp_path):
    specs, keeper = fitting(tmp_path, renewal=40.0)
    [result] = _noop.results(specs, keeper, PlainWriter(), directory_given=True, now=NOW)
    assert result['renew_before'] == 40.0 and result['renew_before_source'] == 'template'
    # inside the state's window: the enroller must run (renewal)
    specs, keeper = fitting(tmp_path, days=30, renewal=40.0)
    assert _noop.results(specs, keeper, PlainWriter(), directory_given=True, now=NOW) is None


def test_an_unknown_renewal_period_needs_the_directory(tmp_path):
    specs, keeper = fitting(tmp_path)
    assert _noop.results(specs, keeper, PlainWriter(), directory_given=True, now=NOW) is None


def test_work_or_errors_go_to_the_enroller(tmp_path):
    specs = [spec(tmp_path)]   # nothing on disk: an enrollment (and no key is made here)
    assert _noop.results(specs, _state.Keeper(specs), PlainWriter(), now=NOW) is None
    assert not (tmp_path / 'k.pem').exists()
    (tmp_path / 'k.pem').write_text('not a key')   # an error: the enroller reports it
    assert _noop.results(specs, _state.Keeper(specs), PlainWriter(), now=NOW) is None
