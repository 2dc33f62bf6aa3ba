//! Policy attachment shared by `AuthorizationPolicy` and `RequestAuthentication`:
//! Istio's `type.v1beta1.PolicyTargetReference`, and the rule that a policy
//! picks its workloads by exactly one of `selector`, `targetRef` or `targetRefs`.

use std::sync::LazyLock;

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::networking::selector::{check_match_labels, MatchLabelsSelector};
use crate::api::FieldError;

/// A reference to the resource a policy applies to, such as a Kubernetes
/// `Service`, an Istio `ServiceEntry`, or a Gateway API `Gateway` or
/// `GatewayClass`, in the same namespace as the policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// group is the group of the target resource: empty (or `core`) for a
    /// `Service`, `networking.istio.io` for a `ServiceEntry`,
    /// `gateway.networking.k8s.io` for a `Gateway` or `GatewayClass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// kind is kind of the target resource.
    pub kind: String,
    /// name is the name of the target resource.
    pub name: String,
    /// namespace is the namespace of the referent. Cross-namespace
    /// references are not supported: leave it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The (canonical group, kind) pairs Istio lets a policy target
/// (Istio's `allowedTargetRefs`; the core group is spelled `core` or empty).
const ALLOWED_TARGETS: [(&str, &str); 4] = [
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// At most this many `targetRefs` (Istio's CRD schema).
const MAX_TARGET_REFS: usize = 16;

// The patterns of Istio's CRD schema for the reference's group and kind.
static GROUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
});
static KIND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$").unwrap());

/// Checks how a policy picks its workloads (Istio's `validateOneOfSelectorType`,
/// `validateWorkloadSelector` and `validatePolicyTargetReference(s)`): at most
/// one of `selector`, `targetRef` and `targetRefs`, each well-formed.
pub(crate) fn check_policy_targets(
    selector: Option<&MatchLabelsSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) -> Result<(), FieldError> {
    let set = [
        ("spec.selector", selector.is_some()),
        ("spec.targetRef", target_ref.is_some()),
        ("spec.targetRefs", !target_refs.is_empty()),
    ];
    if let Some((field, _)) = set.iter().filter(|(_, on)| *on).nth(1) {
        return Err(FieldError::new(
            *field,
            "only one of selector, targetRef or targetRefs can be set",
        ));
    }
    if let Some(selector) = selector {
        check_match_labels("spec.selector", selector)?;
    }
    if let Some(target) = target_ref {
        check_target_ref("spec.targetRef", target)?;
    }
    if target_refs.len() > MAX_TARGET_REFS {
        return Err(FieldError::new(
            "spec.targetRefs",
            format!("at most {MAX_TARGET_REFS} targetRefs are allowed"),
        ));
    }
    for (i, target) in target_refs.iter().enumerate() {
        check_target_ref(&format!("spec.targetRefs[{i}]"), target)?;
    }
    Ok(())
}

/// One reference (Istio's `validatePolicyTargetReference` and its CRD schema).
fn check_target_ref(field: &str, target: &PolicyTargetReference) -> Result<(), FieldError> {
    let at = |name: &str| format!("{field}.{name}");
    if target.name.is_empty() {
        return Err(FieldError::new(at("name"), "targetRef name must be set"));
    }
    if target.name.len() > 253 {
        return Err(FieldError::new(
            at("name"),
            "name must be at most 253 characters",
        ));
    }
    if target.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        return Err(FieldError::new(
            at("namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        ));
    }
    let group = target.group.as_deref().unwrap_or("");
    if group.len() > 253 || !GROUP.is_match(group) {
        return Err(FieldError::new(
            at("group"),
            format!(
                "{group:?} is not a valid API group: use lowercase DNS labels separated by '.'"
            ),
        ));
    }
    if target.kind.len() > 63 || !KIND.is_match(&target.kind) {
        return Err(FieldError::new(
            at("kind"),
            format!(
                "{:?} is not a valid kind: letters, digits and '-', starting with a letter, at most 63",
                target.kind
            ),
        ));
    }
    let canonical = if group.is_empty() { "core" } else { group };
    if !ALLOWED_TARGETS.contains(&(canonical, target.kind.as_str())) {
        return Err(FieldError::new(
            at("kind"),
            format!(
                "targetRef must be to a core Service, a networking.istio.io ServiceEntry, or a gateway.networking.k8s.io Gateway or GatewayClass, but was {group}/{}",
                target.kind
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(group: &str, kind: &str, name: &str) -> PolicyTargetReference {
        PolicyTargetReference {
            group: (!group.is_empty()).then(|| group.to_string()),
            kind: kind.into(),
            name: name.into(),
            namespace: None,
        }
    }

    #[test]
    fn allowed_targets_follow_istio() {
        for ok in [
            target("", "Service", "web"),
            target("core", "Service", "web"),
            target("networking.istio.io", "ServiceEntry", "ext"),
            target("gateway.networking.k8s.io", "Gateway", "ingress"),
            target("gateway.networking.k8s.io", "GatewayClass", "istio"),
        ] {
            check_policy_targets(None, Some(&ok), &[]).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        let err = check_policy_targets(None, None, &[target("apps", "Deployment", "web")]);
        assert_eq!(err.unwrap_err().field, "spec.targetRefs[0].kind");
        let err = check_policy_targets(None, Some(&target("", "Service", "")), &[]);
        assert_eq!(err.unwrap_err().field, "spec.targetRef.name");
        let mut cross = target("", "Service", "web");
        cross.namespace = Some("other".into());
        let err = check_policy_targets(None, Some(&cross), &[]).unwrap_err();
        assert_eq!(err.field, "spec.targetRef.namespace");
        let err = check_policy_targets(None, Some(&target("Bad_Group", "Service", "w")), &[]);
        assert_eq!(err.unwrap_err().field, "spec.targetRef.group");
        let many = vec![target("", "Service", "w"); 17];
        let err = check_policy_targets(None, None, &many).unwrap_err();
        assert_eq!(err.field, "spec.targetRefs");
    }

    #[test]
    fn selector_and_targets_are_exclusive() {
        let selector = MatchLabelsSelector::default();
        let svc = target("", "Service", "web");
        let err = check_policy_targets(Some(&selector), Some(&svc), &[]).unwrap_err();
        assert_eq!(err.field, "spec.targetRef");
        assert!(err.reason.contains("only one of"), "{err}");
        let err = check_policy_targets(None, Some(&svc), std::slice::from_ref(&svc)).unwrap_err();
        assert_eq!(err.field, "spec.targetRefs");
        // An empty selector is only a warning in Istio.
        check_policy_targets(Some(&selector), None, &[]).unwrap();
    }
}
