//! Peer authentication as the translators need it: each PeerAuthentication
//! resolved to a mode per port, and Istio's precedence to find the mode that
//! applies to one workload.

use super::routing::ConfigKey;
use std::collections::BTreeMap;

/// A PeerAuthentication's mutual-TLS mode. `Unset` inherits from the parent
/// scope (port -> workload -> namespace -> mesh); the mesh default is
/// `Permissive`, as in Istio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl MtlsMode {
    /// `self` unless unset, else `parent`.
    pub fn or(self, parent: MtlsMode) -> MtlsMode {
        if self == MtlsMode::Unset {
            parent
        } else {
            self
        }
    }
}

/// One accepted PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerAuthn {
    pub key: ConfigKey,
    /// Creation time, Unix seconds (0 when unknown, as in file mode).
    pub created: i64,
    /// Empty: the whole namespace (the whole mesh in the root namespace).
    pub selector: BTreeMap<String, String>,
    pub mode: MtlsMode,
    /// Workload (container) port -> mode. Istio honours these only on
    /// policies with a selector.
    pub port_modes: BTreeMap<u16, MtlsMode>,
}

/// What a workload's inbound side accepts: a mode for every port not listed,
/// and the ports a policy sets otherwise. No mode here is `Unset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct InboundMtls {
    pub mode: MtlsMode,
    pub ports: BTreeMap<u16, MtlsMode>,
}

impl Default for InboundMtls {
    fn default() -> Self {
        InboundMtls {
            mode: MtlsMode::Permissive,
            ports: BTreeMap::new(),
        }
    }
}

impl InboundMtls {
    pub fn at(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }

    /// Istio's precedence: the oldest selector policy in the workload's
    /// namespace that matches it, over the namespace's selector-less policy,
    /// over the root namespace's selector-less policy (the mesh). At each
    /// level an `Unset` mode inherits; port-level modes come only from the
    /// workload policy.
    pub fn resolve<'a>(
        policies: impl IntoIterator<Item = &'a PeerAuthn>,
        root_namespace: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> InboundMtls {
        let mut mesh = None;
        let mut ns = None;
        let mut workload = None;
        let older = |slot: &mut Option<&'a PeerAuthn>, p: &'a PeerAuthn| {
            if slot.is_none_or(|cur| (p.created, &p.key) < (cur.created, &cur.key)) {
                *slot = Some(p);
            }
        };
        for p in policies {
            if p.selector.is_empty() {
                if p.key.namespace == namespace {
                    older(&mut ns, p);
                }
                if p.key.namespace == root_namespace {
                    older(&mut mesh, p);
                }
            } else if p.key.namespace == namespace
                && p.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                older(&mut workload, p);
            }
        }
        let mode_of = |p: Option<&PeerAuthn>| p.map_or(MtlsMode::Unset, |p| p.mode);
        let mode = mode_of(workload)
            .or(mode_of(ns))
            .or(mode_of(mesh))
            .or(MtlsMode::Permissive);
        let ports = workload
            .map(|w| {
                w.port_modes
                    .iter()
                    .map(|(&port, &m)| (port, m.or(mode)))
                    .filter(|(_, m)| *m != mode)
                    .collect()
            })
            .unwrap_or_default();
        InboundMtls { mode, ports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(ns: &str, name: &str, selector: &[(&str, &str)], mode: MtlsMode) -> PeerAuthn {
        PeerAuthn {
            key: ConfigKey {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            created: 0,
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mode,
            port_modes: BTreeMap::new(),
        }
    }

    fn labels(app: &str) -> BTreeMap<String, String> {
        [("app".to_string(), app.to_string())].into()
    }

    fn resolve(policies: &[PeerAuthn], ns: &str, app: &str) -> InboundMtls {
        InboundMtls::resolve(policies, "istio-system", ns, &labels(app))
    }

    #[test]
    fn nothing_configured_is_permissive() {
        assert_eq!(resolve(&[], "shop", "web"), InboundMtls::default());
    }

    #[test]
    fn workload_over_namespace_over_mesh() {
        use MtlsMode::*;
        let mesh = pa("istio-system", "default", &[], Strict);
        let ns = pa("shop", "default", &[], Permissive);
        let web = pa("shop", "web", &[("app", "web")], Disable);
        assert_eq!(
            resolve(std::slice::from_ref(&mesh), "shop", "web").mode,
            Strict
        );
        assert_eq!(
            resolve(&[mesh.clone(), ns.clone()], "shop", "web").mode,
            Permissive
        );
        let all = [mesh, ns, web];
        assert_eq!(resolve(&all, "shop", "web").mode, Disable);
        assert_eq!(resolve(&all, "shop", "db").mode, Permissive);
        // Another namespace sees only the mesh policy.
        assert_eq!(resolve(&all, "other", "web").mode, Strict);
    }

    #[test]
    fn unset_inherits_from_the_parent_scope() {
        use MtlsMode::*;
        let all = [
            pa("istio-system", "default", &[], Strict),
            pa("shop", "default", &[], Unset),
            pa("shop", "web", &[("app", "web")], Unset),
        ];
        assert_eq!(resolve(&all, "shop", "web").mode, Strict);
    }

    #[test]
    fn port_level_modes_come_from_the_workload_policy() {
        use MtlsMode::*;
        let mut web = pa("shop", "web", &[("app", "web")], Strict);
        web.port_modes = [(8080, Disable), (9090, Unset), (9091, Strict)].into();
        let got = resolve(&[web], "shop", "web");
        assert_eq!(got.mode, Strict);
        // Unset and equal-to-workload ports are folded into the default.
        assert_eq!(got.ports, [(8080, Disable)].into());
        assert_eq!(got.at(8080), Disable);
        assert_eq!(got.at(9090), Strict);
    }

    #[test]
    fn the_oldest_policy_wins_a_tie() {
        use MtlsMode::*;
        let mut old = pa("shop", "z-old", &[("app", "web")], Disable);
        old.created = 10;
        let mut new = pa("shop", "a-new", &[("app", "web")], Strict);
        new.created = 20;
        assert_eq!(resolve(&[new, old], "shop", "web").mode, Disable);
    }
}
