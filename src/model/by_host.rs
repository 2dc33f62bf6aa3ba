//! VirtualServices and DestinationRules by the hosts they name.
//!
//! Translation asks, for every service of a proxy's config, which rules
//! name its host. Scanning every rule for each service made a proxy's
//! translation O(services × rules); with this index a lookup reads the rules
//! naming the host exactly and the (few) with a wildcard host. The index
//! builds it once per routing change, and every proxy shares it.

use std::collections::HashMap;
use std::sync::Arc;

use super::routing::{host_matches, ConfigKey, DestinationRule, VirtualService};

/// A rule that names hosts (exact, or `*.suffix` wildcards).
pub trait NamesHosts {
    fn key(&self) -> &ConfigKey;
    fn hosts(&self) -> &[String];
}

impl NamesHosts for VirtualService {
    fn key(&self) -> &ConfigKey {
        &self.key
    }
    fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

impl NamesHosts for DestinationRule {
    fn key(&self) -> &ConfigKey {
        &self.key
    }
    fn hosts(&self) -> &[String] {
        std::slice::from_ref(&self.host)
    }
}

#[derive(Debug)]
pub struct ByHost<T> {
    exact: HashMap<String, Vec<Arc<T>>>,
    /// Rules with at least one wildcard host, in key order.
    wildcard: Vec<Arc<T>>,
}

impl<T> Default for ByHost<T> {
    fn default() -> Self {
        ByHost {
            exact: HashMap::new(),
            wildcard: Vec::new(),
        }
    }
}

impl<T: NamesHosts> ByHost<T> {
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a Arc<T>>) -> Self
    where
        T: 'a,
    {
        let mut index = ByHost::default();
        for rule in rules {
            let hosts = rule.hosts();
            for host in hosts.iter().filter(|h| !h.starts_with('*')) {
                let named = index.exact.entry(host.clone()).or_insert_with(Vec::new);
                // A rule listing one host twice is still one rule.
                if !named.last().is_some_and(|r| Arc::ptr_eq(r, rule)) {
                    named.push(rule.clone());
                }
            }
            if hosts.iter().any(|h| h.starts_with('*')) {
                index.wildcard.push(rule.clone());
            }
        }
        index
    }

    /// Every rule with a host matching `host` (exactly or by wildcard), each
    /// once, in key order: the order a scan of all rules would give.
    pub fn matching(&self, host: &str) -> Vec<&T> {
        let mut out: Vec<&T> = self
            .exact
            .get(host)
            .into_iter()
            .flatten()
            .map(|r| r.as_ref())
            .collect();
        let exact = out.len();
        out.extend(
            self.wildcard
                .iter()
                .map(|r| r.as_ref())
                .filter(|r| r.hosts().iter().any(|h| host_matches(h, host)))
                // Already there when it also names `host` exactly.
                .filter(|r| !r.hosts().iter().any(|h| h == host)),
        );
        if out.len() > exact && exact > 0 {
            out.sort_by(|a, b| a.key().cmp(b.key()));
        }
        out
    }
}

/// The snapshot's routing rules by host (see the module comment).
#[derive(Debug, Default)]
pub struct RulesByHost {
    pub virtual_services: ByHost<VirtualService>,
    pub destination_rules: ByHost<DestinationRule>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::Visibility;

    fn rule(ns: &str, name: &str, hosts: &[&str]) -> Arc<VirtualService> {
        Arc::new(VirtualService {
            key: ConfigKey {
                namespace: ns.into(),
                name: name.into(),
            },
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            for_sidecars: true,
            visibility: Visibility::Everywhere,
            http: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            created: 0,
        })
    }

    fn names(found: Vec<&VirtualService>) -> Vec<String> {
        found.iter().map(|r| r.key.to_string()).collect()
    }

    /// The index answers exactly what scanning every rule in key order (as
    /// the snapshot's maps hold them) does.
    #[test]
    fn matching_equals_a_scan_of_every_rule() {
        let rules = [
            rule("a", "web", &["web.a.svc.cluster.local"]),
            rule("a", "wild", &["*.a.svc.cluster.local"]),
            rule(
                "b",
                "both",
                &["web.a.svc.cluster.local", "*.svc.cluster.local"],
            ),
            rule(
                "b",
                "twice",
                &["web.a.svc.cluster.local", "web.a.svc.cluster.local"],
            ),
            rule("c", "all", &["*"]),
            rule("c", "other", &["api.c.svc.cluster.local"]),
        ];
        let index = ByHost::new(&rules);
        for host in [
            "web.a.svc.cluster.local",
            "api.c.svc.cluster.local",
            "db.a.svc.cluster.local",
            "example.com",
        ] {
            let scan: Vec<&VirtualService> = rules
                .iter()
                .map(|r| r.as_ref())
                .filter(|r| r.hosts.iter().any(|h| host_matches(h, host)))
                .collect();
            assert_eq!(names(index.matching(host)), names(scan), "{host}");
        }
        assert_eq!(
            names(index.matching("web.a.svc.cluster.local")),
            ["a/web", "a/wild", "b/both", "b/twice", "c/all"]
        );
    }
}
