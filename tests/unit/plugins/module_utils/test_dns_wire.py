# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_dns_wire against a DNS server on loopback (a real UDP socket) that answers with crafted replies."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import struct
import threading

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _dns_wire

NAME = 'pki-issuing-ca01.lab.adcs.test'


def rr(owner_wire, rtype, rdata, rclass=1):
    return owner_wire + struct.pack('!HHIH', rtype, rclass, 300, len(rdata)) + rdata


def reply(query, answers=(), flags=0x8180, qid=None, question=None):
    """A reply to ``query``: its question (or ``question``), ``answers`` (wire records)."""
    rid = struct.unpack('!H', query[:2])[0] if qid is None else qid
    body = query[12:] if question is None else question
    return struct.pack('!HHHHHH', rid, flags, 1, len(answers), 0, 0) + body + b''.join(answers)


class Server(object):
    """Answers each query with what ``respond(query)`` returns: one datagram, a list of them, or None."""

    def __init__(self, respond):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.respond = respond
        self.queries = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries.append(data)
            out = self.respond(data)
            for datagram in (out if isinstance(out, list) else [out] if out is not None else []):
                self.sock.sendto(datagram, peer)

    def close(self):
        self.sock.close()


@pytest.fixture
def serve():
    servers = []

    def make(respond):
        servers.append(Server(respond))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def ask(server, rdtype='A', timeout=1.0):
    return _dns_wire.query_address(NAME, '127.0.0.1', server.port, rdtype, timeout)


def test_a_record(serve):
    server = serve(lambda q: reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('127.0.0.12'))]))
    assert ask(server) == '127.0.0.12'
    query = server.queries[0]
    assert struct.unpack('!HHHH', query[2:10]) == (0x0100, 1, 0, 0)           # recursion desired, one question
    assert query[12:] == _dns_wire.encode_name(NAME) + struct.pack('!HH', 1, 1)


def test_aaaa_record(serve):
    server = serve(lambda q: reply(q, [rr(b'\xc0\x0c', 28, socket.inet_pton(socket.AF_INET6, '2001:db8::12'))]))
    assert ask(server, 'AAAA') == '2001:db8::12'


def test_cname_is_followed(serve):
    target = _dns_wire.encode_name('ca-alias.lab.adcs.test')
    server = serve(lambda q: reply(q, [rr(b'\xc0\x0c', 5, target),
                                       rr(target, 1, socket.inet_aton('127.0.0.13'))]))
    assert ask(server) == '127.0.0.13'


def test_cname_loop_gives_nothing(serve):
    one, two = _dns_wire.encode_name('one.lab.adcs.test'), _dns_wire.encode_name('two.lab.adcs.test')
    server = serve(lambda q: reply(q, [rr(b'\xc0\x0c', 5, one), rr(one, 5, two), rr(two, 5, one)]))
    assert ask(server) is None


def test_spoofed_ids_and_questions_are_ignored(serve):
    def respond(q):
        qid = struct.unpack('!H', q[:2])[0]
        return [reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('192.0.2.66'))], qid=qid ^ 1),     # another ID
                reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('192.0.2.67'))], flags=0x0100),    # not a response
                reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('192.0.2.68'))],
                      question=_dns_wire.encode_name('evil.example') + struct.pack('!HH', 1, 1)),
                reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('127.0.0.12'))])]
    assert ask(serve(respond)) == '127.0.0.12'


def test_records_of_other_names_and_types_are_ignored(serve):
    other = _dns_wire.encode_name('other.lab.adcs.test')
    server = serve(lambda q: reply(q, [rr(other, 1, socket.inet_aton('192.0.2.66')),
                                       rr(b'\xc0\x0c', 1, b'\x01\x02\x03'),            # wrong length
                                       rr(b'\xc0\x0c', 1, socket.inet_aton('192.0.2.67'), rclass=3)]))
    assert ask(server) is None


@pytest.mark.parametrize('flags', [0x8183, 0x8185, 0x8380])   # NXDOMAIN, REFUSED, truncated
def test_error_and_truncated_replies_give_nothing(serve, flags):
    server = serve(lambda q: reply(q, [rr(b'\xc0\x0c', 1, socket.inet_aton('127.0.0.12'))], flags=flags))
    assert ask(server) is None


@pytest.mark.parametrize('tail', [
    b'\xc0',                                              # a pointer cut short
    b'\xc0\x0c\x00\x01',                                   # a record header cut short
    b'\xc0\x0c' + struct.pack('!HHIH', 1, 1, 300, 40) + b'\x7f\x00',   # rdata longer than the message
    b'\x3f' + b'a' * 10,                                   # a label longer than the message
    b'\x80\x00',                                           # reserved label type
])
def test_malformed_replies_give_nothing(serve, tail):
    server = serve(lambda q: struct.pack('!HHHHHH', struct.unpack('!H', q[:2])[0], 0x8180, 1, 1, 0, 0) + q[12:] + tail)
    assert ask(server) is None


def test_compression_loop_is_refused():
    data = struct.pack('!HHHHHH', 1, 0x8180, 1, 0, 0, 0) + b'\xc0\x0c'
    with pytest.raises(_dns_wire.Malformed) as exc:
        _dns_wire.read_name(data, 12)
    assert 'loop' in str(exc.value)


def test_no_answer_within_the_timeout(serve):
    server = serve(lambda q: None)
    assert ask(server, timeout=0.2) is None
    assert len(server.queries) == 1


@pytest.mark.parametrize('name', ['', 'a..b', 'x' * 64 + '.test', '.'.join(['abcdefgh'] * 40)])
def test_bad_names_are_not_asked(name):
    with pytest.raises(ValueError):
        _dns_wire.encode_name(name)
    assert _dns_wire.query_address(name, '127.0.0.1', 9, 'A', 0.1) is None


def test_unreachable_server():
    assert _dns_wire.query_address(NAME, '127.0.0.1', 9, 'A', 0.3) is None    # ICMP port unreachable
