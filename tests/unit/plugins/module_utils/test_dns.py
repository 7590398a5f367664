# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _dns, _dns_wire
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import DnsError, KerberosFailure
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.subproc import run_python
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.dns import SRV, FakeResolver, ResolverByName

REALM = 'LAB.ADCS.TEST'


@pytest.mark.parametrize('value, expected', [
    ('dc1', ('dc1', 88)), ('dc1:8888', ('dc1', 8888)), ('[::1]:89', ('::1', 89)), ('[::1]', ('::1', 88)),
])
def test_parse_host_port(value, expected):
    assert _dns.parse_host_port(value, 88) == expected


def test_find_kdcs_ordered_by_priority_and_weight():
    res = ResolverByName({'_kerberos._tcp.lab.adcs.test': [
        SRV(10, 0, 88, 'dc3.lab.adcs.test.'), SRV(0, 10, 88, 'dc2.lab.adcs.test.'),
        SRV(0, 50, 88, 'dc1.lab.adcs.test.')]})
    assert _dns.find_kdcs(REALM, resolver=res) == [('dc1.lab.adcs.test', 88), ('dc2.lab.adcs.test', 88),
                                                   ('dc3.lab.adcs.test', 88)]
    assert res.asked == [('_kerberos._tcp.lab.adcs.test', 'SRV')]


def test_find_kdcs_udp_fallback_and_none():
    res = ResolverByName({'_kerberos._udp.lab.adcs.test': [SRV(0, 0, 88, 'dc1.lab.adcs.test.')]})
    assert _dns.find_kdcs(REALM, resolver=res) == [('dc1.lab.adcs.test', 88)]
    with pytest.raises(KerberosFailure) as info:
        _dns.find_kdcs('NOPE.TEST', resolver=ResolverByName({}))
    assert 'No KDC found for realm NOPE.TEST' in str(info.value)
    assert 'domain_controller' in str(info.value)


def test_srv_lookup_orders_by_priority_then_weight():
    resolver = FakeResolver([SRV(10, 100, 389, 'dc3.lab.adcs.test.'), SRV(0, 50, 389, 'dc2.lab.adcs.test.'),
                             SRV(0, 100, 389, 'dc1.lab.adcs.test.')])
    assert _dns.find_domain_controllers('lab.adcs.test.', resolver=resolver) == [
        ('dc1.lab.adcs.test', 389), ('dc2.lab.adcs.test', 389), ('dc3.lab.adcs.test', 389)]
    assert resolver.asked == [('_ldap._tcp.dc._msdcs.lab.adcs.test', 'SRV')]


def test_srv_lookup_failure():
    with pytest.raises(DnsError) as exc:
        _dns.find_domain_controllers('lab.adcs.test', resolver=FakeResolver(error=RuntimeError('NXDOMAIN')))
    assert '_ldap._tcp.dc._msdcs.lab.adcs.test' in str(exc.value)
    with pytest.raises(DnsError):
        _dns.find_domain_controllers('lab.adcs.test', resolver=FakeResolver([SRV(0, 0, 389, '.')]))


def test_dnspython_resolver_is_used_when_available():
    if not _dns.HAS_DNSPYTHON:
        pytest.skip('dnspython not installed')
    import dns.resolver
    assert hasattr(dns.resolver.Resolver(configure=False), 'resolve')


def test_in_domain():
    assert _dns.in_domain('dc1.lab.adcs.test.', 'lab.adcs.test')
    assert _dns.in_domain('LAB.ADCS.TEST', 'lab.adcs.test.')
    assert not _dns.in_domain('evil-lab.adcs.test', 'lab.adcs.test')
    assert not _dns.in_domain('lab.adcs.test.evil.example', 'lab.adcs.test')
    assert not _dns.in_domain('adcs.test', 'lab.adcs.test')
    assert not _dns.in_domain('', 'lab.adcs.test')


def test_srv_targets_outside_the_domain_are_dropped():
    resolver = FakeResolver([SRV(0, 100, 636, 'dc.attacker.example.'), SRV(5, 100, 389, 'dc2.lab.adcs.test.'),
                             SRV(1, 100, 389, 'xlab.adcs.test.')])
    assert _dns.find_domain_controllers('lab.adcs.test', resolver=resolver) == [('dc2.lab.adcs.test', 389)]


def test_srv_with_only_foreign_targets_is_refused():
    resolver = FakeResolver([SRV(0, 100, 636, 'dc.attacker.example.'), SRV(1, 100, 389, 'lab.adcs.test.evil.')])
    with pytest.raises(DnsError) as exc:
        _dns.find_domain_controllers('lab.adcs.test', resolver=resolver)
    assert str(exc.value) == (
        'no domain controller found: the SRV record _ldap._tcp.dc._msdcs.lab.adcs.test names only hosts outside the '
        'domain lab.adcs.test (dc.attacker.example, lab.adcs.test.evil); DNS answers are not authenticated, so '
        'these are refused: set domain_controller')


@pytest.mark.parametrize('value', ['127.0.0.1', '::1', 'fe80::1'])
def test_is_address(value):
    assert _dns.is_address(value)


@pytest.mark.parametrize('value', ['dc1.lab.adcs.test', 'dc1', '', '1.2.3'])
def test_is_not_address(value):
    assert not _dns.is_address(value)


def test_resolve_host_addresses_and_system_resolver(monkeypatch):
    assert _dns.resolve_host('10.0.0.5') == '10.0.0.5'
    assert _dns.resolve_host('::1') == '::1'
    monkeypatch.setattr(socket, 'getaddrinfo', lambda *a, **k: [(2, 1, 6, '', ('192.0.2.7', 0))])
    assert _dns.resolve_host('ca.lab.adcs.test') == '192.0.2.7'


def test_resolve_host_asks_the_dns_server_then_gives_up(monkeypatch):
    def nothing(*_a, **_k):
        raise socket.gaierror(-2, 'Name or service not known')
    monkeypatch.setattr(socket, 'getaddrinfo', nothing)
    asked = []

    def answer(name, server, port, rdtype, timeout):
        asked.append((name, server, port, rdtype, timeout))
        return '192.0.2.9'
    monkeypatch.setattr(_dns_wire, 'query_address', answer)
    assert _dns.resolve_host('ca.lab.adcs.test', dns_server='192.0.2.1:5353', timeout=3) == '192.0.2.9'
    assert asked == [('ca.lab.adcs.test', '192.0.2.1', 5353, 'A', 3)]
    assert _dns.resolve_host('ca.lab.adcs.test') == 'ca.lab.adcs.test'    # no DNS server: unchanged
    monkeypatch.setattr(_dns_wire, 'query_address', lambda *a: None)
    assert _dns.resolve_host('ca.lab.adcs.test', dns_server='192.0.2.1') == 'ca.lab.adcs.test'
    # a DNS server given by a name the system resolver does not know: nothing to ask
    assert _dns.resolve_host('ca.lab.adcs.test', dns_server='dc1.lab.adcs.test') == 'ca.lab.adcs.test'


def test_resolve_host_ipv6_only_names(monkeypatch):
    """A name with only an IPv6 address resolves (system resolver, then an AAAA query to the DC)."""
    def v6_only(host, port, family=0, *_a, **_k):
        if family == socket.AF_INET6:
            return [(socket.AF_INET6, 1, 6, '', ('2001:db8::12', 0, 0, 0))]
        raise socket.gaierror(-5, 'No address associated with hostname')
    monkeypatch.setattr(socket, 'getaddrinfo', v6_only)
    assert _dns.resolve_host('ca.lab.adcs.test') == '2001:db8::12'

    def nothing(*_a, **_k):
        raise socket.gaierror(-2, 'Name or service not known')
    monkeypatch.setattr(socket, 'getaddrinfo', nothing)
    asked = []

    def answer(name, server, port, rdtype, timeout):
        asked.append(rdtype)
        return '2001:db8::13' if rdtype == 'AAAA' else None
    monkeypatch.setattr(_dns_wire, 'query_address', answer)
    assert _dns.resolve_host('ca.lab.adcs.test', dns_server='192.0.2.1') == '2001:db8::13'
    assert asked == ['A', 'AAAA']


def test_resolve_host_does_not_import_dnspython():
    code = ('import sys, socket\n'
            'from ansible_collections.adcs.enrollment.plugins.module_utils import _dns\n'
            'socket.getaddrinfo = lambda *a, **k: (_ for _ in ()).throw(socket.gaierror(-2, "no"))\n'
            'assert _dns.resolve_host("ca.lab.adcs.test", dns_server="127.0.0.1:9", timeout=0.2) == "ca.lab.adcs.test"\n'
            'print(sorted(m for m in sys.modules if m == "dns" or m.startswith("dns.")))\n')
    out = run_python(code)
    assert out.strip().splitlines()[-1] == '[]', out


@pytest.mark.skipif(not _dns.HAS_DNSPYTHON, reason='dnspython not installed')
def test_make_resolver_uses_only_the_given_server():
    resolver = _dns.make_resolver('127.0.0.53:5353', timeout=3)
    assert [str(n) for n in resolver.nameservers] == ['127.0.0.53'] and resolver.port == 5353
    assert resolver.lifetime == 3
