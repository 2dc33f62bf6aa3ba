//! The CA directory: the only part of the CA that touches the disk.
//!
//! Which CA a directory holds is decided by which files are present, in order:
//! 1. `ca-cert.pem` or `ca-key.pem`: Istio's plug-in `cacerts` (the Secret
//!    `cacerts` mounted as files). Rudder signs with ca-cert/ca-key, trusts
//!    root-cert.pem, and serves leaf + cert-chain.pem's intermediates.
//! 2. `root-key.pem`: Rudder's own persisted self-signed root (with
//!    root-cert.pem beside it).
//! 3. Neither, and no root-cert.pem: generate a root and persist it.
//!
//! `extra-roots.pem`, if present, adds trusted roots in any mode (see the root
//! rotation notes in `mod.rs`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::codec::{cert_ders, load_key, pem_encode};
use super::issue::{asn1_to_system, check_validity, fmt_time, generate_key, generate_root, Signer};
use super::verify::{chains_to, is_self_signed};
use super::{Ca, CaError, CaSource};

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// Rudder's own root key; never part of Istio's layout.
pub const ROOT_KEY: &str = "root-key.pem";
pub const EXTRA_ROOTS: &str = "extra-roots.pem";

pub(crate) fn load_or_create(
    dir: &Path,
    trust_domain: &str,
    now: SystemTime,
) -> Result<Ca, CaError> {
    super::identity::validate_trust_domain(trust_domain)?;
    let has = |name: &str| dir.join(name).exists();
    let (signer, chain, mut roots, source) = if has(CA_CERT) || has(CA_KEY) {
        load_plugged(dir, now)?
    } else if has(ROOT_KEY) {
        load_own(dir, trust_domain, now)?
    } else if has(ROOT_CERT) {
        return Err(CaError::Layout {
            dir: dir.to_path_buf(),
            reason: format!(
                "{ROOT_CERT} without {ROOT_KEY} or {CA_CERT}/{CA_KEY}: not generating a \
                 new root over it; add the key or remove the file"
            ),
        });
    } else {
        create_own(dir, trust_domain, now)?
    };
    if has(EXTRA_ROOTS) {
        for der in read_extra_roots(&dir.join(EXTRA_ROOTS), now)? {
            if !roots.contains(&der) {
                roots.push(der);
            }
        }
    }
    Ok(Ca {
        trust_domain: trust_domain.to_string(),
        signer,
        intermediates_pem: chain.iter().map(|d| pem_encode("CERTIFICATE", d)).collect(),
        bundle_pem: roots.iter().map(|d| pem_encode("CERTIFICATE", d)).collect(),
        source,
    })
}

/// (signer, intermediates served after a leaf, trusted roots, source)
type Loaded = (Signer, Vec<Vec<u8>>, Vec<Vec<u8>>, CaSource);

fn load_plugged(dir: &Path, now: SystemTime) -> Result<Loaded, CaError> {
    let (cert_path, key_path, roots_path, chain_path) = (
        dir.join(CA_CERT),
        dir.join(CA_KEY),
        dir.join(ROOT_CERT),
        dir.join(CERT_CHAIN),
    );
    // Only the first block: ca-cert.pem holds the one signing certificate.
    let ca_cert = cert_ders(&cert_path, &read(&cert_path)?)?.swap_remove(0);
    let key = load_key(&key_path, &read(&key_path)?)?;
    let roots = cert_ders(&roots_path, &read(&roots_path)?)?;
    for root in &roots {
        require_ca(&roots_path, root)?;
    }
    // cert-chain.pem is optional: with only the CA and root, the chain is the CA.
    let listed = if chain_path.exists() {
        cert_ders(&chain_path, &read(&chain_path)?)?
    } else {
        Vec::new()
    };
    let signer = Signer::new(ca_cert.clone(), key, &cert_path, &key_path, now)?;
    chains_to(&ca_cert, &listed, &roots).map_err(|reason| CaError::Chain {
        path: cert_path.clone(),
        roots: roots_path.clone(),
        reason,
    })?;
    // Served chain: the signing CA first, then cert-chain.pem's other
    // intermediates in order. Self-signed roots are left out: peers must
    // already trust them, and they go out in the trust bundle instead. This
    // holds whether or not cert-chain.pem starts with ca-cert.pem.
    let mut chain: Vec<Vec<u8>> = Vec::new();
    for der in std::iter::once(ca_cert).chain(listed) {
        if !is_self_signed(&der) && !chain.contains(&der) {
            chain.push(der);
        }
    }
    Ok((signer, chain, roots, CaSource::Plugged))
}

fn load_own(dir: &Path, trust_domain: &str, now: SystemTime) -> Result<Loaded, CaError> {
    let (cert_path, key_path) = (dir.join(ROOT_CERT), dir.join(ROOT_KEY));
    let key = load_key(&key_path, &read(&key_path)?)?;
    warn_if_readable_by_others(&key_path);
    let root = if cert_path.exists() {
        cert_ders(&cert_path, &read(&cert_path)?)?.swap_remove(0)
    } else {
        // Creation writes the key first, so a crash can leave the key alone.
        // The key is the identity; re-certifying it loses nothing.
        tracing::warn!(dir = %dir.display(), "CA root key without certificate: re-issuing the root certificate");
        let der = generate_root(trust_domain, &key, now)?;
        write_atomic(
            &cert_path,
            pem_encode("CERTIFICATE", &der).as_bytes(),
            0o644,
        )?;
        der
    };
    let signer = Signer::new(root.clone(), key, &cert_path, &key_path, now)?;
    Ok((signer, Vec::new(), vec![root], CaSource::SelfSigned))
}

fn create_own(dir: &Path, trust_domain: &str, now: SystemTime) -> Result<Loaded, CaError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key = generate_key()?;
    let der = generate_root(trust_domain, &key, now)?;
    let (cert_path, key_path) = (dir.join(ROOT_CERT), dir.join(ROOT_KEY));
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(
        &cert_path,
        pem_encode("CERTIFICATE", &der).as_bytes(),
        0o644,
    )?;
    tracing::info!(dir = %dir.display(), "generated a self-signed mesh root CA");
    let signer = Signer::new(der.clone(), key, &cert_path, &key_path, now)?;
    Ok((signer, Vec::new(), vec![der], CaSource::SelfSigned))
}

/// Extra trusted roots. An expired one is skipped, not fatal: during a root
/// rotation the old root may expire before the operator removes it, and that
/// must not stop the control plane.
fn read_extra_roots(path: &Path, now: SystemTime) -> Result<Vec<Vec<u8>>, CaError> {
    let mut out = Vec::new();
    for der in cert_ders(path, &read(path)?)? {
        require_ca(path, &der)?;
        match x509_parser::parse_x509_certificate(&der) {
            Ok((_, c)) if check_validity(&c, path, now).is_err() => {
                tracing::warn!(
                    file = %path.display(),
                    subject = %c.subject(),
                    not_after = %fmt_time(asn1_to_system(c.validity().not_after)),
                    "skipping extra root that is not currently valid"
                );
            }
            _ => out.push(der),
        }
    }
    Ok(out)
}

fn require_ca(path: &Path, der: &[u8]) -> Result<(), CaError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) if c.is_ca() => Ok(()),
        _ => Err(CaError::NotCa {
            path: path.to_path_buf(),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write to a temp file in the same directory, fsync, rename over `path`, then
/// fsync the directory: a reader sees the old file or the new one, never half.
/// The temp file is created with `mode` so a key is never briefly world-readable.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover from a crash may have other permissions; start fresh.
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "CA private key is readable by group or others; expected mode 0600");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
