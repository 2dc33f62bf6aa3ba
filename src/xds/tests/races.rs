//! A new snapshot and a request can reach a stream at the same moment (a
//! busy proxy ACKs an older response while the mesh changes). Whichever the
//! stream handles first, the new snapshot must still be pushed.
//!
//! To make "at the same moment" happen on purpose, the fake Envoy advertises
//! a tiny HTTP/2 window and stops reading: the server's writes stall, the
//! stream task waits on its full outgoing queue, and meanwhile the final mesh
//! change is published and the proxy's request arrives. When the test reads
//! again, both are ready together and the stream picks one at random
//! (`tokio::select!`), so each round has an even chance to expose a lost
//! push; several rounds make a miss very unlikely. (Both tests failed in
//! round 0 on every run against the code before "xds: diff every subscribed
//! type on each snapshot change".)

use std::time::Duration;

use tonic::transport::Endpoint;

use super::harness::*;

const ROUNDS: usize = 8;
/// Endpoint changes per round: more unread pushes than the window and the
/// stream's outgoing queue hold.
const FILL: usize = 10;

/// Forty endpoints, so each load assignment is bigger than the window.
fn web_ips(third_octet: usize) -> Vec<String> {
    (1..=40)
        .map(|i| format!("198.18.{third_octet}.{i}"))
        .collect()
}

fn mesh_with_web(ips: &[String]) -> String {
    let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
    mesh(&ips, API_IPS)
}

fn slow_endpoint(h: &Harness) -> Endpoint {
    Endpoint::from_shared(h.url())
        .expect("url")
        .initial_stream_window_size(1024u32)
}

/// Changes web's endpoints FILL times, then once more to `last`, waiting for
/// each publish; the stream must be stalled when this returns.
async fn stall_then_change(h: &Harness, round: usize, last: &[String]) {
    for i in 0..FILL {
        h.apply(&mesh_with_web(&web_ips(round * 16 + i))).await;
    }
    h.apply(&mesh_with_web(last)).await;
}

async fn assert_stalled(h: &Harness) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stream_at = h.only_status(NODE).snapshot_version;
    assert!(
        stream_at < h.version(),
        "test set-up: the stream should be stalled behind the latest snapshot {}, but it is at {stream_at}",
        h.version()
    );
}

fn expected(ips: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ips.iter().map(|ip| format!("{ip}:9080")).collect();
    out.sort();
    out
}

#[tokio::test]
async fn sotw_snapshot_arriving_with_a_request_is_still_pushed() {
    let h = Harness::start(&mesh_with_web(&web_ips(250))).await;
    let mut envoy = Envoy::connect(slow_endpoint(&h), NODE).await;
    envoy.request(EDS, &[WEB]).await;
    let mut last = envoy.recv_type(EDS).await;
    envoy.ack(&last).await;

    for round in 0..ROUNDS {
        let final_ips = web_ips(200 + round);
        stall_then_change(&h, round, &final_ips).await;
        // Envoy, behind, ACKs the last response it has read.
        envoy.ack(&last).await;
        assert_stalled(&h).await;

        let pushed = envoy.recv_burst().await;
        last = pushed.last().expect("at least one response").clone();
        let got = addresses(&assignment(&last.resources, WEB));
        assert!(
            got == expected(&final_ips),
            "round {round}: the stream stopped at an older snapshot; the latest endpoints were never pushed \
             (last EDS response has version {}, the index is at {})",
            last.version_info,
            h.version()
        );
        envoy.ack(&last).await;
    }
}

#[tokio::test]
async fn delta_snapshot_arriving_with_an_ack_is_still_pushed() {
    let h = Harness::start(&mesh_with_web(&web_ips(250))).await;
    let mut envoy = DeltaEnvoy::connect(slow_endpoint(&h), NODE).await;
    envoy.subscribe(EDS, &[WEB], &[]).await;
    let mut last = envoy.recv_type(EDS).await;
    envoy.ack(&last).await;

    for round in 0..ROUNDS {
        let final_ips = web_ips(200 + round);
        stall_then_change(&h, round, &final_ips).await;
        envoy.ack(&last).await;
        assert_stalled(&h).await;

        let pushed = envoy.recv_burst().await;
        last = pushed.last().expect("at least one response").clone();
        let web = last
            .resources
            .iter()
            .find(|r| r.name == WEB)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: last response lacks web: {}",
                    describe_delta(&last)
                )
            });
        let got = addresses(&decode(web.resource.as_ref().expect("a body")));
        assert!(
            got == expected(&final_ips),
            "round {round}: the stream stopped at an older snapshot; the latest endpoints were never pushed \
             (index at version {})",
            h.version()
        );
        envoy.ack(&last).await;
    }
}
