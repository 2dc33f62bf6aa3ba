//! Istio's `RequestAuthentication`: which JSON Web Tokens a workload accepts
//! and where it finds them, field for field as
//! `istio.security.v1.RequestAuthentication` and `istio.security.v1.JWTRule`.

#[cfg(test)]
mod tests;

use std::sync::LazyLock;

use kube::CustomResource;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::target_ref::{check_policy_targets, PolicyTargetReference};
use crate::api::networking::selector::{check_istio_duration, IstioStatus, MatchLabelsSelector};
use crate::api::FieldError;

/// Request authentication configuration for workloads. See more details at:
/// https://istio.io/docs/reference/config/security/request_authentication.html
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "security.istio.io",
    version = "v1",
    kind = "RequestAuthentication",
    plural = "requestauthentications",
    namespaced,
    shortname = "ra",
    category = "istio-io",
    category = "security-istio-io",
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Request authentication configuration for workloads. See more details at: https://istio.io/docs/reference/config/security/request_authentication.html"
)]
#[serde(rename_all = "camelCase")]
pub struct RequestAuthenticationSpec {
    /// Optional. The selector decides where to apply the request
    /// authentication policy: workloads in the policy's namespace (in the root
    /// namespace: in all namespaces). If not set, it matches all workloads. At
    /// most one of `selector`, `targetRef` and `targetRefs` can be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MatchLabelsSelector>,
    /// Optional. The resource (a Gateway API `Gateway`, say) the policy
    /// applies to, in the policy's namespace. Prefer `targetRefs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Optional. The resources the policy applies to, in the policy's
    /// namespace. Waypoint proxies do not respect selectors even if they match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Define the list of JWTs that can be validated at the selected
    /// workloads' proxy. A valid token will be used to extract the
    /// authenticated identity. Each rule is activated only when a token is
    /// presented at the location it names; a token that fails validation
    /// rejects the request. Requests with several tokens are not supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

/// JSON Web Token (JWT) token format for authentication as defined by RFC
/// 7519: who issues it, which keys verify it, where it is found and what is
/// forwarded once it is verified.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtRule {
    /// Identifies the issuer that issued the JWT (its `iss` claim), e.g.
    /// `https://foobar.auth0.com` or `1234567-compute@developer.gserviceaccount.com`.
    /// A JWT with a different `iss` claim will be rejected. Required unless
    /// `jwksUri` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The list of JWT audiences (`aud` claim) that are allowed to access. A
    /// JWT containing any of these audiences will be accepted. The service
    /// name will be accepted if audiences is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// URL of the provider's public key set to validate signature of the JWT
    /// (http or https), e.g. `https://www.googleapis.com/oauth2/v1/certs`.
    /// Optional if the key set can be found by OpenID Discovery of the issuer.
    /// Only one of `jwksUri` and `jwks` should be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// `jwksUri` spelled as its protobuf field name, which Istio also accepts.
    /// Set at most one of `jwksUri`, `jwks_uri` and `jwks`.
    #[serde(default, rename = "jwks_uri", skip_serializing_if = "Option::is_none")]
    pub jwks_uri_field_name: Option<String>,
    /// JSON Web Key Set of public keys to validate signature of the JWT.
    /// Only one of `jwksUri` and `jwks` should be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// List of header locations from which JWT is expected, e.g.
    /// `{name: x-jwt-assertion, prefix: "Bearer "}`. Without any location,
    /// the `Authorization: Bearer` header and the `access_token` query
    /// parameter are tried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// List of query parameters from which JWT is expected, e.g. `my_token`
    /// for `/path?my_token=<JWT>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// List of cookie names from which JWT is expected, e.g. `session` for
    /// `Cookie: session=<JWT>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// This field specifies the header name to output a successfully verified
    /// JWT payload to the backend, as `base64_encoded(jwt_payload_in_JSON)`.
    /// If it is not specified, the payload will not be emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    /// If set to true, the original token will be kept for the upstream
    /// request. Default is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_original_token: Option<bool>,
    /// This field specifies a list of operations to copy the claim to HTTP
    /// headers on a successfully verified token, e.g.
    /// `{header: x-jwt-claim-group, claim: nested.key.group}`. Claims of type
    /// string, int or bool are supported; each header must be unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// The maximum amount of time that the resolver will spend waiting for
    /// the JWKS to be fetched, e.g. `5s` (the default). At least 1ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// This message specifies a header location to extract JWT token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtHeader {
    /// The HTTP header name.
    pub name: String,
    /// The prefix that should be stripped before decoding the token, e.g.
    /// `"Bearer "` (with the space). A header without this exact prefix is
    /// considered invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// This message specifies the detail for copying claim to header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The name of the header to be created. The header will be overridden if
    /// it already exists in the request.
    pub header: String,
    /// The name of the claim to be copied from. Only claim of type
    /// string/int/bool is supported. The header will not be there if the claim
    /// does not exist or its type is not supported.
    pub claim: String,
}

impl JwtRule {
    /// The JWKS URL, under either of its spellings.
    pub fn jwks_url(&self) -> Option<&str> {
        self.jwks_uri
            .as_deref()
            .or(self.jwks_uri_field_name.as_deref())
    }
}

/// At most this many `jwtRules` (Istio's CRD schema).
const MAX_JWT_RULES: usize = 4096;

/// The one validator for `RequestAuthentication` (Istio's
/// `ValidateRequestAuthentication` and the rules of its CRD schema).
pub fn validate(spec: &RequestAuthenticationSpec) -> Result<(), FieldError> {
    check_policy_targets(
        spec.selector.as_ref(),
        spec.target_ref.as_ref(),
        &spec.target_refs,
    )?;
    if spec.jwt_rules.len() > MAX_JWT_RULES {
        return Err(FieldError::new(
            "spec.jwtRules",
            format!("at most {MAX_JWT_RULES} jwtRules are allowed"),
        ));
    }
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        check_jwt_rule(&format!("spec.jwtRules[{i}]"), rule)?;
    }
    Ok(())
}

// Istio's `validateJwtRule`.
fn check_jwt_rule(field: &str, rule: &JwtRule) -> Result<(), FieldError> {
    let at = |name: &str| format!("{field}.{name}");
    match rule.issuer.as_deref() {
        Some("") => return Err(FieldError::new(at("issuer"), "issuer must not be empty")),
        None if rule.jwks_url().is_none() => {
            return Err(FieldError::new(
                at("issuer"),
                "issuer or jwksUri must be set",
            ))
        }
        _ => {}
    }
    check_non_empty(&at("audiences"), &rule.audiences, "audience")?;
    let key_sources = [
        ("jwksUri", rule.jwks_uri.is_some()),
        ("jwks_uri", rule.jwks_uri_field_name.is_some()),
        ("jwks", rule.jwks.is_some()),
    ];
    if let Some((name, _)) = key_sources.iter().filter(|(_, on)| *on).nth(1) {
        return Err(FieldError::new(
            at(name),
            "only one of jwks or jwksUri can be set",
        ));
    }
    for (name, uri) in [
        ("jwksUri", &rule.jwks_uri),
        ("jwks_uri", &rule.jwks_uri_field_name),
    ] {
        if let Some(uri) = uri {
            check_jwks_uri(&at(name), uri)?;
        }
    }
    if let Some(jwks) = &rule.jwks {
        check_jwks(&at("jwks"), jwks)?;
    }
    for (j, header) in rule.from_headers.iter().enumerate() {
        if header.name.is_empty() {
            return Err(FieldError::new(
                format!("{field}.fromHeaders[{j}].name"),
                "location header name must be non-empty string",
            ));
        }
    }
    check_non_empty(&at("fromParams"), &rule.from_params, "location query")?;
    check_non_empty(&at("fromCookies"), &rule.from_cookies, "cookie name")?;
    for (j, output) in rule.output_claim_to_headers.iter().enumerate() {
        let at = format!("{field}.outputClaimToHeaders[{j}]");
        check_strict_header_name(&format!("{at}.header"), &output.header)?;
        if output.claim.is_empty() {
            return Err(FieldError::new(
                format!("{at}.claim"),
                "claim must be non-empty string",
            ));
        }
    }
    if let Some(timeout) = &rule.timeout {
        check_istio_duration(&at("timeout"), timeout)?;
    }
    Ok(())
}

fn check_non_empty(field: &str, values: &[String], what: &str) -> Result<(), FieldError> {
    match values.iter().position(String::is_empty) {
        Some(j) => Err(FieldError::new(
            format!("{field}[{j}]"),
            format!("{what} must be non-empty string"),
        )),
        None => Ok(()),
    }
}

/// A JWKS URL (Istio's `security.ParseJwksURI` and its CRD rules): an
/// absolute `http://` or `https://` URL of at most 2048 characters.
fn check_jwks_uri(field: &str, uri: &str) -> Result<(), FieldError> {
    if uri.is_empty() {
        return Err(FieldError::new(field, "jwksUri must not be empty"));
    }
    if uri.len() > 2048 {
        return Err(FieldError::new(
            field,
            "jwksUri must be at most 2048 characters",
        ));
    }
    let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(FieldError::new(
            field,
            format!("{uri:?}: url must have scheme http:// or https://"),
        ));
    }
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| FieldError::new(field, format!("{uri:?} is not a valid URL: {e}")))?;
    if parsed.host().is_none_or(str::is_empty) {
        return Err(FieldError::new(field, format!("{uri:?} has no host")));
    }
    Ok(())
}

/// An inline JSON Web Key Set (Istio parses it with `jwk.Parse`): a JSON
/// key set `{"keys": [...]}` or a single key, every key with its `kty`.
fn check_jwks(field: &str, jwks: &str) -> Result<(), FieldError> {
    let bad = |why: String| FieldError::new(field, format!("jwks parse error: {why}"));
    let value: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| bad(format!("not JSON: {e}")))?;
    let keys = match value.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().collect(),
        Some(_) => return Err(bad("\"keys\" must be an array".into())),
        None if value.is_object() => vec![&value],
        None => return Err(bad("expected a JSON object".into())),
    };
    for (i, key) in keys.into_iter().enumerate() {
        if !key.get("kty").is_some_and(serde_json::Value::is_string) {
            return Err(bad(format!("key {i} has no \"kty\"")));
        }
    }
    Ok(())
}

// Istio's `validStrictHeaderNameRegex` (and the CRD's pattern for the header).
static STRICT_HEADER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-_A-Za-z0-9]+$").unwrap());

/// A header name Envoy can emit (Istio's `ValidateStrictHTTPHeaderName`):
/// letters, digits, `-` and `_` only, so no pseudo-header such as `:path`.
fn check_strict_header_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(
            field,
            "header name must be non-empty string",
        ));
    }
    if name.starts_with(':') {
        return Err(FieldError::new(
            field,
            format!("{name:?}: a pseudo-header cannot be set from a claim"),
        ));
    }
    if !STRICT_HEADER.is_match(name) {
        return Err(FieldError::new(
            field,
            format!(
                "header name {name:?} is not a valid header name: use letters, digits, '-' or '_'"
            ),
        ));
    }
    Ok(())
}
