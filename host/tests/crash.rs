//! At least once through a crash: `kill -9` of `tocsin serve` in the middle
//! of 1,000 alarms, then a restart; every action is delivered, duplicates
//! carry the same delivery (request) id and body.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::HashMap;
use std::time::Duration;

use tocsin_tests::broker::{TestVhost, eventually};
use tocsin_tests::service::{Service, cli, test_config};
use tocsin_tests::webhook::{Reply, Webhook};

const TOCSIN: &str = env!("CARGO_BIN_EXE_tocsin");
const ALARMS: usize = 1000;

#[tokio::test]
async fn kill_9_in_the_middle_of_1000_alarms_loses_none() {
    let vhost = TestVhost::create();
    // A 20 ms sink keeps the burst going long enough to kill in the middle.
    let sink = Webhook::start(Reply::Delayed(Duration::from_millis(20), Box::new(Reply::status(200))))
        .await
        .unwrap();
    let config = test_config(&vhost.transport_url(), "crash-host", "");
    let mut first = Service::start(TOCSIN, &config).await;
    let count = ALARMS.to_string();
    cli(
        TOCSIN,
        &vhost.transport_url(),
        &["publish", "--count", &count, "--action", &sink.url("/crash")],
        &[],
    )
    .await;

    let started = eventually(Duration::from_secs(30), async || sink.received().len() >= 100).await;
    assert!(started, "deliveries started: {}", first.log_text());
    first.kill();
    let at_kill = sink.received().len();
    assert!(at_kill < ALARMS, "the kill must land in the middle of the burst ({at_kill} delivered)");

    let second = Service::start(TOCSIN, &config).await;
    let mut by_request: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let all = eventually(Duration::from_secs(60), async || {
        by_request.clear();
        for request in sink.received() {
            let id = request.header("x-openstack-request-id").unwrap().to_owned();
            by_request.entry(id).or_default().push(request.body);
        }
        by_request.len() >= ALARMS
    })
    .await;
    let delivered = by_request.len();
    let requests: usize = by_request.values().map(Vec::len).sum();
    let duplicates = requests - delivered;
    println!(
        "kill -9: sent {ALARMS}, delivered {delivered}, duplicates {duplicates}, lost {}, \
         delivered before the kill {at_kill}",
        ALARMS - delivered.min(ALARMS)
    );
    assert!(all, "lost {} alarms: {}", ALARMS - delivered, second.log_text());
    assert_eq!(delivered, ALARMS);
    for bodies in by_request.values() {
        assert!(bodies.iter().all(|body| *body == bodies[0]), "a duplicate carries the same body");
    }
    assert!(duplicates <= 2 * 16, "duplicates are bounded by what was in flight: {duplicates}");
    let redelivered = second.metric("tocsin_redeliveries_total").await;
    assert!(
        redelivered >= duplicates as f64 && redelivered > 0.0,
        "redeliveries counted: {redelivered}: {}",
        second.get("/metrics").await.1
    );
    assert_eq!(vhost.depth("alarming.sample").await, 0);
}
