"""Lab orchestration: bring the lab AD and the lab CA up (reusing a healthy lab), down, and describe them.

The connection details go to ``<state>/lab.json`` (keys documented in tests/lab/README.md).
"""

import json
import os
import subprocess
import sys
import time

from adcslab import seed
from adcslab.ad import LabError, SambaDC
from adcslab.pki import ensure_pki
from adcslab.procs import port_open, read_pid_file, stop_process_group

DEFAULT_STATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "state")
SEED_VERSION = "2"
HTTP_PORT = 80
HTTPS_PORT = 443
PID_NAMES = {"ca": "labca", "http": "http"}


class ManagedProcess:
    """A lab daemon: started in its own session, tracked by a pid file, stopped with its whole process group."""

    def __init__(self, name, argv, pid_file, out_file, ready, pythonpath):
        self.name, self.argv, self.pid_file, self.out_file = name, argv, pid_file, out_file
        self.ready, self.pythonpath = ready, pythonpath

    def pid(self):
        return read_pid_file(self.pid_file)

    def healthy(self):
        return self.pid() is not None and self.ready()

    def start(self, timeout=60):
        if self.healthy():
            return False
        self.stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = self.pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        out = open(self.out_file, "ab")
        proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True, env=env)
        with open(self.pid_file, "w") as handle:
            handle.write(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError("the lab %s exited with %s; see %s" % (self.name, proc.returncode, self.out_file))
            if self.ready():
                return True
            time.sleep(0.2)
        raise LabError("the lab %s did not come up in %ds; see %s" % (self.name, timeout, self.out_file))

    def stop(self):
        pid = self.pid()
        if pid is None:
            return False
        stop_process_group(pid, 15)
        return True


class Lab:
    def __init__(self, state_dir=None):
        self.state_dir = os.path.abspath(state_dir or os.environ.get("ADCS_LAB_STATE") or DEFAULT_STATE)
        self.log_dir = os.path.join(self.state_dir, "log")
        self.lab_json = os.path.join(self.state_dir, "lab.json")
        self.ca_endpoints = os.path.join(self.state_dir, "ca-endpoints.json")

    # -- the lab CA and its web publication point: Python processes of their own --------------------------
    def _process(self, name):
        lab_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if name == "ca":
            argv = [sys.executable, "-m", "adcslab.wcce.server", "--state-dir", self.state_dir,
                    "--address", seed.CA_ADDRESS]
            ready = lambda: os.path.exists(self.ca_endpoints) and port_open(seed.CA_ADDRESS, 135)  # noqa: E731
        else:
            argv = [sys.executable, "-m", "adcslab.http", "--state-dir", self.state_dir, "--address", seed.CA_ADDRESS,
                    "--port", str(HTTP_PORT), "--tls-port", str(HTTPS_PORT)]
            ready = lambda: port_open(seed.CA_ADDRESS, HTTP_PORT) and port_open(seed.CA_ADDRESS, HTTPS_PORT)  # noqa
        return ManagedProcess(name, argv, os.path.join(self.state_dir, "%s.pid" % PID_NAMES[name]),
                              os.path.join(self.log_dir, "%s.stdout" % PID_NAMES[name]), ready, lab_dir)

    def ca_pid(self):
        return self._process("ca").pid()

    def ca_available(self):
        here = os.path.dirname(os.path.abspath(__file__))
        return os.path.exists(os.path.join(here, "wcce", "server.py"))

    def ca_healthy(self):
        return self._process("ca").healthy()

    def start_ca(self, timeout=60):
        if self.ca_healthy():
            return False
        if os.path.exists(self.ca_endpoints):
            os.unlink(self.ca_endpoints)
        return self._process("ca").start(timeout)

    def stop_ca(self):
        return self._process("ca").stop()

    # -- whole lab -------------------------------------------------------------------------------------------
    def up(self, with_ca=True):
        self._check_ca_host()
        os.makedirs(self.log_dir, exist_ok=True)
        pki = ensure_pki(self.state_dir)
        dc = SambaDC(self.state_dir, pki)
        dc.provision()
        started = dc.start() if not dc.healthy() else False
        marker = os.path.join(self.state_dir, "seed-version")
        seeded = False
        if started or not os.path.exists(marker) or open(marker).read().strip() != SEED_VERSION:
            from adcslab.seeder import Seeder
            Seeder(dc, pki).run()
            with open(marker, "w") as handle:
                handle.write(SEED_VERSION)
            seeded = True
        ca_started = False
        if with_ca and self.ca_available():
            ca_started = self.start_ca()
            self._process("http").start()
        details = self.details(pki)
        tmp = self.lab_json + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(details, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.lab_json)
        return {"dc_started": started, "seeded": seeded, "ca_started": ca_started, "lab_json": self.lab_json}

    def _check_ca_host(self):
        """A state dir made for another lab CA host name (its TLS certificate, computer account, keytab, DNS record and
        CDP container carry the old name) is not reused: the lab must be made afresh."""
        if not os.path.exists(self.lab_json):
            return
        with open(self.lab_json) as handle:
            made_for = (json.load(handle).get("ca") or {}).get("hostname")
        if made_for and made_for.lower() != seed.CA_HOST.lower():
            raise LabError("the lab state in %s was made for the CA host %s, this checkout names it %s: stop the "
                           "lab (`make lab-down`), remove that directory and run `make lab-up`"
                           % (self.state_dir, made_for, seed.CA_HOST))

    def seed_templates(self):
        """Load this checkout's templates into the running lab DC (see Seeder.templates_only) and list them in
        lab.json. For worktrees that share one running lab."""
        self._check_ca_host()
        pki = ensure_pki(self.state_dir)
        dc = SambaDC(self.state_dir, pki)
        if not dc.healthy():
            raise LabError("the lab DC is not running: make lab-up first")
        from adcslab.seeder import Seeder
        published = Seeder(dc, pki).templates_only()
        details = self.details(pki)
        details["published_templates"] = published
        details["templates"] = sorted(set(details["templates"]) | set(published))
        tmp = self.lab_json + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(details, handle, indent=2, sort_keys=True)
        os.replace(tmp, self.lab_json)
        return {"published_templates": published}

    def down(self):
        stopped = {"ca": self.stop_ca(), "http": self._process("http").stop()}
        pki_dir = os.path.join(self.state_dir, "pki")
        dc = SambaDC(self.state_dir, _PkiPaths(pki_dir))
        stopped["dc"] = dc.stop()
        return stopped

    def details(self, pki):
        with open(os.path.join(self.state_dir, "accounts.json")) as handle:
            accounts = json.load(handle)
        endpoints = {}
        if os.path.exists(self.ca_endpoints):
            with open(self.ca_endpoints) as handle:
                endpoints = json.load(handle)
        by_name = {a["sam"].lower(): a for a in accounts}

        def account(name):
            a = by_name[name.lower()]
            out = {"username": a["sam"], "password": a["password"], "nt_hash": a["nt_hash"], "upn": a["upn"],
                   "sid": a["sid"], "dn": a["dn"], "group_sids": a["group_sids"]}
            for key in ("dns_host_name", "keytab", "mail"):
                if a.get(key):
                    out[key] = a[key]
            return out

        return {
            "state_dir": self.state_dir,
            "realm": seed.REALM, "domain": seed.DNS_DOMAIN, "netbios_domain": seed.NETBIOS_DOMAIN,
            "base_dn": seed.BASE_DN, "config_dn": seed.CONFIG_DN, "templates_dn": seed.TEMPLATES_DN,
            "enrollment_services_dn": seed.ENROLLMENT_SERVICES_DN,
            "dc": {"hostname": seed.DC_HOST, "address": seed.DC_ADDRESS, "ldap_port": 389, "ldaps_port": 636,
                   "kdc_port": 88, "dns_port": 53, "krb5_conf": os.path.join(self.state_dir, "krb5.conf"),
                   "tls_name": seed.DC_HOST},
            "ca": {"name": seed.CA_NAME, "hostname": seed.CA_HOST, "address": seed.CA_ADDRESS,
                   "rpc_port": endpoints.get("rpc_port", 135),
                   "object_exporter_port": endpoints.get("object_exporter_port"),
                   "icpr_port": endpoints.get("icpr_port"), "http_port": HTTP_PORT, "https_port": HTTPS_PORT,
                   "crl_url": "http://%s/CertEnroll/%s.crl" % (seed.CA_HOST, seed.CA_NAME),
                   "running": bool(endpoints) and self.ca_healthy(),
                   "log": os.path.join(self.state_dir, "labca.log"),
                   "cert": pki.ca_cert_path, "root_cert": pki.root_cert_path,
                   "computer_account": by_name[seed.CA_ACCOUNT.lower()]["sam"],
                   "keytab": by_name[seed.CA_ACCOUNT.lower()]["keytab"],
                   "service_principal": "HOST/%s" % seed.CA_HOST, "netbios_name": seed.CA_NETBIOS,
                   "service_principals": ["%s/%s" % (service, host) for service in ("HOST", "RPCSS")
                                          for host in (seed.CA_HOST, seed.CA_NETBIOS)],
                   "cdp_container": seed.CA_CDP_CONTAINER, "aia_file": seed.CA_AIA_FILE},
            "ca_bundle": pki.bundle_path,
            "templates": [t["cn"] for t in seed.TEMPLATES],
            "published_templates": list(seed.PUBLISHED_TEMPLATES),
            "accounts": {
                "admin": account("Administrator"), "enroller": account("enroller"), "denied": account("denied"),
                "groupmember": account("groupmember"), "computer": account("LABHOST01$"),
            },
            "groups": {"enrollers": {"name": seed.ENROLLERS_GROUP,
                                     "dn": "CN=%s,CN=Users,%s" % (seed.ENROLLERS_GROUP, seed.BASE_DN)}},
        }


class _PkiPaths:
    """Just the paths SambaDC needs to stop (no key loading, so `down` works on a half-made state)."""

    def __init__(self, directory):
        self.dc_tls_key_path = os.path.join(directory, "dc1-tls.key")
        self.dc_tls_cert_path = os.path.join(directory, "dc1-tls.pem")
        self.bundle_path = os.path.join(directory, "ca-bundle.pem")
