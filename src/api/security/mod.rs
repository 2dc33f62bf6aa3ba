//! Istio's `security.istio.io` kinds, field for field, as Kubernetes custom
//! resources: the Rust types generate the CRDs (see [`all`]) and each kind has
//! one pure `validate` that mirrors istiod's validation webhook and the rules
//! of Istio's CRD schema.

pub mod authorization_policy;
pub mod peer_authentication;
pub mod request_authentication;
pub mod target_ref;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;

pub use authorization_policy::{Action, AuthorizationPolicy, AuthorizationPolicySpec};
pub use peer_authentication::{MtlsMode, PeerAuthentication, PeerAuthenticationSpec};
pub use request_authentication::{JwtRule, RequestAuthentication, RequestAuthenticationSpec};
pub use target_ref::PolicyTargetReference;

use crate::api::networking::as_istio_installs_it;
use crate::api::FieldError;

/// The API group of every kind in this module.
pub const GROUP: &str = "security.istio.io";

/// Versions Istio serves besides `v1`, with the same schema: users' YAML
/// (and Istio's own older docs) still say `security.istio.io/v1beta1`.
pub const ALIAS_VERSIONS: [&str; 1] = ["v1beta1"];

/// The annotation that makes an `AuthorizationPolicy` a dry run: evaluated
/// and logged, not enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// The CRD of every Istio security kind Rudder serves, as Istio installs
/// them: `v1` is the storage version and `v1beta1` is served with the same
/// schema.
pub fn all() -> Vec<CustomResourceDefinition> {
    [
        AuthorizationPolicy::crd(),
        PeerAuthentication::crd(),
        RequestAuthentication::crd(),
    ]
    .into_iter()
    .map(spec_not_required)
    .map(|crd| as_istio_installs_it(crd, &ALIAS_VERSIONS))
    .collect()
}

/// Istio's security CRDs do not require `spec` (an `AuthorizationPolicy`
/// with none allows nothing), so ours do not either; `api::parse` reads a
/// missing spec as an empty one.
fn spec_not_required(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let schema = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut());
        if let Some(schema) = schema {
            if let Some(required) = &mut schema.required {
                required.retain(|field| field != "spec");
            }
            if schema.required.as_ref().is_some_and(Vec::is_empty) {
                schema.required = None;
            }
        }
    }
    crd
}

/// Validates a `PeerAuthentication`: the annotations istiod checks on every
/// kind, then the spec.
pub fn validate_peer_authentication(o: &PeerAuthentication) -> Result<(), FieldError> {
    check_dry_run_annotation(&o.metadata, None)?;
    peer_authentication::validate(&o.spec)
}

/// Validates a `RequestAuthentication`: the annotations istiod checks on
/// every kind, then the spec.
pub fn validate_request_authentication(o: &RequestAuthentication) -> Result<(), FieldError> {
    check_dry_run_annotation(&o.metadata, None)?;
    request_authentication::validate(&o.spec)
}

/// Istio's `checkDryRunAnnotation`: `istio.io/dry-run` is only for an
/// `AuthorizationPolicy` (`action` is `Some`) with action ALLOW or DENY, and
/// its value is a boolean as Go parses one.
pub(crate) fn check_dry_run_annotation(
    meta: &ObjectMeta,
    action: Option<Action>,
) -> Result<(), FieldError> {
    let Some(value) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
    else {
        return Ok(());
    };
    let field = format!("metadata.annotations[{DRY_RUN_ANNOTATION}]");
    match action {
        None => Err(FieldError::new(
            field,
            format!("unsupported annotation {DRY_RUN_ANNOTATION}: only an AuthorizationPolicy can be a dry run, please remove the annotation"),
        )),
        Some(Action::Allow | Action::Deny) => {
            const GO_BOOLS: [&str; 12] = [
                "1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False",
            ];
            if GO_BOOLS.contains(&value.as_str()) {
                Ok(())
            } else {
                Err(FieldError::new(
                    field,
                    format!("invalid value {value:?}: use true or false"),
                ))
            }
        }
        Some(other) => Err(FieldError::new(
            field,
            format!(
                "the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {}",
                other.as_str()
            ),
        )),
    }
}

/// Helpers shared by the per-kind tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Every fixture of `kind` under `security/testdata` parses, validates and
    /// round-trips (see the networking helper it calls).
    pub fn assert_fixtures_round_trip<K>(
        kind: &str,
        at_least: usize,
        validate: impl Fn(&K) -> Result<(), crate::api::FieldError>,
    ) where
        K: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        crate::api::networking::testing::assert_module_fixtures_round_trip(
            "security",
            super::GROUP,
            kind,
            at_least,
            validate,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_crd_serves_v1_and_v1beta1_with_one_storage_version() {
        let crds = all();
        let names: Vec<_> = crds
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "authorizationpolicies.security.istio.io",
                "peerauthentications.security.istio.io",
                "requestauthentications.security.istio.io"
            ]
        );
        for crd in crds {
            let versions: Vec<(&str, bool)> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.storage))
                .collect();
            assert_eq!(versions, [("v1", true), ("v1beta1", false)]);
            assert!(crd.spec.versions.iter().all(|v| v.served));
            assert_eq!(crd.spec.versions[0].schema, crd.spec.versions[1].schema);
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(
                crd.spec.names.categories,
                Some(vec!["istio-io".into(), "security-istio-io".into()])
            );
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            assert!(!schema.to_string().contains("nullable"), "{schema}");
            assert!(schema["openAPIV3Schema"].get("required").is_none());
        }
    }

    fn parse(text: &str) -> Result<crate::api::Object, crate::api::DocumentError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        match crate::api::parse(value)? {
            crate::api::Parsed::Object(_, object) => Ok(*object),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn documents_parse_at_v1_and_v1beta1_and_validate() {
        for version in ["v1", "v1beta1"] {
            for kind in [
                "PeerAuthentication",
                "RequestAuthentication",
                "AuthorizationPolicy",
            ] {
                // Without a spec, as Istio's CRDs allow.
                let doc = format!(
                    "apiVersion: security.istio.io/{version}\nkind: {kind}\nmetadata: {{name: p, namespace: foo}}\n"
                );
                let object = parse(&doc).unwrap_or_else(|e| panic!("{doc}: {e:?}"));
                crate::api::validate(&object).unwrap_or_else(|e| panic!("{doc}: {e}"));
            }
        }
        let err = parse(
            "apiVersion: security.istio.io/v1alpha1\nkind: PeerAuthentication\nmetadata: {name: p}\n",
        )
        .unwrap_err();
        assert_eq!(err.error.field, "apiVersion");
        assert!(err
            .error
            .reason
            .contains("security.istio.io/v1 or security.istio.io/v1beta1"));
        let err = parse(
            "apiVersion: networking.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n",
        )
        .unwrap_err();
        assert_eq!(err.error.field, "apiVersion");
    }

    #[test]
    fn the_one_validator_checks_metadata_and_spec() {
        let deny = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, annotations: {istio.io/dry-run: 'maybe'}}\nspec: {action: DENY, rules: [{}]}\n";
        let err = crate::api::validate(&parse(deny).unwrap()).unwrap_err();
        assert_eq!(err.field, "metadata.annotations[istio.io/dry-run]");
        let pa = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, annotations: {istio.io/dry-run: 'true'}}\n";
        let err = crate::api::validate(&parse(pa).unwrap()).unwrap_err();
        assert_eq!(err.field, "metadata.annotations[istio.io/dry-run]");
        let ra = "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{}]}\n";
        let err = crate::api::validate(&parse(ra).unwrap()).unwrap_err();
        assert_eq!(err.field, "spec.jwtRules[0].issuer");
        let ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: DENY}\n";
        let err = crate::api::validate(&parse(ap).unwrap()).unwrap_err();
        assert_eq!(err.field, "spec.rules");
    }

    fn meta(value: &str) -> ObjectMeta {
        ObjectMeta {
            annotations: Some(BTreeMap::from([(
                DRY_RUN_ANNOTATION.to_string(),
                value.to_string(),
            )])),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn dry_run_only_on_allow_and_deny_policies() {
        check_dry_run_annotation(&meta("true"), Some(Action::Deny)).unwrap();
        check_dry_run_annotation(&meta("F"), Some(Action::Allow)).unwrap();
        check_dry_run_annotation(&ObjectMeta::default(), None).unwrap();
        for (value, action, reason) in [
            ("yes", Some(Action::Allow), "invalid value"),
            (
                "true",
                Some(Action::Audit),
                "only supports action ALLOW/DENY",
            ),
            ("true", Some(Action::Custom), "found action CUSTOM"),
            ("true", None, "only an AuthorizationPolicy"),
        ] {
            let err = check_dry_run_annotation(&meta(value), action).unwrap_err();
            assert_eq!(err.field, "metadata.annotations[istio.io/dry-run]");
            assert!(err.reason.contains(reason), "{err}");
        }
    }
}
