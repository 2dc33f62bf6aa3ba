//! In-process ADS tests: the real index, fed Kubernetes YAML, drives the real
//! server on a loopback port, and a tonic client plays Envoy (ACK, NACK,
//! reconnect, SotW and Delta). Every receive has a timeout, so a server that
//! hangs fails the test instead of blocking it.

mod cache;
mod csr;
mod delta;
mod envoy;
mod harness;
mod identity;
mod races;
mod sotw;
