# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One job: asking one DNS server for the address of one host name (an A or AAAA question over UDP, RFC 1035 wire
format), with the standard library only.

``_dns.resolve_host`` asks the domain controller's DNS this way when the system resolver does not know the CA
host. dnspython would do it too, but importing it costs 30-40 ms, a tenth of a whole enrollment; it stays the home
of SRV lookups (``_dns.find_domain_controllers``, ``find_kdcs``). The reply is taken only when it comes from the
server asked (a connected socket), carries the query's random ID, is a response and repeats the question; a
malformed reply counts as no answer (DNS is not authenticated: the address is only where the connection goes, the
CA is then authenticated by the RPC security context and its certificate by the trust anchors). CNAMEs in the
answer section are followed (at most 8). A truncated reply (TC) is no answer: an A/AAAA answer fits in 512 bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import socket
import struct
import time

TYPES = {'A': 1, 'AAAA': 28}
CNAME = 5
CLASS_IN = 1
MAX_CNAMES = 8
_random = random.SystemRandom()


class Malformed(ValueError):
    """A reply that does not parse (bounds, compression loops)."""


def encode_name(name):
    """The wire form of ``name`` (labels, root at the end); ValueError for empty labels, labels over 63 bytes or
    names over 255 bytes."""
    out = b''
    for label in name.rstrip('.').split('.'):
        raw = label.encode('idna') if label else b''
        if not 0 < len(raw) < 64:
            raise ValueError('not a DNS name: %r' % name)
        out += struct.pack('!B', len(raw)) + raw
    out += b'\0'
    if len(out) > 255:
        raise ValueError('DNS name too long: %r' % name)
    return out


def build_query(name, rdtype, query_id):
    """A recursive (RD) query for ``name`` and ``rdtype`` ('A' or 'AAAA') with ID ``query_id``."""
    return struct.pack('!HHHHHH', query_id, 0x0100, 1, 0, 0, 0) + encode_name(name) + \
        struct.pack('!HH', TYPES[rdtype], CLASS_IN)


def read_name(data, offset):
    """(lower-case dotted name, offset after it) at ``offset`` of message ``data``, following compression
    pointers (RFC 1035 4.1.4); Malformed on bounds errors or pointer loops."""
    labels, end, jumps = [], None, 0
    while True:
        if offset >= len(data):
            raise Malformed('name runs past the end of the message')
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise Malformed('compression pointer runs past the end of the message')
            jumps += 1
            if jumps > 32:
                raise Malformed('compression pointer loop')
            if end is None:
                end = offset + 2
            offset = struct.unpack('!H', data[offset:offset + 2])[0] & 0x3FFF
            continue
        if length & 0xC0:
            raise Malformed('unknown label type')
        offset += 1
        if length == 0:
            break
        if offset + length > len(data):
            raise Malformed('label runs past the end of the message')
        labels.append(data[offset:offset + length].decode('ascii', 'replace').lower())
        offset += length
    return '.'.join(labels), (end if end is not None else offset)


def parse_reply(data, name, rdtype, query_id):
    """The addresses for ``name`` in reply ``data`` to query ``query_id``: a list (empty: no such record), or None
    when ``data`` is not the answer to this query (other ID, not a response, another question); Malformed when
    it cannot be parsed."""
    if len(data) < 12:
        raise Malformed('shorter than a DNS header')
    rid, flags, qdcount, ancount = struct.unpack('!HHHH', data[:8])
    if rid != query_id or not flags & 0x8000 or qdcount != 1:
        return None
    qname, offset = read_name(data, 12)
    if offset + 4 > len(data):
        raise Malformed('question runs past the end of the message')
    qtype, qclass = struct.unpack('!HH', data[offset:offset + 4])
    wanted = name.rstrip('.').lower()
    if qname != wanted or qtype != TYPES[rdtype] or qclass != CLASS_IN:
        return None
    if flags & 0x0200 or flags & 0x000F:     # truncated, or an error (NXDOMAIN, SERVFAIL, REFUSED)
        return []
    offset += 4
    records = []
    for _index in range(ancount):
        owner, offset = read_name(data, offset)
        if offset + 10 > len(data):
            raise Malformed('record runs past the end of the message')
        rtype, rclass, _ttl, rdlength = struct.unpack('!HHIH', data[offset:offset + 10])
        offset += 10
        if offset + rdlength > len(data):
            raise Malformed('record data runs past the end of the message')
        records.append((owner, rtype, rclass, data, offset, rdlength))
        offset += rdlength
    return _addresses(records, wanted, TYPES[rdtype])


def _addresses(records, name, rtype):
    family, size = (socket.AF_INET, 4) if rtype == 1 else (socket.AF_INET6, 16)
    for _hop in range(MAX_CNAMES + 1):
        found = [socket.inet_ntop(family, data[at:at + length])
                 for owner, kind, rclass, data, at, length in records
                 if owner == name and kind == rtype and rclass == CLASS_IN and length == size]
        if found:
            return found
        aliases = [read_name(data, at)[0] for owner, kind, rclass, data, at, _length in records
                   if owner == name and kind == CNAME and rclass == CLASS_IN]
        if not aliases:
            return []
        name = aliases[0]
    return []


def query_address(name, server, port=53, rdtype='A', timeout=5):
    """The first address of ``rdtype`` ('A' or 'AAAA') for ``name`` from DNS server ``server`` (an address), or
    None (no such record, an error reply, no answer within ``timeout`` seconds, or a malformed name/reply)."""
    try:
        query_id = _random.randrange(65536)
        query = build_query(name, rdtype, query_id)
        family = socket.AF_INET6 if ':' in server else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except (ValueError, OSError, UnicodeError):
        return None
    deadline = time.monotonic() + timeout
    try:
        sock.connect((server, port))     # only the server's datagrams reach this socket
        sock.send(query)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            try:
                answer = parse_reply(sock.recv(4096), name, rdtype, query_id)
            except Malformed:
                return None
            if answer is not None:
                return answer[0] if answer else None
    except (OSError, socket.timeout):
        return None
    finally:
        sock.close()
