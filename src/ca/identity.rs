//! Workload identities and the name checks shared by the CA.
//!
//! Names are validated before they reach a certificate: a SPIFFE ID is compared
//! byte for byte by authorization policy, so a stray `/` or upper-case letter
//! would mint an identity that no policy can name, or one that aliases another.

use std::fmt;

use super::CaError;

/// A workload's SPIFFE identity: `spiffe://TD/ns/NS/sa/SA`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// Builds a validated identity.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, CaError> {
        let id = Identity {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Checks every component. The fields are public, so the CA calls this
    /// again before signing rather than trusting construction.
    pub fn validate(&self) -> Result<(), CaError> {
        validate_trust_domain(&self.trust_domain)?;
        // Kubernetes namespaces are RFC 1123 labels.
        validate_label("namespace", &self.namespace, &self.namespace)?;
        // Kubernetes service-account names are RFC 1123 *subdomains*: dots are
        // legal there, so a label-only check would refuse real accounts.
        validate_subdomain("service account", &self.service_account)
    }

    /// The SPIFFE ID as it appears in the certificate's URI SAN.
    pub fn spiffe_id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> CaError {
    CaError::InvalidName {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A trust domain is a DNS-like name (`cluster.local`). SPIFFE also allows `_`
/// in it, which Istio accepts, so we do too.
pub(crate) fn validate_trust_domain(td: &str) -> Result<(), CaError> {
    const FIELD: &str = "trust domain";
    if td.is_empty() || td.len() > 255 {
        return Err(invalid(FIELD, td, "must be 1..=255 characters"));
    }
    for label in td.split('.') {
        if label.is_empty() {
            return Err(invalid(FIELD, td, "empty label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(FIELD, td, "only a-z, 0-9, '-', '_' and '.'"));
        }
    }
    Ok(())
}

/// An RFC 1123 label: 1..=63 of `a-z0-9-`, alphanumeric at both ends.
fn validate_label(field: &'static str, whole: &str, label: &str) -> Result<(), CaError> {
    if label.is_empty() || label.len() > 63 {
        return Err(invalid(
            field,
            whole,
            "each label must be 1..=63 characters",
        ));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(field, whole, "only a-z, 0-9 and '-' allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(invalid(field, whole, "must not start or end with '-'"));
    }
    Ok(())
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn validate_subdomain(field: &'static str, name: &str) -> Result<(), CaError> {
    if name.len() > 253 {
        return Err(invalid(field, name, "longer than 253 characters"));
    }
    name.split('.')
        .try_for_each(|label| validate_label(field, name, label))
}

/// A DNS SAN for the serving certificate. `localhost` passes as a subdomain.
pub(crate) fn validate_dns_name(name: &str) -> Result<(), CaError> {
    validate_subdomain("DNS name", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_spiffe_id() {
        let id = Identity::new("cluster.local", "default", "bookinfo.productpage").unwrap();
        assert_eq!(
            id.spiffe_id(),
            "spiffe://cluster.local/ns/default/sa/bookinfo.productpage"
        );
    }

    #[test]
    fn rejects_bad_components() {
        for (td, ns, sa) in [
            ("", "ns", "sa"),
            ("Cluster.local", "ns", "sa"),
            ("cluster..local", "ns", "sa"),
            ("cluster.local", "a.b", "sa"),
            ("cluster.local", "-ns", "sa"),
            ("cluster.local", "ns", "sa/x"),
            ("cluster.local", "ns", "SA"),
            ("cluster.local", "ns", ""),
            ("cluster.local", &"n".repeat(64), "sa"),
        ] {
            let err = Identity::new(td, ns, sa).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidName { .. }),
                "{td}/{ns}/{sa}: {err}"
            );
        }
    }
}
