# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kerberos test material shared by the unit tests of _kdc, _ccache, _kerberos and the hardening tests: AS-REPs, TGTs,
ccache files, keytabs, KRB-ERROR exceptions and a one-shot fake KDC."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import socket
import struct
import threading

from impacket.krb5 import constants as KC
from impacket.krb5 import crypto as kcrypto
from impacket.krb5.asn1 import AS_REP, TGS_REP, EncASRepPart, EncTGSRepPart, KRB_ERROR, seq_set
from impacket.krb5.ccache import CCache
from impacket.krb5.types import KerberosTime, Principal
from pyasn1.codec.der import decoder, encoder
from pyasn1.type.univ import noValue

from ansible_collections.adcs.enrollment.plugins.module_utils import _kdc

REALM = 'LAB.ADCS.TEST'
NOW = datetime.datetime.now(datetime.timezone.utc)


# ---------------------------------------------------------------- errors
class KrbErr(Exception):
    def __init__(self, code):
        super(KrbErr, self).__init__('Kerberos SessionError: %d' % code)
        self.code = code

    def getErrorCode(self):
        return self.code


# ---------------------------------------------------------------- keytab
def make_keytab(entries):
    """bytes of a v0x502 keytab: entries = [(principal, realm, kvno, etype, key)]."""
    def counted(b):
        return struct.pack('!H', len(b)) + b
    out = b'\x05\x02'
    for principal, realm, kvno, etype, key in entries:
        comps = principal.split('/')
        body = struct.pack('!H', len(comps)) + counted(realm.encode()) + b''.join(counted(c.encode()) for c in comps)
        body += struct.pack('!IIB', 1, 0, kvno % 256) + struct.pack('!H', etype) + counted(key)
        body += struct.pack('!I', kvno)
        out += struct.pack('!i', len(body)) + body
    return out


# ---------------------------------------------------------------- ccache
def as_rep(client, realm, client_key, session_key, start, end, server='krbtgt/%s'):
    part = EncASRepPart()
    part['key'] = noValue
    part['key']['keytype'] = session_key.enctype
    part['key']['keyvalue'] = session_key.contents
    part['last-req'] = noValue
    part['last-req'][0] = noValue
    part['last-req'][0]['lr-type'] = 0
    part['last-req'][0]['lr-value'] = KerberosTime.to_asn1(start)
    part['nonce'] = 1
    part['flags'] = KC.encodeFlags([KC.TicketFlags.initial.value])
    part['authtime'] = KerberosTime.to_asn1(start)
    part['starttime'] = KerberosTime.to_asn1(start)
    part['endtime'] = KerberosTime.to_asn1(end)
    part['srealm'] = realm
    sname = server % realm if '%s' in server else server
    seq_set(part, 'sname', Principal(sname, type=KC.PrincipalNameType.NT_SRV_INST.value).components_to_asn1)
    enc = kcrypto._enctype_table[client_key.enctype].encrypt(client_key, 3, encoder.encode(part), None)
    rep = AS_REP()
    rep['pvno'] = 5
    rep['msg-type'] = 11
    rep['crealm'] = realm
    seq_set(rep, 'cname', Principal(client, type=KC.PrincipalNameType.NT_PRINCIPAL.value).components_to_asn1)
    rep['ticket'] = noValue
    rep['ticket']['tkt-vno'] = 5
    rep['ticket']['realm'] = realm
    seq_set(rep['ticket'], 'sname', Principal(sname, type=KC.PrincipalNameType.NT_SRV_INST.value).components_to_asn1)
    rep['ticket']['enc-part'] = noValue
    rep['ticket']['enc-part']['etype'] = 18
    rep['ticket']['enc-part']['cipher'] = b'opaque ticket'
    rep['enc-part'] = noValue
    rep['enc-part']['etype'] = client_key.enctype
    rep['enc-part']['cipher'] = enc
    return encoder.encode(rep)


def write_test_ccache(path, client='enroller', start=None, end=None):
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    start = start or NOW - datetime.timedelta(minutes=5)
    end = end or NOW + datetime.timedelta(hours=8)
    cc = CCache()
    cc.fromTGT(as_rep(client, REALM, client_key, session, start, end), client_key, session)
    cc.saveFile(str(path))
    return session


# ---------------------------------------------------------------- TGS exchange
def make_tgt():
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = as_rep('enroller', REALM, client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    return {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session}


class FakeKdc(object):
    """One-shot TCP KDC answering with a KRB-ERROR or a TGS-REP built from the request."""

    def __init__(self, tgt, error=None):
        self.tgt, self.error = tgt, error
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve)
        self.thread.daemon = True
        self.thread.start()

    def serve(self):
        conn = self.sock.accept()[0]
        length = struct.unpack('!I', conn.recv(4))[0]
        data = b''
        while len(data) < length:
            data += conn.recv(length - len(data))
        if self.error:
            err = KRB_ERROR()
            err['pvno'] = 5
            err['msg-type'] = 30
            err['stime'] = KerberosTime.to_asn1(NOW)
            err['susec'] = 0
            err['error-code'] = self.error
            err['realm'] = REALM
            seq_set(err, 'sname', Principal('krbtgt/%s' % REALM, type=2).components_to_asn1)
            reply = encoder.encode(err)
        else:
            svc_key = kcrypto.Key(18, os.urandom(32))
            part = EncTGSRepPart()
            part['key'] = noValue
            part['key']['keytype'] = 18
            part['key']['keyvalue'] = svc_key.contents
            part['last-req'] = noValue
            part['last-req'][0] = noValue
            part['last-req'][0]['lr-type'] = 0
            part['last-req'][0]['lr-value'] = KerberosTime.to_asn1(NOW)
            part['nonce'] = 1
            part['flags'] = KC.encodeFlags([])
            part['authtime'] = KerberosTime.to_asn1(NOW)
            part['endtime'] = KerberosTime.to_asn1(NOW + datetime.timedelta(hours=1))
            part['srealm'] = REALM
            seq_set(part, 'sname', Principal('HOST/ca1.lab.adcs.test', type=2).components_to_asn1)
            enc = self.tgt['cipher'].encrypt(self.tgt['sessionKey'], 8, encoder.encode(part), None)
            rep = TGS_REP()
            rep['pvno'] = 5
            rep['msg-type'] = 13
            rep['crealm'] = REALM
            seq_set(rep, 'cname', Principal('enroller', type=1).components_to_asn1)
            rep['ticket'] = noValue
            rep['ticket']['tkt-vno'] = 5
            rep['ticket']['realm'] = REALM
            seq_set(rep['ticket'], 'sname', Principal('HOST/ca1.lab.adcs.test', type=2).components_to_asn1)
            rep['ticket']['enc-part'] = noValue
            rep['ticket']['enc-part']['etype'] = 18
            rep['ticket']['enc-part']['cipher'] = b'x'
            rep['enc-part'] = noValue
            rep['enc-part']['etype'] = 18
            rep['enc-part']['cipher'] = enc
            reply = encoder.encode(rep)
            self.service_key = svc_key
        conn.sendall(struct.pack('!I', len(reply)) + reply)
        conn.close()
        self.sock.close()


def as_rep_without_starttime(client_key, session, start, end):
    """An AS-REP as Heimdal sends it: EncASRepPart without the optional starttime."""
    der = as_rep('enroller', REALM, client_key, session, start, end)
    rep = decoder.decode(der, asn1Spec=AS_REP())[0]
    plain = kcrypto._enctype_table[18].decrypt(client_key, 3, rep['enc-part']['cipher'].asOctets())
    part = decoder.decode(plain, asn1Spec=EncASRepPart())[0]
    fresh = EncASRepPart()
    for name in ('key', 'last-req', 'nonce', 'flags', 'authtime', 'endtime', 'srealm', 'sname'):
        fresh[name] = part[name]
    rep['enc-part']['cipher'] = kcrypto._enctype_table[18].encrypt(client_key, 3, encoder.encode(fresh), None)
    return encoder.encode(rep)


def make_credentials():
    """KerberosCredentials with a TGT of enroller@LAB.ADCS.TEST (session key AES256), valid 8 hours."""
    client_key = kcrypto.Key(18, os.urandom(32))
    session = kcrypto.Key(18, os.urandom(32))
    rep = as_rep('enroller', REALM, client_key, session, NOW, NOW + datetime.timedelta(hours=8))
    tgt = {'KDC_REP': rep, 'cipher': kcrypto._enctype_table[18](), 'sessionKey': session,
           'replyKey': (client_key, 3)}
    return _kdc.KerberosCredentials('enroller', REALM, tgt, 'password')
