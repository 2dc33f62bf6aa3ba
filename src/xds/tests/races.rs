//! A new snapshot and a request can reach a stream at the same moment (a
//! busy proxy answers its last response while the mesh changes). Whichever
//! the stream handles first, the new snapshot must still be pushed.
//!
//! A push waits for the proxy to answer the previous response of its type,
//! so each round leaves one response unanswered while the mesh changes
//! FILL times (those pushes are held back), then sends the answer and one
//! more change together: `tokio::select!` picks either first, at random, so
//! several rounds exercise both orders. The fake Envoy advertises a tiny
//! HTTP/2 window, so the responses it does not read stay unwritten. A proxy
//! that keeps answering must end at the final endpoints, and be sent at
//! most two responses for all those changes: one released by its answer,
//! and one for a change that came after. (Before pushes waited for answers,
//! the stream task blocked on its full outgoing queue instead; both tests
//! failed in round 0 against the code before "xds: diff every subscribed
//! type on each snapshot change".)

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use tonic::transport::Endpoint;

use super::harness::*;

const ROUNDS: usize = 8;
/// Endpoint changes per round while a response is unanswered: more than the
/// stream's outgoing queue holds, so a stream sending each one would block.
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

/// Changes web's endpoints FILL times, waiting for each publish.
async fn change_while_busy(h: &Harness, round: usize) {
    for i in 0..FILL {
        h.apply(&mesh_with_web(&web_ips(round * 16 + i))).await;
    }
}

fn expected(ips: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ips.iter().map(|ip| format!("{ip}:9080")).collect();
    out.sort();
    out
}

/// At most this many responses for one round's changes (see above).
const MAX_RESPONSES: usize = 2;

#[tokio::test]
async fn sotw_snapshot_arriving_with_a_request_is_still_pushed() {
    let h = Harness::start(&mesh_with_web(&web_ips(250))).await;
    let mut envoy = Envoy::connect(slow_endpoint(&h), NODE).await;
    envoy.request(EDS, &[WEB]).await;
    let mut last = envoy.recv_type(EDS).await;
    envoy.ack(&last).await;
    h.apply(&mesh_with_web(&web_ips(240))).await;
    last = envoy.recv_type(EDS).await;

    for round in 0..ROUNDS {
        change_while_busy(&h, round).await;
        let final_ips = web_ips(200 + round);
        // Envoy answers the response it holds as the mesh changes once more.
        let final_mesh = mesh_with_web(&final_ips);
        tokio::join!(envoy.ack(&last), h.apply(&final_mesh));
        let mut responses = 0;
        loop {
            let pushed = envoy.recv_burst().await;
            responses += pushed.len();
            last = pushed.last().expect("at least one response").clone();
            if addresses(&assignment(&last.resources, WEB)) == expected(&final_ips) {
                break;
            }
            assert!(
                responses < MAX_RESPONSES,
                "round {round}: {responses} responses, the last at version {} while the index is at {}, \
                 and still not the latest endpoints",
                last.version_info,
                h.version()
            );
            envoy.ack(&last).await;
        }
        assert!(
            responses <= MAX_RESPONSES,
            "round {round}: {responses} responses"
        );
        // The next round starts with `last` unanswered.
    }
    envoy.ack(&last).await;
    envoy.assert_silent("after ACKing the latest").await;
}

#[tokio::test]
async fn delta_snapshot_arriving_with_an_ack_is_still_pushed() {
    let h = Harness::start(&mesh_with_web(&web_ips(250))).await;
    let mut envoy = DeltaEnvoy::connect(slow_endpoint(&h), NODE).await;
    envoy.subscribe(EDS, &[WEB], &[]).await;
    let mut last = envoy.recv_type(EDS).await;
    envoy.ack(&last).await;
    h.apply(&mesh_with_web(&web_ips(240))).await;
    last = envoy.recv_type(EDS).await;

    let web_of = |r: &DeltaDiscoveryResponse| {
        r.resources
            .iter()
            .find(|r| r.name == WEB)
            .map(|web| addresses(&decode(web.resource.as_ref().expect("a body"))))
    };
    for round in 0..ROUNDS {
        change_while_busy(&h, round).await;
        let final_ips = web_ips(200 + round);
        let final_mesh = mesh_with_web(&final_ips);
        tokio::join!(envoy.ack(&last), h.apply(&final_mesh));
        let mut responses = 0;
        loop {
            let pushed = envoy.recv_burst().await;
            responses += pushed.len();
            last = pushed.last().expect("at least one response").clone();
            if web_of(&last) == Some(expected(&final_ips)) {
                break;
            }
            assert!(
                responses < MAX_RESPONSES,
                "round {round}: {responses} responses, the last {}, while the index is at {}, \
                 and still not the latest endpoints",
                describe_delta(&last),
                h.version()
            );
            envoy.ack(&last).await;
        }
        assert!(
            responses <= MAX_RESPONSES,
            "round {round}: {responses} responses"
        );
    }
    envoy.ack(&last).await;
    envoy.assert_silent("after ACKing the latest").await;
}
