# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LDAP access to Active Directory for the adcs.enrollment modules (ldap3).

- domain controller given, or found through DNS SRV ``_ldap._tcp.dc._msdcs.<domain>`` (``_dns``)
- transport: LDAPS (636), StartTLS or plain LDAP (389); TLS certificates verified by default, optional CA bundle;
  plain LDAP only with the opt-in ldap_allow_plaintext (it protects neither a simple bind's password nor, as ldap3
  negotiates no SASL security layer, the replies of NTLM and Kerberos sessions); SRV targets outside the domain are
  refused (DNS is not authenticated, and the target is the name the DC's TLS certificate is verified for); a DC
  found through SRV must also show a certificate naming the domain itself (check_dc_certificate), as Windows DCs'
  Kerberos Authentication certificates do
- binds: simple (password), NTLM (password or NT hash), SASL GSSAPI (Kerberos from a ccache or keytab)
- paged searches (bounded: pages, entries and cookie size), SD flags control for nTSecurityDescriptor, account token (objectSid + tokenGroups)

ldap3 and gssapi are optional imports (``_deps``): callers check HAS_LDAP3 / HAS_GSSAPI (``_deps.check``) and
report ``missing_required_lib`` themselves. Connections from module parameters are built by ``_auth``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import shutil
import socket
import ssl

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_LDAP3
from ansible_collections.adcs.enrollment.plugins.module_utils._ldap_search import (  # pylint: disable=unused-import
    first_text,
)

if HAS_LDAP3:
    import ldap3
    from ldap3.core import exceptions as ldap3_exceptions
else:
    ldap3 = None
    ldap3_exceptions = None

try:
    from ansible.module_utils.common.warnings import warn as _ansible_warn, get_warning_messages
except ImportError:  # pragma: no cover - outside Ansible
    _ansible_warn = None
    get_warning_messages = None

from ansible_collections.adcs.enrollment.plugins.module_utils import _dns
# _ldap_kerberos (gssapi, impacket's Kerberos) is imported by the Kerberos binds only
from ansible_collections.adcs.enrollment.plugins.module_utils import _principals
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import DnsError, LdapError
from ansible_collections.adcs.enrollment.plugins.module_utils._ldap_search import LdapReader, ldap3_error_text

EMPTY_LM_HASH = 'aad3b435b51404eeaad3b435b51404ee'
DEFAULT_PORTS = {'ldaps': 636, 'starttls': 389, 'ldap': 389}


def warn(text):
    """A warning the module returns (Ansible's global warnings, reported by exit_json / fail_json), once."""
    if _ansible_warn is not None and text not in (get_warning_messages() or ()):
        _ansible_warn(text)


if HAS_LDAP3:
    class VerifyingTls(ldap3.Tls):
        """ldap3.Tls that lets Python's ssl module verify the chain *and* the host name during the handshake.

        ldap3 2.9 checks host names with a match_hostname backport (Python 3.12 removed ssl.match_hostname) that
        ignores IP address SANs; Python's own check handles DNS names and addresses correctly.
        """

        def wrap_socket(self, connection, do_handshake=False):
            context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=self.ca_certs_file)
            context.check_hostname = True
            context.verify_mode = ssl.CERT_REQUIRED
            connection.socket = context.wrap_socket(connection.socket, server_side=False,
                                                    do_handshake_on_connect=do_handshake,
                                                    server_hostname=connection.server.host)
else:  # pragma: no cover
    VerifyingTls = None


def _no_delay(conn):
    """TCP_NODELAY on ldap3 connection conn's socket: ldap3 writes a request in several sends (the TLS records of
    a bind), and with Nagle on, the second waits for the server's delayed ACK (40 ms on Linux, up to 200 ms on
    Windows) on every exchange."""
    sock = getattr(conn, 'socket', None)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _peer_certificate(conn):
    """DER of the TLS certificate the server presented on ldap3 connection conn (None when not known)."""
    sock = getattr(conn, 'socket', None)
    getter = getattr(sock, 'getpeercert', None)
    if getter is None:
        return None
    try:
        return getter(binary_form=True)
    except (ValueError, OSError):
        return None


def check_dc_certificate(der, host, domain):
    """A DC found through DNS SRV must show a certificate that names the domain itself (DNS SAN ``domain``).

    DNS answers are not authenticated: the SRV target only says which name the TLS certificate is verified for, and
    any host inside the domain with a certificate from the enterprise CA (web01.<domain>) would pass that check. A
    Windows DC certificate from the Kerberos Authentication template (CT_FLAG_SUBJECT_ALT_REQUIRE_DOMAIN_DNS) carries
    the domain's DNS name and NetBIOS name besides the DC's own name, which a member server's certificate does not:
    that is the proof the host is a DC of the domain. Raises LdapError otherwise."""
    names = []
    if der:
        try:
            from cryptography import x509
            cert = x509.load_der_x509_certificate(der)
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.DNSName)
        except Exception:  # no SAN extension, or a certificate cryptography cannot read
            names = []
    wanted = (domain or '').strip('.').lower()
    if wanted and wanted in [n.rstrip('.').lower() for n in names]:
        return
    raise LdapError('the TLS certificate of %s, found through DNS SRV, does not name the domain %s in its subject '
                    'alternative names (it has %s), as a domain controller certificate from the Kerberos '
                    'Authentication template does; DNS answers are not authenticated, so any host of the domain '
                    'with a certificate from the CA could answer: nothing was sent to it. Set domain_controller to '
                    'the DC you trust (its certificate is then verified for that name), or give the DCs a '
                    'certificate from the Kerberos Authentication template'
                    % (host, wanted, ', '.join('DNS:%s' % n for n in names) or 'no DNS names'))


class LdapSettings(object):
    """Connection settings, built from the module parameters of connection_argument_spec()."""

    def __init__(self, domain=None, domain_controller=None, ldap_port=None, ldap_scheme='ldaps', validate_certs=True,
                 ca_bundle=None, auth='password', username=None, password=None, nt_hash=None, kerberos_ccache=None,
                 kerberos_keytab=None, timeout=30, ldap_allow_plaintext=False, **_ignored):
        self.domain = domain.strip('.').lower() if domain else None
        self.domain_controller = domain_controller
        self.ldap_port = ldap_port
        self.ldap_scheme = ldap_scheme or 'ldaps'
        self.validate_certs = validate_certs if validate_certs is not None else True
        self.ca_bundle = ca_bundle
        self.auth = auth or 'password'
        self.username = username
        self.password = password
        self.nt_hash = nt_hash
        self.kerberos_ccache = kerberos_ccache
        self.kerberos_keytab = kerberos_keytab
        self.timeout = timeout or 30
        self.ldap_allow_plaintext = bool(ldap_allow_plaintext)
        if self.ldap_scheme not in DEFAULT_PORTS:
            raise LdapError('ldap_scheme must be one of ldaps, starttls, ldap')
        if self.auth not in ('password', 'ntlm', 'kerberos'):
            raise LdapError('auth must be one of password, ntlm, kerberos')

    @classmethod
    def from_params(cls, params):
        return cls(**dict((k, v) for k, v in params.items()))

    @property
    def port(self):
        return self.ldap_port or DEFAULT_PORTS[self.ldap_scheme]

    def check_transport(self):
        """Refuse plain LDAP unless ldap_allow_plaintext; return the warnings the chosen transport deserves.

        A simple bind over plain LDAP sends the password in clear. NTLM and Kerberos do not, but ldap3 negotiates no
        SASL security layer (no signing or sealing), so every reply (CA certificates, template ACLs) could be changed
        on the network path: plain LDAP is refused for every bind unless the user opts in.
        """
        warnings = []
        if self.ldap_scheme == 'ldap':
            if self.auth == 'password':
                risk = ('a simple bind over ldap_scheme=ldap sends the password of %s in clear text'
                        % (self.username or 'the account'))
            else:
                risk = ('ldap_scheme=ldap with auth=%s has no signing or sealing (ldap3 negotiates no SASL security '
                        'layer), so the directory\'s replies could be changed on the network path' % self.auth)
            if not self.ldap_allow_plaintext:
                raise LdapError('refusing plain LDAP: %s; use ldap_scheme=ldaps or ldap_scheme=starttls (with '
                                'auth=password, ntlm or kerberos), or set ldap_allow_plaintext=true to accept the risk'
                                % risk)
            warnings.append('ldap_allow_plaintext=true: %s' % risk)
        if self.ldap_scheme in ('ldaps', 'starttls') and not self.validate_certs:
            warnings.append('validate_certs=false: the TLS certificate of the domain controller is not verified, so '
                            'anyone on the network path can read the bind credentials and change the replies')
        return warnings

    # --- identities ----------------------------------------------------------------------------------------
    def simple_bind_user(self):
        """AD accepts a UPN, a DN or DOMAIN\\user for simple binds; a bare name becomes user@domain."""
        user = _principals.bind_name(self.username, self.domain)
        if user is None:
            raise LdapError('username %r has no domain: use user@domain, DOMAIN\\user or set domain' % self.username)
        return user

    def ntlm_credentials(self):
        """(user, secret) as ldap3's NTLM bind wants them: DOMAIN\\user and a password or 'LM:NT' hashes."""
        name, dom = _principals.split_user(self.username, self.domain) if self.username else ('', self.domain or '')
        if not dom:
            raise LdapError('NTLM needs a domain: use DOMAIN\\user, user@domain or set domain')
        if not name:
            raise LdapError('NTLM needs a username')
        if self.nt_hash:
            nt = self.nt_hash.strip().lower()
            if ':' in nt:
                nt = nt.split(':')[-1]
            if len(nt) != 32 or any(c not in '0123456789abcdef' for c in nt):
                raise LdapError('nt_hash must be 32 hexadecimal digits')
            secret = '%s:%s' % (EMPTY_LM_HASH, nt)
        elif self.password:
            # ldap3 hashes passwords with hashlib MD4, which OpenSSL 3 builds lack: hand it the NT hash instead
            nt = nt_hash_of(self.password)
            secret = '%s:%s' % (EMPTY_LM_HASH, nt) if nt else self.password
        else:
            raise LdapError('NTLM needs a password or nt_hash')
        # ldap3 uses the part before the backslash as the NTLM domain; NetBIOS or DNS name both work with AD
        return '%s\\%s' % (dom.split('.')[0].upper() if '.' in dom else dom, name), secret


def nt_hash_of(password):
    """Hex NT hash (MD4 of the UTF-16LE password), or None when no MD4 implementation is available."""
    data = password.encode('utf-16-le')
    try:
        return hashlib.new('md4', data).hexdigest()
    except ValueError:
        pass
    for module_name in ('Cryptodome.Hash.MD4', 'Crypto.Hash.MD4'):
        try:
            module = __import__(module_name, fromlist=['new'])
            return module.new(data).hexdigest()
        except ImportError:
            continue
    return None


class AdConnection(LdapReader):
    """An authenticated LDAP connection to a domain controller plus the helpers the modules need."""

    def __init__(self, settings, connection_factory=None, server_factory=None, resolver=None):
        if not HAS_LDAP3:
            raise LdapError('the ldap3 Python library is required')
        self.settings = settings
        self._connection_factory = connection_factory or ldap3.Connection
        self._server_factory = server_factory or ldap3.Server
        self._resolver = resolver
        self.conn = None
        self.host = None
        self.root_dse = {}

    # --- connecting ----------------------------------------------------------------------------------------
    def _tls(self):
        s = self.settings
        if s.validate_certs:
            return VerifyingTls(validate=ssl.CERT_REQUIRED, ca_certs_file=s.ca_bundle)
        return ldap3.Tls(validate=ssl.CERT_NONE)

    def candidate_hosts(self):
        s = self.settings
        if s.domain_controller:
            return [s.domain_controller]
        if not s.domain:
            raise LdapError('set domain or domain_controller')
        try:
            found = _dns.find_domain_controllers(s.domain, resolver=self._resolver, timeout=s.timeout)
        except DnsError as exc:
            raise LdapError(str(exc))
        return [host for host, _port in found]

    def _server(self, host):
        s = self.settings
        tls = self._tls() if s.ldap_scheme in ('ldaps', 'starttls') else None
        return self._server_factory(host, port=s.port, use_ssl=(s.ldap_scheme == 'ldaps'), tls=tls,
                                    get_info=ldap3.NONE, connect_timeout=s.timeout)

    def _connection_kwargs(self, host):
        s = self.settings
        kwargs = dict(auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=False, receive_timeout=s.timeout,
                      read_only=True, auto_referrals=False)
        if s.auth == 'password':
            if not s.username or s.password is None:
                raise LdapError('auth=password needs username and password')
            kwargs.update(user=s.simple_bind_user(), password=s.password, authentication=ldap3.SIMPLE)
        elif s.auth == 'ntlm':
            user, secret = s.ntlm_credentials()
            kwargs.update(user=user, password=secret, authentication=ldap3.NTLM)
        else:
            # sasl_credentials are set once connected, when the DC's DNS name (for the SPN) is known
            from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_kerberos
            if not _ldap_kerberos.own_tickets(s):
                _ldap_kerberos.gssapi_credentials(s)  # fail early, before any network traffic
            kwargs.update(authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS)
        return kwargs

    def spn_host(self, conn, host):
        """DNS name for the ldap/<host> SPN. An address is resolved by reverse DNS, else by the rootDSE's
        dnsHostName (readable before binding)."""
        if not _dns.is_address(host):
            return host
        try:
            name = socket.gethostbyaddr(host)[0]
            if name and not _dns.is_address(name) and name != 'localhost':
                return name
        except (OSError, ValueError):
            pass
        try:
            conn.search(search_base='', search_filter='(objectClass=*)', search_scope=ldap3.BASE,
                        attributes=['dnsHostName'])
            for item in conn.response or []:
                values = (item.get('raw_attributes') or {}).get('dnsHostName') or []
                if values:
                    value = values[0]
                    return value.decode('utf-8') if isinstance(value, bytes) else value
        except Exception:
            pass
        return host

    def connect(self):
        for text in self.settings.check_transport():  # before any network traffic
            warn(text)
        errors = []
        for host in self.candidate_hosts():
            try:
                self._connect_host(host)
                self.host = host
                self._read_root_dse()
                return self
            except LdapError as exc:
                errors.append('%s: %s' % (host, exc))
                self.close()
        raise LdapError('could not connect to a domain controller: %s' % '; '.join(errors))

    def _connect_host(self, host):
        s = self.settings
        server = self._server(host)
        conn = self._connection_factory(server, **self._connection_kwargs(host))
        self.conn = conn
        try:
            if not conn.open() and conn.closed:
                raise LdapError('cannot connect to %s:%d' % (host, s.port))
            _no_delay(conn)
            if s.ldap_scheme == 'starttls':
                if not conn.start_tls():
                    raise LdapError('StartTLS failed: %s' % (conn.last_error or conn.result))
            if not s.domain_controller and s.ldap_scheme in ('ldaps', 'starttls') and s.validate_certs:
                try:
                    check_dc_certificate(_peer_certificate(conn), host, s.domain)  # before any credential is sent
                except LdapError:
                    self._drop()
                    raise
            ccache_dir = None
            if s.auth == 'kerberos':
                from ansible_collections.adcs.enrollment.plugins.module_utils import _ldap_kerberos
            if s.auth == 'kerberos' and _ldap_kerberos.own_tickets(s):
                spn_host = self.spn_host(conn, host)
                ccache_dir, creds = _ldap_kerberos.own_credentials(s, spn_host, host)
                conn.sasl_credentials = (spn_host, None, creds)
            elif s.auth == 'kerberos':
                conn.sasl_credentials = (self.spn_host(conn, host), None, _ldap_kerberos.gssapi_credentials(s))
            try:
                bound = conn.bind()
            finally:
                if ccache_dir:
                    shutil.rmtree(ccache_dir, ignore_errors=True)
            if not bound:
                raise LdapError(self._bind_failure_text(conn))
        except LdapError:
            raise
        except Exception as exc:
            text = self._exception_text(exc, host)
            if s.auth == 'ntlm' and 'terminated' in text:
                text += ('; the server may not support NTLM (Sicily) binds (Samba does not): use auth=password over '
                         'TLS or auth=kerberos')
            raise LdapError(text)

    def _bind_failure_text(self, conn):
        result = conn.result or {}
        desc = result.get('description') or conn.last_error or 'bind failed'
        message = result.get('message') or ''
        text = '%s bind as %s failed: %s' % (self.settings.auth, self.settings.username or '(default credentials)', desc)
        if message:
            text += ' (%s)' % message.strip().rstrip('\x00')
        if desc == 'strongerAuthRequired' or 'strong' in message.lower():
            text += '; the DC requires a signed or encrypted connection: use ldap_scheme=ldaps or starttls'
        return text

    def _exception_text(self, exc, host):
        text = ldap3_error_text(exc)
        if 'certificate verify failed' in text or 'CERTIFICATE_VERIFY_FAILED' in text:
            text = ('TLS certificate of %s could not be verified (%s); set ca_bundle to the CA that issued the DC '
                    'certificate, or validate_certs=false for tests only' % (host, text))
        elif ldap3_exceptions is not None and isinstance(exc, ldap3_exceptions.LDAPSocketOpenError):
            text = 'cannot connect to %s:%d: %s' % (host, self.settings.port, text)
        return text

    def _drop(self):
        """Close the connection to a refused host without a word to it (not even an unbind)."""
        closer = getattr(getattr(self.conn, 'socket', None), 'close', None)
        if closer is not None:
            try:
                closer()
            except OSError:
                pass
        self.conn = None

    def close(self):
        if self.conn is not None:
            with contextlib.suppress(Exception):   # best effort: the connection may already be gone
                self.conn.unbind()
        self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()
