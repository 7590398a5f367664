"""Writes the seed (``seed.py``) into the lab AD over LDAPS, idempotently (upsert: add, or replace attributes).

Creates the test accounts and group, the certificate templates with their security descriptors and OID objects,
the enrollment service of the lab CA, the CA certificates in Certification Authorities / AIA / NTAuthCertificates,
a CDP container for the CA host, and the DNS record of the CA host. Then writes ``accounts.json``.
"""

import json
import os
import struct
import subprocess
import uuid

from cryptography.hazmat.primitives import serialization
from impacket import ntlm
from impacket.ldap import ldaptypes

from adcslab import seed

SD_FLAGS_OID = "1.2.840.113556.1.4.801"

ADS_RIGHT_DS_CONTROL_ACCESS = 0x100
GENERIC_ALL_DS = 0x000F01FF
READ_MASK = 0x00020094
ACE_OBJECT_TYPE_PRESENT = 0x1
SE_DACL_PRESENT = 0x0004
SE_SELF_RELATIVE = 0x8000


def _sd_control(flags=0x04):
    # LDAP_SERVER_SD_FLAGS_OID value: SEQUENCE { INTEGER flags } (BER), flags 0x04 = DACL only.
    value = bytes([0x30, 0x03, 0x02, 0x01, flags])
    return [(SD_FLAGS_OID, True, value)]


def _sid(text):
    sid = ldaptypes.LDAP_SID()
    sid.fromCanonical(text)
    return sid


def _ace(kind, right, sid):
    ace = ldaptypes.ACE()
    ace["AceFlags"] = 0
    if right in ("enroll", "autoenroll"):
        body = (ldaptypes.ACCESS_ALLOWED_OBJECT_ACE() if kind == "allow" else ldaptypes.ACCESS_DENIED_OBJECT_ACE())
        ace["AceType"] = body.ACE_TYPE
        body["Mask"] = ldaptypes.ACCESS_MASK()
        body["Mask"]["Mask"] = ADS_RIGHT_DS_CONTROL_ACCESS
        body["Flags"] = ACE_OBJECT_TYPE_PRESENT
        guid = seed.ENROLL_GUID if right == "enroll" else seed.AUTOENROLL_GUID
        body["ObjectType"] = uuid.UUID(guid).bytes_le
        body["InheritedObjectType"] = b""
        body["Sid"] = _sid(sid)
    else:
        body = ldaptypes.ACCESS_ALLOWED_ACE() if kind == "allow" else ldaptypes.ACCESS_DENIED_ACE()
        ace["AceType"] = body.ACE_TYPE
        body["Mask"] = ldaptypes.ACCESS_MASK()
        body["Mask"]["Mask"] = GENERIC_ALL_DS if right == "full" else READ_MASK
        body["Sid"] = _sid(sid)
    ace["Ace"] = body
    return ace


def security_descriptor(acl, resolve, owner):
    """Self-relative SD: owner/group = Enterprise Admins, DACL from (kind, right, principal) triples, deny first."""
    sd = ldaptypes.SR_SECURITY_DESCRIPTOR()
    sd["Revision"] = b"\x01"
    sd["Sbz1"] = b"\x00"
    sd["Control"] = SE_DACL_PRESENT | SE_SELF_RELATIVE
    sd["OwnerSid"] = _sid(owner)
    sd["GroupSid"] = _sid(owner)
    sd["Sacl"] = b""
    dacl = ldaptypes.ACL()
    dacl["AclRevision"] = 4
    dacl["Sbz1"] = 0
    dacl["Sbz2"] = 0
    ordered = [entry for entry in acl if entry[0] == "deny"] + [entry for entry in acl if entry[0] == "allow"]
    dacl.aces = [_ace(kind, right, resolve(principal)) for kind, right, principal in ordered]
    sd["Dacl"] = dacl
    return sd.getData()


def dns_a_record(address, serial=1, ttl=900):
    """MS-DNSP 2.3.2.2 DNS_RPC_RECORD as stored in dnsRecord, for an A record."""
    data = bytes(int(part) for part in address.split("."))
    return (struct.pack("<HHBBHI", len(data), 1, 5, 240, 0, serial) + struct.pack(">I", ttl)
            + struct.pack("<II", 0, 0) + data)


class Seeder:
    def __init__(self, dc, pki):
        self.dc = dc
        self.pki = pki
        self.conn = None
        self.domain_sid = None
        self.sids = {}

    # -- helpers -------------------------------------------------------------------------------------------------
    def _exists(self, dn):
        from ldap3 import BASE
        from ldap3.core.exceptions import LDAPNoSuchObjectResult
        try:
            return self.conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["objectClass"])
        except LDAPNoSuchObjectResult:
            return False

    def _upsert(self, dn, attrs, controls=None):
        from ldap3 import MODIFY_REPLACE
        if not self._exists(dn):
            add_attrs = {k: v for k, v in attrs.items() if v != []}
            self.conn.add(dn, attributes=add_attrs, controls=controls)
            return "added"
        changes = {}
        for name, value in attrs.items():
            if name in ("objectClass", "cn", "unicodePwd", "sAMAccountName"):
                continue
            values = value if isinstance(value, list) else [value]
            changes[name] = [(MODIFY_REPLACE, values)]
        if changes:
            self.conn.modify(dn, changes, controls=controls)
        return "updated"

    def _read_sid(self, dn):
        from ldap3 import BASE
        self.conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["objectSid"])
        return str(self.conn.entries[0]["objectSid"].value)

    def _token_groups(self, dn):
        from ldap3 import BASE
        self.conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["tokenGroups"])
        values = self.conn.entries[0]["tokenGroups"].raw_values if self.conn.entries else []
        return sorted(ldaptypes.LDAP_SID(data=value).formatCanonical() for value in values)

    def resolve(self, principal):
        kind, _, value = principal.partition(":")
        if kind == "rid":
            return "%s-%s" % (self.domain_sid, value)
        if kind == "sid":
            return value
        return self.sids[value.lower()]

    # -- seeding ---------------------------------------------------------------------------------------------
    def run(self):
        self.conn = self.dc.connect()
        try:
            self.domain_sid = self._read_sid(seed.BASE_DN)
            self.seed_accounts()
            self.seed_templates()
            self.seed_ca_objects()
            self.seed_ca_security()
            self.seed_dns()
            accounts = self.account_records()
        finally:
            self.conn.unbind()
        self.export_keytab()
        path = os.path.join(self.dc.state_dir, "accounts.json")
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(accounts, handle, indent=2)
        os.replace(tmp, path)
        return accounts

    def templates_only(self):
        """Add or update the templates of this checkout's seed on a running DC, and add them to what the lab CA
        publishes (never remove a published name: other checkouts may share the DC). Accounts, passwords and
        keytabs are left alone, so Kerberos tickets held by running tests stay valid. Returns the published list."""
        self.conn = self.dc.connect()
        try:
            self.domain_sid = self._read_sid(seed.BASE_DN)
            for account in seed.ACCOUNTS:
                dn = self.user_dn(account)
                if self._exists(dn):
                    self.sids[account["sam"].lower()] = self._read_sid(dn)
            group_dn = "CN=%s,CN=Users,%s" % (seed.ENROLLERS_GROUP, seed.BASE_DN)
            self.sids[seed.ENROLLERS_GROUP.lower()] = self._read_sid(group_dn)
            self.sids["administrator"] = self._read_sid("CN=Administrator,CN=Users," + seed.BASE_DN)
            self.seed_templates()
            self.seed_ca_security()
            return self._publish_more(seed.PUBLISHED_TEMPLATES)
        finally:
            self.conn.unbind()

    def _publish_more(self, names):
        from ldap3 import BASE, MODIFY_REPLACE
        dn = "CN=%s,%s" % (seed.CA_NAME, seed.ENROLLMENT_SERVICES_DN)
        self.conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["certificateTemplates"])
        published = [str(v) for v in self.conn.entries[0]["certificateTemplates"].values]
        published += [name for name in names if name not in published]
        self.conn.modify(dn, {"certificateTemplates": [(MODIFY_REPLACE, published)]})
        return published

    def user_dn(self, account):
        cn = account["sam"].rstrip("$")
        container = "CN=Computers" if account["kind"] == "computer" else "CN=Users"
        return "CN=%s,%s,%s" % (cn, container, seed.BASE_DN)

    def seed_accounts(self):
        for account in seed.ACCOUNTS:
            dn = self.user_dn(account)
            password = ('"%s"' % account["password"]).encode("utf-16-le")
            if account["kind"] == "computer":
                host = account["host"]
                fqdn = "%s.%s" % (host, seed.DNS_DOMAIN)
                attrs = {"objectClass": ["top", "person", "organizationalPerson", "user", "computer"],
                         "sAMAccountName": account["sam"], "userAccountControl": "4096", "dNSHostName": fqdn,
                         "servicePrincipalName": [spn for service in account.get("spn_services", ["HOST"])
                                                  for spn in ("%s/%s" % (service, fqdn),
                                                              "%s/%s" % (service, seed.netbios_name(host)))],
                         "description": account["description"]}
            else:
                attrs = {"objectClass": ["top", "person", "organizationalPerson", "user"],
                         "sAMAccountName": account["sam"], "userAccountControl": "512",
                         "userPrincipalName": "%s@%s" % (account["sam"], seed.DNS_DOMAIN),
                         "mail": account["mail"], "givenName": account["given_name"], "sn": account["surname"],
                         "displayName": "%s %s" % (account["given_name"], account["surname"]),
                         "description": account["description"]}
            if not self._exists(dn):
                attrs["unicodePwd"] = password
                self.conn.add(dn, attributes=attrs)
            else:
                self._upsert(dn, attrs)
                from ldap3 import MODIFY_REPLACE
                self.conn.modify(dn, {"unicodePwd": [(MODIFY_REPLACE, [password])]})
            self.sids[account["sam"].lower()] = self._read_sid(dn)
        group_dn = "CN=%s,CN=Users,%s" % (seed.ENROLLERS_GROUP, seed.BASE_DN)
        members = [self.user_dn(a) for a in seed.ACCOUNTS if seed.ENROLLERS_GROUP in a["groups"]]
        self._upsert(group_dn, {"objectClass": ["top", "group"], "sAMAccountName": seed.ENROLLERS_GROUP,
                                "groupType": str(seed.int32(0x80000002)),
                                "description": "Granted Enroll on the web server templates", "member": members})
        self.sids[seed.ENROLLERS_GROUP.lower()] = self._read_sid(group_dn)
        self._add_to_builtin_groups()
        self.sids["administrator"] = self._read_sid("CN=Administrator,CN=Users," + seed.BASE_DN)

    def _add_to_builtin_groups(self):
        """Memberships in groups the provisioning created (e.g. Cert Publishers): add, never replace."""
        from ldap3 import BASE, MODIFY_ADD
        for account in seed.ACCOUNTS:
            for group in account["groups"]:
                if group == seed.ENROLLERS_GROUP:
                    continue
                group_dn = "CN=%s,CN=Users,%s" % (group, seed.BASE_DN)
                self.conn.search(group_dn, "(objectClass=group)", search_scope=BASE, attributes=["member"])
                members = {str(m).lower() for m in self.conn.entries[0]["member"].values}
                if self.user_dn(account).lower() not in members:
                    self.conn.modify(group_dn, {"member": [(MODIFY_ADD, [self.user_dn(account)])]})

    def seed_templates(self):
        owner = self.resolve("rid:%d" % seed.RID_ENTERPRISE_ADMINS)
        for template in seed.TEMPLATES:
            dn = "CN=%s,%s" % (template["cn"], seed.TEMPLATES_DN)
            attrs = seed.template_attributes(template)
            attrs["nTSecurityDescriptor"] = security_descriptor(template["acl"], self.resolve, owner)
            self._upsert(dn, attrs, controls=_sd_control())
            oid = seed.oid_object(template)
            self._upsert("CN=%s,%s" % (oid["cn"], seed.OID_DN), oid["attrs"])

    def seed_ca_objects(self):
        der = lambda cert: cert.public_bytes(serialization.Encoding.DER)  # noqa: E731
        ca_der, root_der = der(self.pki.ca_cert), der(self.pki.root_cert)
        ca_dn_text = "CN=%s, DC=lab, DC=adcs, DC=test" % seed.CA_NAME
        self._upsert("CN=%s,%s" % (seed.CA_NAME, seed.ENROLLMENT_SERVICES_DN), {
            "objectClass": ["top", "pKIEnrollmentService"], "displayName": seed.CA_NAME,
            "cACertificate": ca_der, "cACertificateDN": ca_dn_text, "dNSHostName": seed.CA_HOST,
            "certificateTemplates": list(seed.PUBLISHED_TEMPLATES), "flags": "10"})
        for name, cert in (("LAB Root CA", root_der), (seed.CA_NAME, ca_der)):
            holder = {"objectClass": ["top", "certificationAuthority"], "cACertificate": cert,
                      "authorityRevocationList": b"\x00", "certificateRevocationList": b"\x00"}
            self._upsert("CN=%s,%s" % (name, seed.AIA_DN), holder)
        self._upsert("CN=LAB Root CA,%s" % seed.CERTIFICATION_AUTHORITIES_DN, {
            "objectClass": ["top", "certificationAuthority"], "cACertificate": root_der,
            "authorityRevocationList": b"\x00", "certificateRevocationList": b"\x00"})
        self._upsert(seed.NTAUTH_DN, {
            "objectClass": ["top", "certificationAuthority"], "cACertificate": ca_der,
            "authorityRevocationList": b"\x00", "certificateRevocationList": b"\x00"})
        self._upsert(seed.CA_CDP_CONTAINER, {"objectClass": ["top", "container"]})

    def seed_ca_security(self, acl=None):
        """The enrollment service object's nTSecurityDescriptor: the CA security (seed.CA_SECURITY, or ``acl``)
        with Request Certificates as the Enroll extended right, as a Windows CA keeps it in sync with its own."""
        from ldap3 import MODIFY_REPLACE
        owner = self.resolve("rid:%d" % seed.RID_ENTERPRISE_ADMINS)
        sd = security_descriptor(seed.CA_SECURITY if acl is None else acl, self.resolve, owner)
        self.conn.modify("CN=%s,%s" % (seed.CA_NAME, seed.ENROLLMENT_SERVICES_DN),
                         {"nTSecurityDescriptor": [(MODIFY_REPLACE, [sd])]}, controls=_sd_control())

    def seed_dns(self):
        zone = "DC=%s,CN=MicrosoftDNS,DC=DomainDnsZones,%s" % (seed.DNS_DOMAIN, seed.BASE_DN)
        self._upsert("%s,%s" % (seed.CA_DNS_RECORD, zone), {"objectClass": ["top", "dnsNode"],
                                                            "dnsRecord": [dns_a_record(seed.CA_ADDRESS)]})

    def account_records(self):
        records = []
        admin_dn = "CN=Administrator,CN=Users," + seed.BASE_DN
        everyone = [{"sam": "Administrator", "password": seed.ADMIN_PASSWORD, "kind": "user",
                     "dn": admin_dn, "mail": None}]
        everyone += [dict(a, dn=self.user_dn(a)) for a in seed.ACCOUNTS]
        for account in everyone:
            record = {
                "sam": account["sam"], "domain": seed.NETBIOS_DOMAIN, "dns_domain": seed.DNS_DOMAIN,
                "upn": "%s@%s" % (account["sam"], seed.DNS_DOMAIN), "password": account["password"],
                "nt_hash": ntlm.compute_nthash(account["password"]).hex(), "kind": account["kind"],
                "dn": account["dn"], "sid": self._read_sid(account["dn"]),
                "group_sids": self._token_groups(account["dn"]), "mail": account.get("mail"),
            }
            if account["kind"] == "computer":
                record["dns_host_name"] = "%s.%s" % (account["host"], seed.DNS_DOMAIN)
                record["keytab"] = self.keytab_path(account)
            records.append(record)
        return records

    def keytab_path(self, account):
        return os.path.join(self.dc.state_dir, "%s.keytab" % account["host"])

    def export_keytab(self):
        """One keytab per computer account (the machine's /etc/krb5.keytab, as realmd/adcli would write it)."""
        for computer in [a for a in seed.ACCOUNTS if a["kind"] == "computer"]:
            path = self.keytab_path(computer)
            if os.path.exists(path):
                os.unlink(path)
            result = subprocess.run(["samba-tool", "domain", "exportkeytab", path, "--principal=" + computer["sam"],
                                     "-s", self.dc.smb_conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    check=False)
            if result.returncode != 0:
                raise RuntimeError("exporting the keytab of %s failed: %s"
                                   % (computer["sam"], result.stdout.decode(errors="replace")))
            os.chmod(path, 0o600)
