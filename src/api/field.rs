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
        return Err(FieldError::new(
            field,
            format!("{value:?} is longer than 253 characters"),
        ));
    }
    for label in value.split('.') {
        check_dns_label(field, label).map_err(|_| {
            FieldError::new(field, format!("{value:?} must be a DNS subdomain: dot-separated lowercase labels of letters, digits or '-'"))
        })?;
    }
    Ok(())
}

pub fn check_port(field: &str, port: i32) -> Result<u16, FieldError> {
    u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
        FieldError::new(
            field,
            format!("port must be between 1 and 65535, got {port}"),
        )
    })
}

/// Parses an Istio duration: Go syntax as Istio accepts it in YAML, a sequence
/// of decimal numbers with units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`
/// (e.g. `10s`, `1.5s`, `100ms`, `1h30m`).
pub fn parse_duration(field: &str, value: &str) -> Result<std::time::Duration, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            format!("{value:?} is not a duration: use e.g. 10s, 1.5s, 100ms or 1h30m"),
        )
    };
    if value.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 315_576_000_000.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// A duration that must be at least `min` (Istio requires e.g. >= 1ms for timeouts).
pub fn check_duration_min(
    field: &str,
    value: &str,
    min: std::time::Duration,
) -> Result<std::time::Duration, FieldError> {
    let d = parse_duration(field, value)?;
    if d < min {
        return Err(FieldError::new(
            field,
            format!("{value:?} must be at least {min:?}"),
        ));
    }
    Ok(d)
}

/// A percentage in [0, 100] (Istio's `Percent` type).
pub fn check_percent(field: &str, value: f64) -> Result<(), FieldError> {
    if !(0.0..=100.0).contains(&value) || value.is_nan() {
        return Err(FieldError::new(
            field,
            format!("percentage must be between 0 and 100, got {value}"),
        ));
    }
    Ok(())
}

/// An Istio host: a DNS name, optionally with a leading `*.` wildcard, or `*`
/// alone. Short names (`reviews`) and FQDNs (`reviews.ns.svc.cluster.local`) both pass.
pub fn check_host(field: &str, host: &str) -> Result<(), FieldError> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Err(FieldError::new(
            field,
            format!("{host:?}: a wildcard is only allowed as a leading \"*.\""),
        ));
    }
    let lower = name.to_ascii_lowercase();
    check_dns_subdomain(field, &lower)
        .map_err(|_| FieldError::new(field, format!("{host:?} is not a valid host: use a DNS name such as reviews or reviews.ns.svc.cluster.local, optionally with a leading \"*.\"")))
}

/// RE2 syntax, as Envoy's safe_regex uses: the `regex` crate accepts a very
/// close dialect (no backreferences or lookaround, like RE2).
pub fn check_regex(field: &str, pattern: &str) -> Result<(), FieldError> {
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| {
        FieldError::new(
            field,
            format!(
                "invalid RE2 regular expression: {}",
                e.to_string().lines().last().unwrap_or_default().trim()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("f", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_duration("f", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("f", "100ms").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(
            parse_duration("f", "1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["", "10", "s", "10x", "-1s", "1.2.3s"] {
            assert!(parse_duration("f", bad).is_err(), "{bad:?}");
        }
        assert!(check_duration_min("t", "0.5ms", Duration::from_millis(1)).is_err());
    }

    #[test]
    fn hosts_percentages_and_regexes() {
        for ok in [
            "*",
            "reviews",
            "reviews.ns.svc.cluster.local",
            "*.example.com",
            "Example.COM",
        ] {
            check_host("h", ok).unwrap();
        }
        for bad in ["a*.b", "*", "foo..bar", "-x"] {
            if bad != "*" {
                assert!(check_host("h", bad).is_err(), "{bad}");
            }
        }
        check_percent("p", 100.0).unwrap();
        assert!(check_percent("p", 100.5).is_err());
        check_regex("r", "^/api/v[0-9]+").unwrap();
        assert!(check_regex("r", "(unclosed").is_err());
        assert!(check_regex("r", "(?=lookahead)").is_err());
    }
}
