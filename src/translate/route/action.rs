//! VirtualService route actions -> Envoy Route actions: weighted destinations,
//! redirects, direct responses, rewrites, timeouts, retries and mirrors.

use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, DataSource, HeaderValue,
    HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action,
    retry_policy::{retry_host_predicate, retry_priority, RetryHostPredicate, RetryPriority},
    route, route_action,
    weighted_cluster::ClusterWeight,
    DirectResponseAction, RedirectAction, RetryPolicy, RouteAction, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;

use super::matching::regex;
use crate::model::routing::{
    HeaderEdits, HttpAction, HttpMatch, HttpRoute, Redirect, Retry, StringMatch,
};
use crate::translate::{duration, seconds};

/// Resolves a destination to its cluster name (`outbound|PORT|SUBSET|HOST`).
pub trait ClusterNamer {
    fn cluster(&self, d: &crate::model::routing::Destination) -> String;
}

pub fn action(r: &HttpRoute, m: Option<&HttpMatch>, clusters: &dyn ClusterNamer) -> route::Action {
    match &r.action {
        HttpAction::Redirect(redirect) => route::Action::Redirect(redirect_action(redirect, m)),
        // Expanded by the caller; reaching here means the delegate is missing.
        HttpAction::Delegate(_) => route::Action::DirectResponse(DirectResponseAction {
            status: 404,
            ..Default::default()
        }),
        HttpAction::DirectResponse { status, body } => {
            route::Action::DirectResponse(DirectResponseAction {
                status: (*status).into(),
                body: body.as_ref().map(|b| DataSource {
                    specifier: Some(data_source::Specifier::InlineString(b.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        HttpAction::Route(dests) => {
            let cluster_specifier = if dests.len() == 1
                && dests[0].headers.request.is_empty()
                && dests[0].headers.response.is_empty()
            {
                route_action::ClusterSpecifier::Cluster(clusters.cluster(&dests[0].destination))
            } else {
                route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                    clusters: dests
                        .iter()
                        .map(|d| ClusterWeight {
                            name: clusters.cluster(&d.destination),
                            weight: Some(UInt32Value { value: d.weight }),
                            request_headers_to_add: header_options(&d.headers.request),
                            request_headers_to_remove: d.headers.request.remove.clone(),
                            response_headers_to_add: header_options(&d.headers.response),
                            response_headers_to_remove: d.headers.response.remove.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
            };
            let mut action = RouteAction {
                cluster_specifier: Some(cluster_specifier),
                // Istio: no route timeout unless the VirtualService sets one.
                timeout: Some(r.timeout.map(duration).unwrap_or_else(|| seconds(0))),
                retry_policy: retry_policy(r.retries.as_ref()),
                request_mirror_policies: r
                    .mirrors
                    .iter()
                    .map(|mirror| route_action::RequestMirrorPolicy {
                        cluster: clusters.cluster(&mirror.destination),
                        runtime_fraction: Some(RuntimeFractionalPercent {
                            default_value: Some(FractionalPercent {
                                numerator: mirror.percent,
                                denominator: DenominatorType::Million as i32,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            if let Some(rw) = &r.rewrite {
                apply_rewrite(&mut action, rw, m);
            }
            route::Action::Route(action)
        }
    }
}

/// Istio: a uri rewrite replaces the matched prefix (or the whole path for an
/// exact match); with a regex rewrite the pattern's matches are substituted.
fn apply_rewrite(
    action: &mut RouteAction,
    rw: &crate::model::routing::Rewrite,
    m: Option<&HttpMatch>,
) {
    if let Some((pattern, substitution)) = &rw.uri_regex {
        action.regex_rewrite = Some(RegexMatchAndSubstitute {
            pattern: Some(regex(pattern)),
            substitution: substitution.clone(),
        });
    } else if let Some(uri) = &rw.uri {
        match m.and_then(|m| m.uri.as_ref()) {
            Some(StringMatch::Regex(pattern)) => {
                action.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(regex(pattern)),
                    substitution: uri.clone(),
                })
            }
            _ => action.prefix_rewrite = uri.clone(),
        }
    }
    if let Some(authority) = &rw.authority {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(authority.clone()),
        );
    }
}

fn redirect_action(r: &Redirect, m: Option<&HttpMatch>) -> RedirectAction {
    let response_code = match r.code {
        302 => redirect_action::RedirectResponseCode::Found,
        303 => redirect_action::RedirectResponseCode::SeeOther,
        307 => redirect_action::RedirectResponseCode::TemporaryRedirect,
        308 => redirect_action::RedirectResponseCode::PermanentRedirect,
        _ => redirect_action::RedirectResponseCode::MovedPermanently,
    };
    let path = r
        .uri
        .as_ref()
        .map(|uri| match m.and_then(|m| m.uri.as_ref()) {
            Some(StringMatch::Prefix(_)) => {
                redirect_action::PathRewriteSpecifier::PrefixRewrite(uri.clone())
            }
            _ => redirect_action::PathRewriteSpecifier::PathRedirect(uri.clone()),
        });
    RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        port_redirect: if r.derive_port {
            0
        } else {
            r.port.unwrap_or(0).into()
        },
        scheme_rewrite_specifier: r
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: path,
        response_code: response_code as i32,
        ..Default::default()
    }
}

/// A VirtualService's `retries`, or Istio's default when it sets none.
pub fn retry_policy(retry: Option<&Retry>) -> Option<RetryPolicy> {
    let default = Retry {
        attempts: 2,
        per_try_timeout: None,
        retry_on: None,
        retry_remote_localities: false,
    };
    let retry = retry.unwrap_or(&default);
    if retry.attempts == 0 {
        return None; // `attempts: 0` disables retries.
    }
    Some(RetryPolicy {
        retry_on: retry.retry_on.clone().unwrap_or_else(|| {
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
                .to_string()
        }),
        num_retries: Some(UInt32Value {
            value: retry.attempts,
        }),
        per_try_timeout: retry.per_try_timeout.map(duration),
        retriable_status_codes: vec![503],
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(pack_any(
                PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 5,
        retry_priority: retry.retry_remote_localities.then(remote_localities),
        ..Default::default()
    })
}

/// `retryRemoteLocalities`: retries move on to the next priority (the next
/// locality under locality failover) once a priority has had its attempts.
/// Istio lets each priority take two (update frequency 2).
fn remote_localities() -> RetryPriority {
    RetryPriority {
        name: "envoy.retry_priorities.previous_priorities".to_string(),
        config_type: Some(retry_priority::ConfigType::TypedConfig(pack_any(
            PreviousPrioritiesConfig {
                update_frequency: 2,
            },
        ))),
    }
}

/// `set` overwrites, `add` appends, as Istio's header operations do.
pub fn header_options(edits: &HeaderEdits) -> Vec<HeaderValueOption> {
    let set = edits
        .set
        .iter()
        .map(|(k, v)| (k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = edits
        .add
        .iter()
        .map(|(k, v)| (k, v, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add)
        .map(|(k, v, action)| HeaderValueOption {
            header: Some(HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        })
        .collect()
}
