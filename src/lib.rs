//! Rudder: a service-mesh control plane that drives stock Envoy with Istio's API.
//!
//! Data flows one way: `source -> index -> translate -> xds`. See
//! `../shared/design.md` for the map.
pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod ca;
pub mod cli;
pub mod index;
pub mod metrics;
pub mod model;
pub mod source;
pub mod translate;
pub mod webhook;
pub mod xds;
