use std::fmt;

/// A problem with one field of a document: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Dotted path, e.g. `spec.ports[0].port`; empty for the whole document.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

/// Kubernetes' DNS-1123 label: lowercase alphanumerics and '-', at most 63.
pub fn check_dns_label(field: &str, value: &str) -> Result<(), FieldError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{value:?} must be a DNS label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit"),
        ))
    }
}

/// Kubernetes' DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns_subdomain(field: &str, value: &str) -> Result<(), FieldError> {
    if value.len() > 253 {
        return Err(FieldError::new(field, format!("{value:?} is longer than 253 characters")));
    }
    for label in value.split('.') {
        check_dns_label(field, label).map_err(|_| {
            FieldError::new(field, format!("{value:?} must be a DNS subdomain: dot-separated lowercase labels of letters, digits or '-'"))
        })?;
    }
    Ok(())
}

pub fn check_port(field: &str, port: i32) -> Result<u16, FieldError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| FieldError::new(field, format!("port must be between 1 and 65535, got {port}")))
}
