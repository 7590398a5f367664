# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS: one job, finding hosts: SRV lookups for domain controllers and KDCs, and host-name resolution.

- ``find_domain_controllers(domain)``: ``_ldap._tcp.dc._msdcs.<domain>``, targets inside the domain only (DNS is
  not authenticated and the target is the name the DC's TLS certificate is verified for); raises DnsError.
- ``find_kdcs(realm)``: ``_kerberos._tcp.<realm>`` then ``_kerberos._udp``; raises KerberosFailure.
- ``resolve_host(host, dns_server)``: the system resolver first (IPv4, then IPv6), then A/AAAA queries to
  ``dns_server`` (AD-integrated DNS on the domain controller knows the CA host when the system resolver does not;
  ``_dns_wire``, without dnspython: it is on the path of every enrollment); the host unchanged when nothing
  resolves (the connection attempt reports it).

A given DNS server may be ``host``, ``host:port`` or ``[v6]:port``; dnspython is optional (``_deps``) and needed
for SRV lookups only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import DnsError, KerberosFailure


def __getattr__(name):
    """``HAS_DNSPYTHON``: dnspython is imported when a lookup needs it, not with this file (the DCOM client imports
    it for Kerberos, which a password session never uses)."""
    if name == 'HAS_DNSPYTHON':
        return _deps.available('dnspython')
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


DEFAULT_TIMEOUT = 10
DNS_PORT = 53


def is_address(host):
    """Whether ``host`` is an IPv4 or IPv6 address (not a name)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def parse_host_port(value, default_port):
    """(host, port) from ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    value = (value or '').strip()
    if value.startswith('['):
        host, _sep, rest = value[1:].partition(']')
        port = rest.lstrip(':')
        return host, int(port) if port else default_port
    if value.count(':') == 1:
        host, port = value.split(':')
        return host, int(port)
    return value, default_port


def in_domain(host, domain):
    """Whether the DNS name host is the domain itself or a name inside it (case-insensitive)."""
    host = (host or '').rstrip('.').lower()
    domain = (domain or '').strip('.').lower()
    return bool(host and domain) and (host == domain or host.endswith('.' + domain))


def server_address(host):
    """dnspython wants the DNS server's address: resolve a name with the system resolver."""
    if is_address(host):
        return host
    return socket.getaddrinfo(host, DNS_PORT, 0, socket.SOCK_STREAM)[0][4][0]


def make_resolver(dns_server=None, timeout=DEFAULT_TIMEOUT):
    """A dnspython resolver: the system configuration, or only ``dns_server`` (host[:port]) when given."""
    import dns.resolver
    resolver = dns.resolver.Resolver(configure=not dns_server)
    if dns_server:
        host, port = parse_host_port(dns_server, DNS_PORT)
        resolver.nameservers = [server_address(host)]
        resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def _srv_targets(answer):
    """[(priority, -weight, target, port)] of an SRV answer, root targets ('.') left out."""
    records = []
    for rr in answer:
        target = str(rr.target).rstrip('.')
        if target:
            records.append((int(rr.priority), -int(rr.weight), target, int(rr.port)))
    return records


def find_domain_controllers(domain, resolver=None, timeout=DEFAULT_TIMEOUT):
    """Host names of the domain's DCs from the SRV record _ldap._tcp.dc._msdcs.<domain>, best first."""
    if resolver is None:
        if not _deps.available('dnspython'):
            raise DnsError('dnspython is required to find a domain controller through DNS; set domain_controller '
                           'instead')
        import dns.resolver
        resolver = dns.resolver.Resolver()
        resolver.lifetime = timeout
    name = '_ldap._tcp.dc._msdcs.%s' % domain.strip('.')
    try:
        answer = resolver.resolve(name, 'SRV')
    except Exception as exc:  # dns.exception.DNSException and resolver errors
        raise DnsError('no domain controller found: DNS SRV lookup of %s failed: %s' % (name, exc))
    records = _srv_targets(answer)
    if not records:
        raise DnsError('no domain controller found: %s has no SRV targets' % name)
    # DNS answers are not authenticated, and the SRV target is the name the DC's TLS certificate is verified for:
    # only names inside the domain are taken, so a forged answer cannot point us at a host with any valid cert.
    outside = sorted(set(r[2] for r in records if not in_domain(r[2], domain)))
    records = [r for r in records if in_domain(r[2], domain)]
    if not records:
        raise DnsError('no domain controller found: the SRV record %s names only hosts outside the domain %s (%s); '
                       'DNS answers are not authenticated, so these are refused: set domain_controller'
                       % (name, domain.strip('.'), ', '.join(outside)))
    records.sort()
    return [(target, port) for _prio, _weight, target, port in records]


def find_kdcs(realm, dns_server=None, timeout=DEFAULT_TIMEOUT, resolver=None):
    """KDCs of ``realm`` from DNS SRV records, as [(host, port)] ordered by priority then weight (descending)."""
    if resolver is None:
        if not _deps.available('dnspython'):
            raise KerberosFailure('Cannot look up the KDC in DNS: the Python library "dnspython" is missing',
                                  remedy='Install dnspython or give the KDC (domain_controller).')
        resolver = make_resolver(dns_server, timeout)
    errors = []
    for proto in ('tcp', 'udp'):
        qname = '_kerberos._%s.%s' % (proto, realm.lower())
        try:
            answer = resolver.resolve(qname, 'SRV')
        except Exception as exc:  # NXDOMAIN, NoAnswer, timeout
            errors.append('%s: %s' % (qname, type(exc).__name__))
            continue
        out = []
        for _prio, _weight, target, port in sorted(_srv_targets(answer), key=lambda r: r[:2]):
            if (target, port) not in out:
                out.append((target, port))
        if out:
            return out
    srv_name = '_kerberos._tcp.%s' % realm.lower()
    raise KerberosFailure('No KDC found for realm %s: no DNS SRV record %s' % (realm, srv_name),
                          detail='; '.join(errors),
                          remedy='Give the KDC (domain_controller option) or point DNS at the domain\'s DNS '
                                 'servers.')


def resolve_host(host, dns_server=None, timeout=5):
    """An address for ``host``: unchanged if it is an address (IPv4 or IPv6), else the system resolver (IPv4 first,
    then IPv6), else an A then AAAA query to ``dns_server``; ``host`` unchanged when nothing resolves (the connection
    attempt then reports it)."""
    if not host or is_address(host):
        return host
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)[0][4][0]
        except (OSError, socket.error, IndexError):
            continue
    if dns_server:
        from ansible_collections.adcs.enrollment.plugins.module_utils import _dns_wire
        server, port = parse_host_port(dns_server, DNS_PORT)
        try:
            server = server_address(server)
        except (OSError, socket.error, IndexError):
            return host
        for rdtype in ('A', 'AAAA'):
            address = _dns_wire.query_address(host, server, port, rdtype, timeout)
            if address:     # else the DC does not serve DNS, or no such name: the connect attempt reports it
                return address
    return host
