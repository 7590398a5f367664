# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CA that issues other names than asked (lab fault knobs alter_subject / alter_san on the private lab CA of
test_wcce_request_faults): the module writes nothing, names the request ID and the difference, and the next runs
fail the same way without sending another request to the CA (counted in the private CA's request database).
Run under `flock /tmp/adcs-private-ca.lock` (one private CA on 127.0.0.91 at a time)."""

import json
import os
import sqlite3

import pytest
from adcslab.faults import clear_faults

# fixtures (private_ca, faults) and helpers of the private-CA harness
from test_wcce_request_faults import (  # noqa: F401  pylint: disable=unused-import
    MODULE, applied, assert_failed, assert_issued, faults, private_ca, web_args,
)

pytestmark = pytest.mark.lab

REMEDY = ('Check the template (does it build the names from Active Directory?) and the CA policy. The refusal is '
          'recorded in %s next to the certificate: the CA is not asked again for the same request until the request '
          'changes or force=true.')


def requests_in_db(server):
    """Rows in the private CA's request database: every request that reached the CA."""
    db = sqlite3.connect('file:%s?mode=ro' % os.path.join(server.state_dir, 'ca', 'requests.db'), uri=True)
    try:
        return db.execute('SELECT COUNT(*) FROM requests').fetchone()[0]
    finally:
        db.close()


def with_directory(lab, args):
    """The same request with the directory configured: the template (name flags, OID, EKUs) is read from AD."""
    return dict(args, domain=lab['domain'], domain_controller=lab['dc']['address'], ca_bundle=lab['ca_bundle'])


def test_altered_names_three_runs_one_ca_request(lab, ansible, tmp_path, faults, private_ca):
    faults(alter_subject='CN=victim.lab.adcs.test', alter_san='dns:victim.lab.adcs.test')
    args = web_args(lab, tmp_path, 'web01')
    record = args['certificate_path'] + '.refused'
    before = requests_in_db(private_ca)

    rc, result = ansible.module(MODULE, args)
    assert_failed(rc, result)
    rid = result['request_id']
    assert isinstance(rid, int) and rid > 0 and result['error']['request_id'] == rid
    difference = ('subject: asked CN=web01.lab.adcs.test, issued CN=victim.lab.adcs.test; subject_alt_name: asked '
                  'DNS:web01.lab.adcs.test, issued DNS:victim.lab.adcs.test')
    assert result['msg'] == ('The CA issued a certificate that is not what was asked for; nothing was written; '
                             'request ID %d; %s. What to do: %s' % (rid, difference, REMEDY % 'web01.crt.refused'))
    assert os.listdir(str(tmp_path)) == ['web01.crt.refused'], 'no key, no certificate: only the refusal record'
    with open(record) as handle:
        assert json.load(handle)['request_id'] == rid
    assert applied(faults, 'alter_subject') and applied(faults, 'alter_san')

    for _run in (2, 3):
        rc, result = ansible.module(MODULE, args)
        assert_failed(rc, result)
        assert result['msg'] == (
            'Request %d was refused on an earlier run because the CA issued a certificate that is not what was asked '
            'for (recorded in web01.crt.refused next to the certificate); the CA is not asked again for the same '
            'request; request ID %d; %s. What to do: Correct the template or the CA policy, then run with force=true '
            'or remove that record (or change the request).' % (rid, rid, difference))
    assert requests_in_db(private_ca) - before == 1, 'three runs, exactly one request reached the CA'
    assert os.listdir(str(tmp_path)) == ['web01.crt.refused']

    # the CA is fixed: force=true asks again, installs the certificate and removes the record
    clear_faults(private_ca.state_dir)
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert_issued(rc, result, args)
    assert sorted(os.listdir(str(tmp_path))) == ['web01.crt', 'web01.key']
    assert requests_in_db(private_ca) - before == 2


def test_template_and_ekus_from_the_directory(lab, ansible, tmp_path, faults, private_ca):
    """With the directory configured, the issued certificate's template and EKUs are compared with the template
    in AD: a normal issuance passes (and stays idempotent); an added SAN on WebServer (the enrollee supplies the
    names) is refused."""
    args = with_directory(lab, web_args(lab, tmp_path, 'web02'))
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    assert not result.get('warnings'), result.get('warnings')
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['changed'] is False, result

    faults(alter_san='dns:web02.lab.adcs.test,dns:victim.lab.adcs.test')
    before = {name: open(str(tmp_path / name), 'rb').read() for name in os.listdir(str(tmp_path))}
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert_failed(rc, result, 'The CA issued a certificate that is not what was asked for; nothing was written; '
                              'request ID %d; subject_alt_name: asked DNS:web02.lab.adcs.test, issued '
                              'DNS:victim.lab.adcs.test, DNS:web02.lab.adcs.test. What to do:' % result['request_id'])
    after = {name: open(str(tmp_path / name), 'rb').read() for name in os.listdir(str(tmp_path))
             if not name.endswith('.refused')}
    assert after == before, 'key and certificate untouched'


def machine_args(lab, tmp_path, name):
    """The computer account enrolls for Machine (the CA builds CN and DNS SAN from its dNSHostName), no names asked,
    the directory configured (template and account read from AD)."""
    computer = lab['accounts']['computer']
    args = web_args(lab, tmp_path, name, template='Machine', username=computer['upn'],
                    password=computer['password'])
    for key in ('common_name', 'subject_alt_name'):
        args.pop(key)
    return with_directory(lab, args)


def test_names_built_from_ad_are_compared_with_the_account(lab, ansible, tmp_path, faults, private_ca):
    computer = lab['accounts']['computer']
    args = machine_args(lab, tmp_path, 'machine')
    rc, result = ansible.module(MODULE, args)
    assert_issued(rc, result, args)
    assert result['certificate']['subject'] == 'CN=%s' % computer['dns_host_name']
    assert not result.get('warnings'), result.get('warnings')

    faults(alter_subject='CN=victim.lab.adcs.test')
    before = requests_in_db(private_ca)
    rc, result = ansible.module(MODULE, dict(args, force=True))
    assert_failed(rc, result, 'The CA issued a certificate that is not what was asked for; nothing was written; '
                              'request ID %d; subject: Active Directory gives CN=%s, issued CN=victim.lab.adcs.test. '
                              'What to do:' % (result['request_id'], computer['dns_host_name']))
    assert applied(faults, 'alter_subject')
    assert os.path.exists(args['certificate_path'] + '.refused')
    # without force the certificate on disk still fits: unchanged, no request to the CA
    rc, result = ansible.module(MODULE, args)
    assert rc == 0 and result['changed'] is False, result
    assert result['certificate']['subject'] == 'CN=%s' % computer['dns_host_name']
    assert requests_in_db(private_ca) - before == 1
