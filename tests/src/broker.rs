//! The real RabbitMQ on 127.0.0.1:5672 for tests: each test gets its own
//! virtual host (created with `rabbitmqctl`, deleted when dropped), and a
//! plain AMQP client to publish exact bytes and read queues back.

use std::process::Command;
use std::time::Duration;

use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Runs `rabbitmqctl` with `args`, panicking with its output on failure;
/// returns what it printed.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl").args(args).output().unwrap_or_else(|error| {
        panic!("rabbitmqctl: {error} (is rabbitmq-server installed? run scripts/test)")
    });
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A virtual host of its own, deleted with everything in it when dropped.
#[derive(Debug)]
pub struct TestVhost {
    /// Its name.
    pub name: String,
}

impl TestVhost {
    /// Creates `tocsin-test-<uuid>` with full rights for guest.
    pub fn create() -> Self {
        let name = format!("tocsin-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["-q", "add_vhost", &name]);
        rabbitmqctl(&["-q", "set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        TestVhost { name }
    }

    /// oslo's `transport_url` of the vhost.
    pub fn transport_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// A plain AMQP connection to the vhost.
    pub async fn connect(&self) -> Connection {
        let uri = format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name);
        Connection::connect(&uri, ConnectionProperties::default())
            .await
            .unwrap_or_else(|error| panic!("cannot connect to RabbitMQ on 127.0.0.1:5672: {error}"))
    }

    /// Publishes `body` exactly as given and waits for the confirmation.
    pub async fn publish(&self, exchange: &str, routing_key: &str, properties: BasicProperties, body: &[u8]) {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap_or_else(|e| panic!("channel: {e}"));
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("confirms: {e}"));
        let confirmation = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap_or_else(|e| panic!("publish to {exchange}/{routing_key}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("confirm of {exchange}/{routing_key}: {e}"));
        assert!(confirmation.is_ack(), "the broker refused the message to {exchange}/{routing_key}");
        let _ = connection.close(200, "done".into()).await;
    }

    /// Takes every message from `queue` (acking them).
    pub async fn drain(&self, queue: &str) -> Vec<BasicGetMessage> {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap_or_else(|e| panic!("channel: {e}"));
        let mut messages = Vec::new();
        // Bounded: a test's queues hold far fewer than this.
        for _ in 0..100_000 {
            let got = channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .unwrap_or_else(|e| panic!("basic.get {queue}: {e}"));
            let Some(message) = got else { break };
            message.delivery.ack(BasicAckOptions::default()).await.unwrap_or_else(|e| panic!("ack: {e}"));
            messages.push(message);
        }
        let _ = connection.close(200, "done".into()).await;
        messages
    }

    /// Messages ready in `queue` (which must exist).
    pub async fn depth(&self, queue: &str) -> u32 {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap_or_else(|e| panic!("channel: {e}"));
        let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"));
        let _ = connection.close(200, "done".into()).await;
        declared.message_count()
    }
}

impl TestVhost {
    /// Messages of `queue` delivered to a consumer and not yet acked, as
    /// the broker counts them (`rabbitmqctl`, on the blocking pool: the
    /// test's sinks go on answering meanwhile).
    pub async fn unacknowledged(&self, queue: &str) -> u64 {
        let args =
            ["-q", "list_queues", "-p", &self.name, "--no-table-headers", "name", "messages_unacknowledged"]
                .map(str::to_owned);
        let listing = tokio::task::spawn_blocking(move || rabbitmqctl(&args.each_ref().map(String::as_str)))
            .await
            .unwrap_or_else(|error| panic!("rabbitmqctl list_queues: {error}"));
        listing
            .lines()
            .find_map(|line| line.strip_prefix(queue)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("queue {queue} not listed: {listing}"))
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        // Best effort: a vhost left behind by a crashed test is harmless.
        let _ = Command::new("rabbitmqctl").args(["-q", "delete_vhost", &self.name]).output();
    }
}

/// Polls `check` every 50 ms until it is true or `limit` passes; returns
/// its last answer.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
