//! A broker restart in the middle of a burst, with durable queues
//! configured: `tocsin serve` reconnects, declares and consumes again, and
//! no alarm is lost. Alone in its test binary: it restarts the shared
//! broker, which no other test may see.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::HashSet;
use std::time::Duration;

use tocsin_tests::broker::{TestVhost, eventually, rabbitmqctl};
use tocsin_tests::service::{Service, cli, test_config};
use tocsin_tests::webhook::{Reply, Webhook};

const TOCSIN: &str = env!("CARGO_BIN_EXE_tocsin");
const ALARMS: usize = 1000;

#[tokio::test]
async fn a_broker_restart_in_a_burst_loses_nothing_with_durable_queues() {
    let vhost = TestVhost::create();
    let sink = Webhook::start(Reply::Delayed(Duration::from_millis(20), Box::new(Reply::status(200))))
        .await
        .unwrap();
    let config = test_config(&vhost.transport_url(), "restart-host", "")
        .replace("[broker]\n", "[broker]\namqp_durable_queues = true\n");
    let service = Service::start(TOCSIN, &config).await;
    let count = ALARMS.to_string();
    cli(
        TOCSIN,
        &vhost.transport_url(),
        &["publish", "--count", &count, "--action", &sink.url("/restart")],
        &[("TOCSIN_BROKER__AMQP_DURABLE_QUEUES", "true")],
    )
    .await;

    let started = eventually(Duration::from_secs(30), async || sink.received().len() >= 100).await;
    assert!(started, "deliveries started: {}", service.log_text());
    let before_restart = sink.received().len();
    // On the blocking pool: the sink runs on this test's runtime and must
    // keep answering while the broker restarts, as a real receiver would.
    tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["-q", "stop_app"]);
        rabbitmqctl(&["-q", "start_app"]);
        rabbitmqctl(&["-q", "await_startup"]);
    })
    .await
    .unwrap();
    assert!(before_restart < ALARMS, "the restart must land in the middle of the burst");

    let mut ids = HashSet::new();
    let all = eventually(Duration::from_secs(90), async || {
        ids = sink
            .received()
            .iter()
            .filter_map(|r| r.header("x-openstack-request-id").map(str::to_owned))
            .collect();
        ids.len() >= ALARMS
    })
    .await;
    let requests = sink.received().len();
    println!(
        "broker restart: sent {ALARMS}, delivered {}, duplicates {}, lost {}, delivered before the restart {before_restart}",
        ids.len(),
        requests - ids.len(),
        ALARMS - ids.len().min(ALARMS)
    );
    assert!(all, "lost {}: {}", ALARMS - ids.len(), service.log_text());
    let reconnected = service.metric("tocsin_broker_connections_total").await;
    assert!(reconnected >= 2.0, "the service reconnected: {reconnected}");
    assert!(!service.lines_with("intake: Lost the broker; reconnecting.").is_empty());
}
