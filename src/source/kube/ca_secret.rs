//! `--ca-secret NAMESPACE/NAME`: the mesh CA kept in a Kubernetes Secret, so
//! every replica and every restart shares one root.
//!
//! The Secret's keys are the CA directory's file names (Istio's `cacerts`:
//! ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem; or Rudder's own
//! root-cert.pem + root-key.pem; optional extra-roots.pem). At start they are
//! written into a private temporary directory (0700, files 0600) and loaded
//! by [`Ca::load_or_create`], so the loading rules live in one place. The
//! directory is removed once the CA is in memory.
//!
//! No Secret: Rudder generates a root there and creates the Secret (type
//! Opaque, label `app.kubernetes.io/managed-by: rudder`) with root-cert.pem
//! and root-key.pem. If another replica created it first (409), that one is
//! read and loaded instead. RBAC: get and create on secrets in the namespace.
//! The Secret is never updated or deleted by Rudder.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};

use crate::ca::store::{CA_CERT, CA_KEY, CERT_CHAIN, EXTRA_ROOTS, ROOT_CERT, ROOT_KEY};
use crate::ca::Ca;

/// The keys Rudder reads; any others in the Secret are ignored.
const KEYS: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    ROOT_CERT,
    CERT_CHAIN,
    ROOT_KEY,
    EXTRA_ROOTS,
];

/// Where the CA Secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSecret {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for CaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `NAMESPACE/NAME`, for the command line.
impl FromStr for CaSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(CaSecret {
                    namespace: ns.into(),
                    name: name.into(),
                })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

/// The CA in `at`: loaded from the Secret, or generated and stored there.
pub async fn load_or_create_ca(
    client: kube::Client,
    at: &CaSecret,
    trust_domain: &str,
) -> anyhow::Result<Ca> {
    let api: Api<Secret> = Api::namespaced(client, &at.namespace);
    let existing = api.get_opt(&at.name).await.with_context(|| {
        format!("reading the CA Secret {at} (Rudder needs get on secrets there)")
    })?;
    if let Some(secret) = existing {
        tracing::info!(secret = %at, "loading the mesh CA from its Secret");
        return load(&secret, at, trust_domain);
    }

    let dir = private_dir()?;
    let ca = Ca::load_or_create(dir.path(), trust_domain)
        .with_context(|| format!("generating a root CA for the Secret {at}"))?;
    let mut data = BTreeMap::new();
    for key in [ROOT_CERT, ROOT_KEY] {
        let bytes = std::fs::read(dir.path().join(key))
            .with_context(|| format!("reading the generated {key} for the Secret {at}"))?;
        data.insert(key.to_string(), ByteString(bytes));
    }
    match api
        .create(&PostParams::default(), &new_secret(at, data))
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %at, "generated a root CA and stored it in a new Secret");
            Ok(ca)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Another replica created it between the GET and the create.
            tracing::info!(secret = %at, "the CA Secret was created meanwhile; loading that one");
            let secret = api
                .get(&at.name)
                .await
                .with_context(|| format!("re-reading the CA Secret {at} after a conflict"))?;
            load(&secret, at, trust_domain)
        }
        Err(e) => Err(e).with_context(|| {
            format!("creating the CA Secret {at} (Rudder needs create on secrets there)")
        }),
    }
}

/// The Secret's known keys as files in a private directory, then the
/// directory's CA.
fn load(secret: &Secret, at: &CaSecret, trust_domain: &str) -> anyhow::Result<Ca> {
    let data = secret.data.clone().unwrap_or_default();
    if !data
        .keys()
        .any(|k| k == ROOT_KEY || k == CA_CERT || k == CA_KEY)
    {
        anyhow::bail!(
            "the CA Secret {at} holds neither {CA_CERT} + {CA_KEY} (Istio's cacerts) nor \
             {ROOT_KEY} (Rudder's own root); its keys: {:?}",
            data.keys().collect::<Vec<_>>()
        );
    }
    let dir = private_dir()?;
    for (key, value) in &data {
        if !KEYS.contains(&key.as_str()) {
            tracing::debug!(secret = %at, key, "ignoring an unknown key of the CA Secret");
            continue;
        }
        write_private(&dir.path().join(key), &value.0)
            .with_context(|| format!("writing key {key} of the CA Secret {at}"))?;
    }
    Ca::load_or_create(dir.path(), trust_domain).with_context(|| {
        format!("loading the CA from the Secret {at} (each file named is the Secret's key)")
    })
}

/// The Secret Rudder creates.
fn new_secret(at: &CaSecret, data: BTreeMap<String, ByteString>) -> Secret {
    let mut secret = Secret {
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    secret.metadata.name = Some(at.name.clone());
    secret.metadata.namespace = Some(at.namespace.clone());
    secret.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "rudder".to_string(),
    )]));
    secret
}

/// A temporary directory only this user can enter (0700); removed on drop.
fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("rudder-ca-")
        .tempdir()
        .context("creating a private temporary directory for the CA Secret's keys")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .context("making the CA's temporary directory private")?;
    }
    Ok(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_and_name() {
        let at: CaSecret = "rudder-system/rudder-ca".parse().unwrap();
        assert_eq!(at.namespace, "rudder-system");
        assert_eq!(at.name, "rudder-ca");
        assert_eq!(at.to_string(), "rudder-system/rudder-ca");
        for bad in ["rudder-ca", "/x", "x/", "a/b/c"] {
            assert!(bad.parse::<CaSecret>().is_err(), "{bad}");
        }
    }

    /// A Secret as Rudder creates it loads back to the same root.
    #[test]
    fn a_created_secret_loads_the_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
        let at: CaSecret = "ns/ca".parse().unwrap();
        let data = [ROOT_CERT, ROOT_KEY]
            .map(|k| {
                let bytes = std::fs::read(dir.path().join(k)).unwrap();
                (k.to_string(), ByteString(bytes))
            })
            .into();
        let secret = new_secret(&at, data);
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
            "rudder"
        );
        let loaded = load(&secret, &at, "cluster.local").unwrap();
        assert_eq!(loaded.trust_bundle(), ca.trust_bundle());
    }

    #[test]
    fn a_secret_without_a_key_is_an_error_naming_it() {
        let at: CaSecret = "ns/ca".parse().unwrap();
        let data = BTreeMap::from([(ROOT_CERT.to_string(), ByteString(b"x".to_vec()))]);
        let err = load(&new_secret(&at, data), &at, "cluster.local").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("ns/ca") && text.contains(ROOT_KEY), "{text}");

        let data = BTreeMap::from([(ROOT_KEY.to_string(), ByteString(b"junk".to_vec()))]);
        let err = load(&new_secret(&at, data), &at, "cluster.local").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("ns/ca") && text.contains(ROOT_KEY), "{text}");
    }
}
