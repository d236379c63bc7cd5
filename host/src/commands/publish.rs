//! `tocsin publish`: sends alarm messages as an OpenStack evaluator does,
//! byte-compatible with oslo.messaging (same exchange, routing key,
//! properties and envelope), for quick starts, smoke tests and
//! benchmarks. Prints one JSON line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use serde_json::json;

use super::Exit;
use super::notify::read_alarm;
use crate::amqp::transport::Broker;
use crate::config::Config;
use crate::intake::topology::Topology;
use crate::message::{self, Stamps, WireFormat};

/// Confirms awaited at once: bounds memory while keeping the pipe full.
const CONFIRM_BATCH: usize = 1024;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishArgs {
    /// RPC cast or notification.
    pub format: WireFormat,
    /// Alarm JSON file, `-` for stdin, none for the sample alarm.
    pub alarm: Option<PathBuf>,
    /// The alarm's action URLs.
    pub actions: Vec<String>,
    /// Messages to send, each with fresh ids.
    pub count: u32,
}

/// The AMQP properties oslo.messaging gives an alarm message: JSON in
/// UTF-8, persistent, priority 0, empty headers.
pub fn oslo_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default())
}

/// Publishes and waits for the broker's confirmations: exit 0 when all
/// were confirmed.
///
/// # Errors
/// Bad input, no broker, or a declaration mismatch.
pub async fn run(config: &Config, args: PublishArgs) -> anyhow::Result<Exit> {
    if args.actions.is_empty() {
        bail!("give at least one --action");
    }
    let alarm = read_alarm(args.alarm.as_deref())?;
    let broker = Broker::new(&config.broker)?;
    let connection = broker.connect("tocsin publish").await.map_err(|e| anyhow::anyhow!(e))?;
    let channel = connection.create_channel().await.context("cannot open a channel")?;
    Topology::new(&config.intake_settings())
        .publisher(&config.intake, args.format)
        .declare(&channel, config.broker.passive_declare)
        .await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.context("cannot enable confirms")?;
    let (exchange, routing_key) = match args.format {
        WireFormat::Rpc => (&config.intake.rpc.exchange, config.intake.rpc.topic.clone()),
        WireFormat::Notification => {
            (&config.intake.notification.exchange, config.intake.notification.queue())
        }
    };
    let properties = oslo_properties();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(CONFIRM_BATCH);
    let mut refused = 0usize;
    for sent in 0..args.count {
        let body = message::encode(args.format, &alarm, &args.actions, &Stamps::fresh());
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties.clone(),
            )
            .await
            .with_context(|| format!("publishing message {}", sent + 1))?;
        pending.push(confirm);
        if pending.len() == CONFIRM_BATCH || sent + 1 == args.count {
            for confirm in pending.drain(..) {
                if !confirm.await.context("waiting for the broker's confirmation")?.is_ack() {
                    refused += 1;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let _ = connection.close(200, "done".into()).await;
    println!(
        "{}",
        json!({
            "published": args.count as usize - refused,
            "refused": refused,
            "format": match args.format { WireFormat::Rpc => "rpc", WireFormat::Notification => "notification" },
            "exchange": exchange,
            "routing_key": routing_key,
            "elapsed_ms": elapsed.as_secs_f64() * 1e3,
        })
    );
    Ok(if refused == 0 { Exit::Success } else { Exit::Failure })
}
