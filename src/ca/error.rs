//! The CA's one error type. Every error about a file names the file, so an
//! operator who plugged in the wrong `cacerts` can fix it from the message alone.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM, or has no block of the expected kind.
    #[error("{}: not PEM: {reason}", path.display())]
    NotPem { path: PathBuf, reason: String },
    #[error("{}: bad certificate: {reason}", path.display())]
    BadCert { path: PathBuf, reason: String },
    #[error("{}: bad private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: certificate is not a CA (basicConstraints CA:TRUE with keyCertSign required)", path.display())]
    NotCa { path: PathBuf },
    #[error("{}: certificate expired at {not_after}", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{}: certificate is not valid before {not_before}", path.display())]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{}: does not chain to a root in {}: {reason}", path.display(), roots.display())]
    Chain {
        path: PathBuf,
        roots: PathBuf,
        reason: String,
    },
    /// A CA directory in a state Rudder will not guess about (e.g. a lone
    /// root-cert.pem): refusing beats overwriting someone's root.
    #[error("{}: {reason}", dir.display())]
    Layout { dir: PathBuf, reason: String },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("identity trust domain {requested:?} is not this CA's trust domain {ca:?}")]
    TrustDomainMismatch { ca: String, requested: String },
    #[error("invalid certificate lifetime: {0}")]
    InvalidTtl(String),
    #[error("the signing certificate expired at {0}; plug in or generate a new CA")]
    SignerExpired(String),
    /// PEM handed in memory (e.g. `CertInfo::parse`), so there is no file to name.
    #[error("invalid certificate PEM: {0}")]
    InvalidPem(String),
    /// A CSR that cannot be signed: not PEM or PKCS#10, a self-signature that
    /// does not verify, or a key type the CA does not certify.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}
