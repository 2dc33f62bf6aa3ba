//! Minimal chain checking: issuer names and signatures only.
//!
//! Used at load time to refuse a `cacerts` whose CA does not chain to its
//! root-cert.pem (Istio refuses that too), and by the tests. It is not a full
//! RFC 5280 path validator: validity and constraints are checked elsewhere,
//! and real peers (Envoy/BoringSSL) do the full job.

use x509_parser::certificate::X509Certificate;

/// Longest chain followed; real meshes use one or two intermediates.
const MAX_DEPTH: usize = 8;

/// Whether `cert` chains to one of `roots` through `intermediates` (all DER).
pub(crate) fn chains_to(
    cert: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
) -> Result<(), String> {
    let roots_parsed = roots
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let inter_parsed = intermediates
        .iter()
        .map(|r| parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = parse(cert)?;
    for _ in 0..MAX_DEPTH {
        // A root itself (e.g. a self-signed CA plugged in directly) is trusted.
        if roots.iter().any(|r| r.as_slice() == current.as_raw()) {
            return Ok(());
        }
        if roots_parsed.iter().any(|r| signed_by(&current, r)) {
            return Ok(());
        }
        let next = inter_parsed
            .iter()
            .find(|i| i.as_raw() != current.as_raw() && signed_by(&current, i));
        match next {
            Some(i) => current = i.clone(),
            None => {
                return Err(format!(
                    "no trusted issuer found for \"{}\"",
                    current.issuer()
                ))
            }
        }
    }
    Err(format!("chain longer than {MAX_DEPTH} certificates"))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| e.to_string())
}

/// `child` names `parent` as issuer and carries a signature by its key.
pub(crate) fn signed_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer().as_raw() == parent.subject().as_raw()
        && child.verify_signature(Some(parent.public_key())).is_ok()
}

/// Self-signed: a root, which belongs in the trust bundle, not in a served chain.
pub(crate) fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| signed_by(&c, &c))
        .unwrap_or(false)
}
