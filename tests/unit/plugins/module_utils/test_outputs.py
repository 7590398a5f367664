# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_outputs: the files a request writes, their modes, and the crash-safe switch they go through."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.plugins.module_utils import _outputs, _plan
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import (
    FakeClient,
    FakeSession,
    NOW,
    PEM,
    PlainWriter,
    enroller,
    issue,
    spec,
    write_cert,
    write_key,
)


def test_int_modes_reach_the_files(tmp_path):
    client = FakeClient({})
    s = spec(tmp_path, mode=416, private_key_mode=416, chain_path=str(tmp_path / 'chain.pem'),
             pkcs12_path=str(tmp_path / 'k.p12'))
    with enroller(client) as e:
        [result] = e.run([s])
    assert result['changed']
    modes = dict((n, os.stat(str(tmp_path / n)).st_mode & 0o7777) for n in ('k.pem', 'c.pem', 'chain.pem', 'k.p12'))
    assert modes == {'k.pem': 0o640, 'c.pem': 0o640, 'chain.pem': 0o640, 'k.p12': 0o640}


def test_missing_output_directory_fails_before_the_ca_is_contacted(tmp_path):
    client = FakeClient({})
    s = spec(tmp_path, chain_path=str(tmp_path / 'nope' / 'chain.pem'))
    with enroller(client) as e:
        [result] = e.run([s])
        assert e.ca_contacted is False
    assert result['failed'] and client.calls == [] and FakeSession.opened == []
    assert result['msg'].startswith('The directory %s of chain_path (%s) does not exist; nothing was requested '
                                    'from the CA' % (tmp_path / 'nope', tmp_path / 'nope' / 'chain.pem'))
    assert os.listdir(str(tmp_path)) == []


def test_interrupted_switch_is_finished_before_planning(tmp_path):
    # a killed run left the new key next to the old certificate, with its journal: the next run rolls forward and
    # then finds a fitting pair, with no CA contact
    old_key, new_key = wcce_pki.rsa_key('old-pair'), wcce_pki.rsa_key('new-pair')
    write_key(str(tmp_path / 'k.pem'), new_key)
    write_cert(str(tmp_path / 'c.pem'), issue(old_key, serial=1))
    new_cert = issue(new_key, serial=2).public_bytes(PEM)
    tmp = tmp_path / '.c.pem.abcd1234.adcs-new'
    tmp.write_bytes(new_cert)
    import hashlib
    import json
    (tmp_path / '.c.pem.adcs-journal').write_text(json.dumps({'version': 1, 'entries': [
        {'path': str(tmp_path / 'k.pem'), 'tmp': str(tmp_path / '.k.pem.abcd1234.adcs-new'), 'old': None,
         'sha256': hashlib.sha256(open(str(tmp_path / 'k.pem'), 'rb').read()).hexdigest()},
        {'path': str(tmp_path / 'c.pem'), 'tmp': str(tmp), 'old': None,
         'sha256': hashlib.sha256(new_cert).hexdigest()}]}))
    client = FakeClient({})
    with enroller(client) as e:
        [result] = e.run([spec(tmp_path)])
    assert result['action'] == 'none' and client.calls == []
    assert open(str(tmp_path / 'c.pem'), 'rb').read() == new_cert
    assert sorted(os.listdir(str(tmp_path))) == ['c.pem', 'k.pem']


def test_check_mode_writer_tells_what_would_change_and_writes_nothing(tmp_path):
    key = wcce_pki.rsa_key('outputs-check')
    write_key(str(tmp_path / 'k.pem'), key)
    write_cert(str(tmp_path / 'c.pem'), issue(key))
    before = sorted((n, os.stat(str(tmp_path / n)).st_mode & 0o7777) for n in os.listdir(str(tmp_path)))
    s = spec(tmp_path, mode=0o640)
    outputs = _outputs.Outputs(PlainWriter(check_mode=True), check_mode=True)
    out = outputs.write_unchanged(_plan.plan_request(s, now=NOW))
    assert out['changed'] is True and out['certificate']['subject'] == 'CN=host.lab.adcs.test'
    assert sorted((n, os.stat(str(tmp_path / n)).st_mode & 0o7777) for n in os.listdir(str(tmp_path))) == before
    out = _outputs.Outputs(PlainWriter()).write_unchanged(_plan.plan_request(s, now=NOW))
    assert out['changed'] is True and os.stat(str(tmp_path / 'c.pem')).st_mode & 0o7777 == 0o640
