"""The lab Active Directory: a Samba AD DC provisioned into the lab state directory, on its own loopback address.

``SambaDC`` provisions (once), writes a minimal smb.conf (only ldap, cldap, kdc and dns; TLS with the lab PKI),
starts ``samba -i -M single`` in its own process group, stops it by pid, and seeds what AD CS needs over LDAPS.
"""

import os
import ssl
import subprocess
import time

from adcslab import seed
from adcslab.procs import read_pid_file, stop_process_group, wait_for_port

SAMBA = "samba"
SAMBA_TOOL = "samba-tool"


class LabError(Exception):
    pass


def _ldap3():
    import ldap3  # imported late: the lab CLI's "down" must work without the venv
    return ldap3


class SambaDC:
    def __init__(self, state_dir, pki):
        self.state_dir = os.path.abspath(state_dir)
        self.dir = os.path.join(self.state_dir, "samba")
        self.pki = pki
        self.smb_conf = os.path.join(self.dir, "etc", "smb.conf")
        self.pid_dir = os.path.join(self.dir, "run")
        self.log_dir = os.path.join(self.state_dir, "log")
        self.pid_file = os.path.join(self.pid_dir, "samba.pid")
        self.address = seed.DC_ADDRESS

    # -- provisioning ---------------------------------------------------------------------------------------
    @property
    def provisioned(self):
        return os.path.exists(os.path.join(self.dir, "private", "sam.ldb"))

    def provision(self):
        if self.provisioned:
            self.write_config()
            return False
        os.makedirs(self.dir, exist_ok=True)
        cmd = [SAMBA_TOOL, "domain", "provision", "--realm=" + seed.REALM, "--domain=" + seed.NETBIOS_DOMAIN,
               "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", "--adminpass=" + seed.ADMIN_PASSWORD,
               "--targetdir=" + self.dir, "--host-name=dc1", "--host-ip=" + self.address, "--use-rfc2307",
               "--option=interfaces=%s/8" % self.address, "--option=bind interfaces only=yes"]
        with open(os.path.join(self.log_dir, "provision.log"), "wb") as log:
            result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise LabError("samba-tool domain provision failed; see %s/provision.log" % self.log_dir)
        self.write_config()
        return True

    def write_config(self):
        os.makedirs(self.pid_dir, exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        d = self.dir
        conf = "\n".join([
            "# Written by adcslab: the lab AD DC. Loopback only, one process, only the services AD CS clients use.",
            "[global]",
            "\tnetbios name = DC1",
            "\trealm = " + seed.REALM,
            "\tworkgroup = " + seed.NETBIOS_DOMAIN,
            "\tserver role = active directory domain controller",
            "\tinterfaces = %s/8" % self.address,
            "\tbind interfaces only = yes",
            "\tserver services = ldap cldap kdc dns",
            "\tprivate dir = %s/private" % d,
            "\tlock directory = %s" % d,
            "\tstate directory = %s/state" % d,
            "\tcache directory = %s/cache" % d,
            "\tbinddns dir = %s/bind-dns" % d,
            "\tpid directory = " + self.pid_dir,
            "\tlog file = %s/samba.log" % self.log_dir,
            "\tlogging = file",
            "\tmax log size = 10000",
            "\tldap server require strong auth = allow_sasl_over_tls",   # as a Windows DC requiring LDAP signing: TLS, or a signed SASL bind
            "\ttls enabled = yes",
            "\ttls keyfile = " + self.pki.dc_tls_key_path,
            "\ttls certfile = " + self.pki.dc_tls_cert_path,
            "\ttls cafile = " + self.pki.bundle_path,
            "\tdns forwarder = 127.0.0.1",
            "\tidmap_ldb:use rfc2307 = yes",
            "",
        ])
        os.makedirs(os.path.dirname(self.smb_conf), exist_ok=True)
        with open(self.smb_conf, "w") as handle:
            handle.write(conf)
        krb5 = "\n".join([
            "[libdefaults]", "\tdefault_realm = " + seed.REALM, "\tdns_lookup_realm = false",
            "\tdns_lookup_kdc = false", "\trdns = false", "",
            "[realms]", "\t%s = {" % seed.REALM, "\t\tkdc = %s" % self.address,
            "\t\tadmin_server = %s" % self.address, "\t}", "",
            "[domain_realm]", "\t.%s = %s" % (seed.DNS_DOMAIN, seed.REALM), "\t%s = %s" % (seed.DNS_DOMAIN, seed.REALM),
            ""])
        with open(os.path.join(self.state_dir, "krb5.conf"), "w") as handle:
            handle.write(krb5)

    # -- process ----------------------------------------------------------------------------------------------
    def pid(self):
        return read_pid_file(self.pid_file)

    def healthy(self):
        if self.pid() is None:
            return False
        try:
            conn = self.connect()
            conn.unbind()
            return True
        except Exception:  # any failure means "not usable"
            return False

    def start(self, timeout=60):
        if self.pid() is not None:
            return False
        for name in os.listdir(self.pid_dir):
            os.unlink(os.path.join(self.pid_dir, name))
        out = open(os.path.join(self.log_dir, "samba.stdout"), "ab")
        subprocess.Popen([SAMBA, "-i", "-M", "single", "-s", self.smb_conf], stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        for port in (389, 636, 88, 53):
            wait_for_port(self.address, port, deadline, what="samba")
        # LDAP answers a little after the port opens.
        last = None
        while time.monotonic() < deadline:
            try:
                self.connect().unbind()
                break
            except Exception as exc:  # keep trying until the deadline
                last = exc
                time.sleep(0.3)
        else:
            raise LabError("samba started but LDAPS does not answer: %s (see %s/samba.log)" % (last, self.log_dir))
        # Register the DC's service principal names, else Kerberos service tickets fail (server not found).
        subprocess.run(["samba_spnupdate", "-s", self.smb_conf], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        return True

    def stop(self, timeout=20):
        pid = self.pid()
        if pid is None:
            return False
        stop_process_group(pid, timeout)
        return True

    # -- LDAP -------------------------------------------------------------------------------------------------
    def connect(self, user="Administrator", password=seed.ADMIN_PASSWORD):
        ldap3 = _ldap3()
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.pki.bundle_path,
                        valid_names=[seed.DC_HOST])
        server = ldap3.Server(self.address, port=636, use_ssl=True, tls=tls, connect_timeout=5)
        return ldap3.Connection(server, user="%s@%s" % (user, seed.DNS_DOMAIN), password=password,
                                auto_bind=True, raise_exceptions=True, receive_timeout=30)
