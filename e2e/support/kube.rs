//! A real Kubernetes API server for tests: upstream kube-apiserver (built from
//! Go modules by `e2e/kube/ensure.sh`) on its own etcd (Debian's etcd-server),
//! both on free loopback ports, with certificates made here.
//!
//! No controller-manager, scheduler or kubelet: objects are stored, validated,
//! defaulted, admitted (webhooks included) and watched, but nothing reconciles
//! them (no pods run, no service-account tokens appear in Secrets, namespaces
//! are not finalized on delete). The ServiceAccount admission plugin is off, so
//! pods can be created without the `default` service account existing.
//!
//! The API server alone can be stopped and started again, on the same address
//! and etcd ([`KubeApi::stop_apiserver`], [`KubeApi::start_apiserver`]).
//!
//! Both processes run under `setpriv --pdeathsig KILL`: killed with the test
//! process, and also when the *thread* that started them exits, so start a
//! [`KubeApi`] in the test that uses it (not in a shared static).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use serde_json::Value;
use tempfile::TempDir;

use super::{block_on, free_port, poll, try_http_get, workdir, Proc};

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
/// Generous: ready in about 2.5s on an idle 2-core machine, but startup runs
/// dozens of post-start hooks (RBAC bootstrap, priority classes, ...) that
/// slow down a lot when the machine is busy.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(120);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The service-account token issuer the API server is started with.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A running kube-apiserver + etcd pair, killed on drop (API server first).
pub struct KubeApi {
    apiserver: Proc,
    etcd: Proc,
    /// How the API server was started, to start it again the same way.
    apiserver_bin: PathBuf,
    apiserver_args: Vec<String>,
    /// `https://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// A kubeconfig (context `rudder-e2e`) for `admin` in `system:masters`,
    /// with file references to the certificates below.
    pub kubeconfig: PathBuf,
    /// The CA that signed the serving and client certificates.
    pub ca_pem: String,
    pub ca_cert: PathBuf,
    /// The admin client certificate and key (CN=admin, O=system:masters).
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The service-account token signing key (ECDSA P-256, PKCS#8 PEM) and
    /// its public key (PKIX PEM): tokens the API server issues verify with it.
    pub sa_signing_key: PathBuf,
    pub sa_public_key: PathBuf,
    /// How long the API server took from spawn to `/readyz` = 200 (its
    /// last start).
    pub startup: Duration,
    client: reqwest::Client,
    // Last: removed after both processes are dead.
    _certs: TempDir,
}

/// Paths of the two binaries: `$KUBE_APISERVER_BIN` / `$ETCD_BIN` when set
/// (e2e/test.sh sets them), else what `e2e/kube/ensure.sh --no-build` finds.
/// Panics when either is missing: Kubernetes tests never skip silently.
pub fn kube_bins() -> (PathBuf, PathBuf) {
    let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
    if let (Some(api), Some(etcd)) = (from_env("KUBE_APISERVER_BIN"), from_env("ETCD_BIN")) {
        for bin in [&api, &etcd] {
            assert!(
                bin.is_file(),
                "{} is not a file (from KUBE_APISERVER_BIN / ETCD_BIN); run e2e/kube/ensure.sh",
                bin.display()
            );
        }
        return (api, etcd);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/kube/ensure.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--no-build")
        .output()
        .unwrap_or_else(|e| panic!("running {} --no-build: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kube-apiserver or etcd missing ({}):\n{stderr}\n\
         build/install them with e2e/kube/ensure.sh (e2e/test.sh does)",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let find = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no {name}= line in ensure.sh output:\n{stdout}{stderr}"))
    };
    (find("KUBE_APISERVER_BIN"), find("ETCD_BIN"))
}

/// The files `KubeApi` hands to the processes and to clients.
struct Certs {
    ca_pem: String,
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    admin_identity_pem: String,
    sa_signing_key: PathBuf,
    sa_public_key: PathBuf,
}

fn key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generating an ECDSA key")
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn write(dir: &Path, file: &str, contents: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// A CA, a serving certificate for 127.0.0.1/localhost, the admin client
/// certificate and a service-account signing key, all written to `dir`.
fn make_certs(dir: &Path) -> Certs {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("rudder-e2e-kube-ca", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, key()).expect("self-signing the test CA");

    let leaf = |dn: DistinguishedName, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let key = key();
        let cert = params
            .signed_by(&key, &ca)
            .expect("signing a test certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (serving_cert, serving_key) = leaf(
        name("kube-apiserver", None),
        vec![
            SanType::IpAddress(Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into().unwrap()),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (admin_cert, admin_key) = leaf(
        name("admin", Some("system:masters")),
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let sa = key();
    Certs {
        ca_pem: ca.pem(),
        ca_cert: write(dir, "ca.crt", &ca.pem()),
        serving_cert: write(dir, "apiserver.crt", &serving_cert),
        serving_key: write(dir, "apiserver.key", &serving_key),
        admin_identity_pem: format!("{admin_cert}{admin_key}"),
        admin_cert: write(dir, "admin.crt", &admin_cert),
        admin_key: write(dir, "admin.key", &admin_key),
        sa_signing_key: write(dir, "sa.key", &sa.serialize_pem()),
        sa_public_key: write(dir, "sa.pub", &sa.public_key_pem()),
    }
}

fn kubeconfig(url: &str, certs: &Certs) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: rudder-e2e
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: rudder-e2e
  context:
    cluster: rudder-e2e
    user: admin
    namespace: default
current-context: rudder-e2e
",
        ca = certs.ca_cert.display(),
        cert = certs.admin_cert.display(),
        key = certs.admin_key.display(),
    )
}

/// `setpriv --pdeathsig KILL -- BIN`: see the module docs.
fn guarded(bin: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(bin);
    cmd
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn spawn_etcd(bin: &Path) -> (Proc, String) {
    let client = format!("http://{}", loopback(free_port()));
    let peer = format!("http://{}", loopback(free_port()));
    let dir = workdir("etcd");
    let mut cmd = guarded(bin);
    cmd.args(["--name", "e2e"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("e2e={peer}")])
        .args(["--logger", "zap", "--log-level", "warn"])
        // No v2 API, no metrics listener: nothing but the one client URL.
        .args(["--enable-v2=false"]);
    let etcd = Proc::spawn_in("etcd", cmd, dir);
    let health = format!("{client}/health");
    let healthy = poll(ETCD_TIMEOUT, || {
        etcd.assert_running("starting up");
        matches!(try_http_get(&health, None), Ok((200, body)) if body.contains("true"))
            .then_some(())
    });
    assert!(
        healthy.is_some(),
        "etcd: GET {health} not healthy within {ETCD_TIMEOUT:?}{}",
        etcd.log_tail(40)
    );
    (etcd, client)
}

/// Spawns kube-apiserver with `args` and waits until `url`/readyz answers
/// 200 to `client`; returns it and how long that took. Panics with both
/// logs' tails when it exits, etcd does, or it is not ready in time.
fn spawn_apiserver(
    bin: &Path,
    args: &[String],
    client: &reqwest::Client,
    url: &str,
    etcd: &Proc,
) -> (Proc, Duration) {
    let mut cmd = guarded(bin);
    cmd.args(args);
    let started = Instant::now();
    let apiserver = Proc::spawn("kube-apiserver", cmd);
    let readyz = format!("{url}/readyz");
    let mut last = String::from("no answer yet");
    let ready = poll(APISERVER_TIMEOUT, || {
        if let Some(status) = apiserver.exit_status() {
            panic!(
                "kube-apiserver exited ({status}) while starting up{}{}",
                apiserver.log_tail(60),
                etcd.log_tail(20)
            );
        }
        etcd.assert_running("kube-apiserver was starting");
        match send(client, reqwest::Method::GET, &readyz, None) {
            Ok((200, _)) => Some(()),
            Ok((status, body)) => {
                last = format!("{status}: {body}");
                None
            }
            Err(e) => {
                last = format!("{e:#}");
                None
            }
        }
    });
    assert!(
        ready.is_some(),
        "kube-apiserver: GET {readyz} not 200 within {APISERVER_TIMEOUT:?}; last answer: \
         {last}{}{}",
        apiserver.log_tail(60),
        etcd.log_tail(20)
    );
    (apiserver, started.elapsed())
}

impl KubeApi {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers 200
    /// to the admin certificate. Panics with both logs' tails otherwise.
    pub fn start() -> KubeApi {
        KubeApi::start_with(&[])
    }

    /// Like [`KubeApi::start`], with extra kube-apiserver flags (a later
    /// `--flag=value` overrides an earlier one).
    pub fn start_with(extra_args: &[&str]) -> KubeApi {
        let (apiserver_bin, etcd_bin) = kube_bins();
        let certs_dir = workdir("kube-certs");
        let certs = make_certs(certs_dir.path());
        let (etcd, etcd_url) = spawn_etcd(&etcd_bin);

        let port = free_port();
        let url = format!("https://{}", loopback(port));
        let kubeconfig = write(certs_dir.path(), "kubeconfig", &kubeconfig(&url, &certs));
        let file_flag = |flag: &str, path: &Path| format!("--{flag}={}", path.display());
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            // Only used for the `kubernetes` Service's endpoints, which
            // nothing maintains here (no reconciler: a loopback address is
            // not a valid endpoint).
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            file_flag("tls-cert-file", &certs.serving_cert),
            file_flag("tls-private-key-file", &certs.serving_key),
            file_flag("client-ca-file", &certs.ca_cert),
            format!("--service-account-issuer={SA_ISSUER}"),
            file_flag("service-account-key-file", &certs.sa_public_key),
            file_flag("service-account-signing-key-file", &certs.sa_signing_key),
            "--authorization-mode=RBAC".into(),
            // A documentation-style private range; nothing routes there, and
            // nothing leaves the machine anyway.
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // Without a controller-manager no `default` ServiceAccount ever
            // exists, and this plugin would then reject every pod.
            "--disable-admission-plugins=ServiceAccount".into(),
            // Its own temp dir, never /var/run/kubernetes.
            file_flag("cert-dir", &certs_dir.path().join("generated")),
            "--profiling=false".into(),
        ];
        apiserver_args.extend(extra_args.iter().map(|a| a.to_string()));
        let client = admin_client(&certs);
        let (apiserver, startup) =
            spawn_apiserver(&apiserver_bin, &apiserver_args, &client, &url, &etcd);
        KubeApi {
            apiserver,
            etcd,
            apiserver_bin,
            apiserver_args,
            url,
            kubeconfig,
            ca_pem: certs.ca_pem,
            ca_cert: certs.ca_cert,
            admin_cert: certs.admin_cert,
            admin_key: certs.admin_key,
            sa_signing_key: certs.sa_signing_key,
            sa_public_key: certs.sa_public_key,
            startup,
            client,
            _certs: certs_dir,
        }
    }

    /// Kills the API server (SIGKILL: a crash, not a graceful shutdown),
    /// leaving etcd and its data. Requests panic until
    /// [`KubeApi::start_apiserver`].
    pub fn stop_apiserver(&self) {
        self.apiserver.kill();
    }

    /// Starts the API server again with the same flags: the same address,
    /// certificates, service-account key and etcd. Waits for `/readyz` like
    /// [`KubeApi::start`] and returns (and records in `startup`) how long
    /// that took. The previous process's log is discarded.
    pub fn start_apiserver(&mut self) -> Duration {
        assert!(
            !self.apiserver.is_running(),
            "start_apiserver: the API server is still running (stop_apiserver first)"
        );
        let (apiserver, startup) = spawn_apiserver(
            &self.apiserver_bin,
            &self.apiserver_args,
            &self.client,
            &self.url,
            &self.etcd,
        );
        self.apiserver = apiserver;
        self.startup = startup;
        startup
    }

    /// A request as admin; `path` starts with `/`. Returns the status and
    /// the body as JSON (`Value::String` when it is not JSON). Panics, with
    /// both logs' tails, only when there is no HTTP answer at all.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let url = format!("{}{path}", self.url);
        match send(&self.client, method.clone(), &url, body.cloned()) {
            Ok((status, text)) => {
                let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
                (status, json)
            }
            Err(e) => panic!("{method} {url}: {e:#}{}", self.log_tails()),
        }
    }

    /// GET `path`; panics unless the answer is 200.
    pub fn get(&self, path: &str) -> Value {
        self.expect("GET", path, None, &[200])
    }

    /// POST `body` to `path`; panics unless the answer is 201 (or 200).
    pub fn create(&self, path: &str, body: &Value) -> Value {
        self.expect("POST", path, Some(body), &[200, 201])
    }

    /// A request that must answer with one of `ok` statuses.
    pub fn expect(&self, method: &str, path: &str, body: Option<&Value>, ok: &[u16]) -> Value {
        let (status, answer) = self.request(method, path, body);
        assert!(
            ok.contains(&status),
            "{method} {path}: {status} (wanted one of {ok:?}):\n{answer:#}"
        );
        answer
    }

    /// The last 60 lines of the API server's log and 20 of etcd's, for
    /// assertion messages.
    pub fn log_tails(&self) -> String {
        format!("{}{}", self.apiserver.log_tail(60), self.etcd.log_tail(20))
    }

    pub fn apiserver(&self) -> &Proc {
        &self.apiserver
    }

    pub fn etcd(&self) -> &Proc {
        &self.etcd
    }
}

fn admin_client(certs: &Certs) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).expect("parsing the test CA");
    let identity = reqwest::Identity::from_pem(certs.admin_identity_pem.as_bytes())
        .expect("parsing the admin certificate and key");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(identity)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("building the admin HTTPS client")
}

fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, String)> {
    let mut req = client.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    block_on(async move {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    })
}

pub const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// Every CRD under crds/, parsed, by name.
pub fn our_crds() -> BTreeMap<String, Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    let mut crds = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("reading crds/") {
        let path = entry.expect("crds/ entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("reading a CRD");
        let crd: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let name = crd["metadata"]["name"]
            .as_str()
            .expect("CRD name")
            .to_string();
        crds.insert(name, crd);
    }
    assert_eq!(
        crds.len(),
        8,
        "expected Rudder's 8 CRDs in crds/: {:?}",
        crds.keys()
    );
    crds
}

pub fn condition_true(crd: &Value, kind: &str) -> bool {
    let conditions = crd["status"]["conditions"].as_array();
    conditions.is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}

impl KubeApi {
    /// Creates every CRD in crds/ and waits until each is Established.
    pub fn install_crds(&self) {
        let crds = our_crds();
        for crd in crds.values() {
            self.create(CRDS, crd);
        }
        for name in crds.keys() {
            let path = format!("{CRDS}/{name}");
            poll(Duration::from_secs(30), || {
                condition_true(&self.get(&path), "Established").then_some(())
            })
            .unwrap_or_else(|| panic!("{name} not Established within 30s"));
        }
    }

    /// Creates (POST) or replaces (GET for the resourceVersion, then PUT)
    /// the object at `collection`/`name`.
    pub fn apply(&self, collection: &str, body: &Value) {
        let name = body["metadata"]["name"].as_str().expect("metadata.name");
        let path = format!("{collection}/{name}");
        match self.request("GET", &path, None) {
            (200, current) => {
                let mut body = body.clone();
                body["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                self.expect("PUT", &path, Some(&body), &[200]);
            }
            _ => {
                self.create(collection, body);
            }
        }
    }
}
