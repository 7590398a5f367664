# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory directory behind a fake ldap3 Connection, for the module tests of wcce_template_info and
wcce_ca_info: the real AdConnection, discovery and decoding code runs, only the socket is replaced."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

import ldap3

from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap

BASE = 'DC=lab,DC=adcs,DC=test'
CONFIG = 'CN=Configuration,' + BASE


def _unescape(value):
    return re.sub(rb'\\([0-9a-fA-F]{2})', lambda m: bytes([int(m.group(1), 16)]), value.encode('utf-8'))


def _parse(flt, pos=0):
    """Tiny LDAP filter parser: returns (node, next position). node = ('&'|'|', [children]) or ('=', attr, value)."""
    assert flt[pos] == '('
    pos += 1
    if flt[pos] in '&|':
        op = flt[pos]
        pos += 1
        children = []
        while flt[pos] == '(':
            child, pos = _parse(flt, pos)
            children.append(child)
        assert flt[pos] == ')'
        return (op, children), pos + 1
    end = flt.index(')', pos)
    attr, _sep, value = flt[pos:end].partition('=')
    return ('=', attr, value), end + 1


def _match(node, attrs):
    if node[0] == '&':
        return all(_match(c, attrs) for c in node[1])
    if node[0] == '|':
        return any(_match(c, attrs) for c in node[1])
    _op, attr, value = node
    values = [v for k, vs in attrs.items() if k.lower() == attr.lower() for v in vs]
    if value == '*':
        return bool(values)
    wanted = _unescape(value)
    return any(v.lower() == wanted.lower() for v in values)


class Directory(object):
    def __init__(self):
        self.entries = {}

    def add(self, dn, **attrs):
        raw = {}
        for name, values in attrs.items():
            name = name.replace('_', '-')
            values = values if isinstance(values, list) else [values]
            raw[name] = [v if isinstance(v, bytes) else str(v).encode('utf-8') for v in values]
        self.entries[dn] = raw

    def search(self, base, flt, scope):
        node, _end = _parse(flt)
        result = []
        for dn, attrs in self.entries.items():
            if scope == ldap3.BASE:
                ok = dn.lower() == base.lower()
            elif scope == ldap3.LEVEL:
                ok = dn.lower().endswith(',' + base.lower()) and ',' not in dn[:-(len(base) + 1)].replace('\\,', '')
            else:
                ok = dn.lower() == base.lower() or dn.lower().endswith(',' + base.lower())
            if ok and _match(node, attrs):
                result.append((dn, attrs))
        return result


class DirectoryConnection(object):
    directory = None
    binds = []

    def __init__(self, server, **kwargs):
        self.server = server
        self.kwargs = kwargs
        self.closed = True
        self.result = {}
        self.response = []
        self.last_error = None
        self.extend = type('E', (), {'standard': type('S', (), {'who_am_i': staticmethod(lambda: None)})()})()

    def open(self):
        self.closed = False

    def start_tls(self):
        return True

    def bind(self):
        DirectoryConnection.binds.append(self.kwargs)
        self.result = {'result': 0, 'description': 'success'}
        return True

    def unbind(self):
        self.closed = True

    def search(self, search_base, search_filter, search_scope, attributes, controls=None, paged_size=None, paged_cookie=None):
        if search_base == '':
            found = [('', {'defaultNamingContext': [BASE.encode()], 'configurationNamingContext': [CONFIG.encode()]})]
        else:
            found = self.directory.search(search_base, search_filter, search_scope)
        wanted = set(a.lower() for a in attributes)
        self.response = [{'type': 'searchResEntry', 'dn': dn,
                          'raw_attributes': dict((k, v) for k, v in attrs.items() if k.lower() in wanted)} for dn, attrs in found]
        self.result = {'result': 0, 'description': 'success', 'controls': {}}
        return bool(found)


class Server(object):
    def __init__(self, host, **kwargs):
        self.host = host
        self.kwargs = kwargs


def install_directory(monkeypatch, directory):
    """Make _ldap.AdConnection talk to ``directory`` (a Directory); returns it."""
    DirectoryConnection.directory = directory
    DirectoryConnection.binds = []

    class TestAdConnection(_ldap.AdConnection):
        def __init__(self, settings):
            super(TestAdConnection, self).__init__(settings, connection_factory=DirectoryConnection, server_factory=Server)

    monkeypatch.setattr(_ldap, 'AdConnection', TestAdConnection)
    return directory
