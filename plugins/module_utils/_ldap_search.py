# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading Active Directory: one job, the searches of a bound connection (``LdapReader``, mixed into
``_ldap.AdConnection``): the rootDSE and its naming contexts, paged searches (bounded: pages, entries and cookie size)
with the SD flags control for nTSecurityDescriptor, accounts (whoami, find by name/UPN/DN/SID), their token
(objectSid + tokenGroups) and SID names. ``first_text`` reads one attribute value as text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_LDAP3
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import LdapError
from ansible_collections.adcs.enrollment.plugins.module_utils._security import sid_to_string, sid_to_bytes

if HAS_LDAP3:
    import ldap3
    from ldap3.protocol.microsoft import security_descriptor_control
    from ldap3.utils.conv import escape_bytes, escape_filter_chars

PAGED_RESULTS_OID = '1.2.840.113556.1.4.319'

# Bounds of one paged search: a hostile or broken server cannot make us loop or grow without end.
MAX_PAGES = 2000
MAX_ENTRIES = 200000
MAX_COOKIE_BYTES = 4096


def ldap3_error_text(exc):
    """ldap3 wraps socket errors in nested tuples of reprs: dig out the innermost message."""
    text = str(exc) or exc.__class__.__name__
    match = re.search(r"\[SSL: [A-Z_]+\] ([^'\"]*)", text)
    if match:
        return match.group(0).strip()
    match = re.search(r"socket ssl wrapping error: ([^'\"]*)", text)
    if match:
        return match.group(1).strip()
    while len(text) > 2 and text[0] in '(["\'' and text[-1] in ')]"\',':
        stripped = text.strip('()[],').strip('"\'')
        if stripped == text:
            break
        text = stripped
    return text


def _domain_to_dn(domain):
    return ','.join('DC=%s' % part for part in domain.strip('.').split('.'))


class LdapReader(object):
    """The reading half of AdConnection: needs ``self.conn`` (a bound ldap3 connection), ``self.host``,
    ``self.settings`` and ``self.root_dse``."""

    def _read_root_dse(self):
        wanted = ['defaultNamingContext', 'configurationNamingContext', 'rootDomainNamingContext', 'dnsHostName']
        entries = self.search('', '(objectClass=*)', wanted, scope='BASE', paged=False)
        if not entries:
            raise LdapError('cannot read the rootDSE of %s' % self.host)
        attrs = entries[0]['attributes']

        def first(name):
            value = attrs.get(name)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            if isinstance(value, bytes):
                value = value.decode('utf-8')
            return value

        self.root_dse = {
            'defaultNamingContext': first('defaultNamingContext'),
            'configurationNamingContext': first('configurationNamingContext'),
            'rootDomainNamingContext': first('rootDomainNamingContext'),
            'dnsHostName': first('dnsHostName'),
        }
        if not self.root_dse['defaultNamingContext'] and self.settings.domain:
            self.root_dse['defaultNamingContext'] = _domain_to_dn(self.settings.domain)
        if not self.root_dse['configurationNamingContext']:
            root = self.root_dse['rootDomainNamingContext'] or self.root_dse['defaultNamingContext']
            if not root:
                raise LdapError('the rootDSE of %s names no naming context' % self.host)
            self.root_dse['configurationNamingContext'] = 'CN=Configuration,%s' % root

    @property
    def default_nc(self):
        return self.root_dse.get('defaultNamingContext')

    @property
    def configuration_nc(self):
        return self.root_dse.get('configurationNamingContext')

    def search(self, base, search_filter, attributes, scope='SUBTREE', sd_flags=None, paged=True, page_size=500,
               max_pages=MAX_PAGES, max_entries=MAX_ENTRIES):
        """Run a (paged) search; return a list of {'dn', 'attributes': {name: [raw bytes, ...]}}.

        Attribute names in the result use the case asked for in ``attributes``. A search stops with an LdapError
        after max_pages pages or max_entries entries, or when the server sends a cookie larger than
        MAX_COOKIE_BYTES or the same cookie twice.
        """
        if self.conn is None:
            raise LdapError('not connected')
        scopes = {'BASE': ldap3.BASE, 'LEVEL': ldap3.LEVEL, 'SUBTREE': ldap3.SUBTREE}
        controls = []
        if sd_flags is not None:
            controls.extend(security_descriptor_control(criticality=True, sdflags=sd_flags))
        wanted = dict((a.lower(), a) for a in attributes)
        results = []
        cookie = None
        seen_cookies = set()
        pages = 0
        while True:
            pages += 1
            kwargs = dict(search_base=base, search_filter=search_filter, search_scope=scopes[scope],
                          attributes=list(attributes), controls=controls or None)
            if paged:
                kwargs.update(paged_size=page_size, paged_cookie=cookie)
            try:
                self.conn.search(**kwargs)
            except Exception as exc:
                raise LdapError('search of %s failed: %s' % (base or 'rootDSE', ldap3_error_text(exc)))
            result = self.conn.result or {}
            code = result.get('result', 0)
            if code not in (0, 4, 32):  # success, sizeLimitExceeded (partial), noSuchObject
                raise LdapError('search of %s %s failed: %s %s'
                                % (base or 'rootDSE', search_filter, result.get('description'), (result.get('message') or '').strip()))
            for item in self.conn.response or []:
                if item.get('type') != 'searchResEntry':
                    continue
                raw = item.get('raw_attributes') or {}
                attrs = {}
                for name, values in raw.items():
                    key = wanted.get(name.lower(), name)
                    attrs[key] = list(values) if isinstance(values, (list, tuple)) else [values]
                results.append({'dn': item.get('dn'), 'attributes': attrs})
            where = '%s %s' % (base or 'rootDSE', search_filter)
            if len(results) > max_entries:
                raise LdapError('search of %s returned more than %d entries: stopped' % (where, max_entries))
            if not paged:
                break
            cookie = (((result.get('controls') or {}).get(PAGED_RESULTS_OID) or {}).get('value') or {}).get('cookie')
            if not cookie:
                break
            if len(cookie) > MAX_COOKIE_BYTES:
                raise LdapError('search of %s: the server sent a paging cookie of %d bytes (at most %d): stopped'
                                % (where, len(cookie), MAX_COOKIE_BYTES))
            if cookie in seen_cookies:
                raise LdapError('search of %s: the server sent the same paging cookie twice: stopped' % where)
            seen_cookies.add(cookie)
            if pages >= max_pages:
                raise LdapError('search of %s needs more than %d pages: stopped' % (where, max_pages))
        return results

    # --- accounts ------------------------------------------------------------------------------------------
    def whoami(self):
        """Authorization identity of the bind via the WhoAmI extended operation, or None (Samba lacks it)."""
        try:
            value = self.conn.extend.standard.who_am_i()
        except Exception:
            return None
        if not value:
            return None
        value = value.decode('utf-8') if isinstance(value, bytes) else value
        if value.startswith('u:'):
            return value[2:]
        if value.startswith('dn:'):
            return value[3:]
        return value

    def find_account(self, principal):
        """Find a user/computer by DOMAIN\\sam, sam, UPN, DN or SID; return its entry or None."""
        principal = principal.strip()
        base = self.default_nc
        attrs = ['distinguishedName', 'sAMAccountName', 'userPrincipalName', 'objectSid', 'objectClass', 'dNSHostName']
        parsed = _principals.parse(principal)
        if parsed.form == _principals.SID:
            flt = '(objectSid=%s)' % escape_bytes(sid_to_bytes(principal))
        elif parsed.form == _principals.DN and ',' in principal:
            found = self.search(principal, '(objectClass=*)', attrs, scope='BASE', paged=False)
            return found[0] if found else None
        elif parsed.form == _principals.DOWN_LEVEL:
            flt = '(sAMAccountName=%s)' % escape_filter_chars(parsed.user)
        elif parsed.form == _principals.UPN:
            flt = '(|(userPrincipalName=%s)(sAMAccountName=%s))' % (escape_filter_chars(principal),
                                                                    escape_filter_chars(parsed.user))
        else:
            flt = '(|(sAMAccountName=%s)(sAMAccountName=%s$))' % (escape_filter_chars(principal), escape_filter_chars(principal))
        found = self.search(base, '(&(|(objectClass=user)(objectClass=computer))%s)' % flt, attrs)
        if len(found) > 1 and '@' in principal:
            exact = [f for f in found if first_text(f, 'userPrincipalName', '').lower() == principal.lower()]
            found = exact or found
        return found[0] if found else None

    def account_token(self, entry):
        """SIDs a token of this account carries: objectSid, tokenGroups (transitive groups incl. primary group),
        plus Everyone and Authenticated Users which AD does not store."""
        dn = entry['dn']
        found = self.search(dn, '(objectClass=*)', ['objectSid', 'tokenGroups'], scope='BASE', paged=False)
        if not found:
            raise LdapError('cannot read tokenGroups of %s' % dn)
        attrs = found[0]['attributes']
        sids = []
        for value in attrs.get('objectSid', []):
            sids.append(sid_to_string(value)[0])
        groups = [sid_to_string(value)[0] for value in attrs.get('tokenGroups', [])]
        for sid in groups:
            if sid not in sids:
                sids.append(sid)
        # the token of a network logon, as the CA sees the requester: Everyone, NETWORK, Authenticated Users,
        # This Organization (MS-DTYP 2.4.2.4 well-known SIDs)
        for sid in ('S-1-1-0', 'S-1-5-2', 'S-1-5-11', 'S-1-5-15'):
            if sid not in sids:
                sids.append(sid)
        return sids, groups

    def resolve_sids(self, sids):
        """{sid: 'DOMAIN\\name' or name} for SIDs found in the domain partition (others are left out)."""
        names = {}
        pending = [sid for sid in sids if sid and sid.startswith(('S-1-5-21-', 'S-1-5-32-'))]
        for i in range(0, len(pending), 50):
            chunk = pending[i:i + 50]
            flt = '(|%s)' % ''.join('(objectSid=%s)' % escape_bytes(sid_to_bytes(s)) for s in chunk)
            try:
                found = self.search(self.default_nc, flt, ['objectSid', 'sAMAccountName', 'name'])
            except LdapError:
                continue
            for item in found:
                attrs = item['attributes']
                if not attrs.get('objectSid'):
                    continue
                sid = sid_to_string(attrs['objectSid'][0])[0]
                name = first_text(item, 'sAMAccountName') or first_text(item, 'name')
                if name:
                    names[sid] = name
        return names


def first_text(entry, name, default=None):
    """The first value of attribute ``name`` of a search entry as text (bytes decoded as UTF-8); ``default`` when
    absent or not UTF-8."""
    values = entry['attributes'].get(name)
    if not values:
        return default
    value = values[0]
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode('utf-8')
        except UnicodeDecodeError:
            return default
    return value
