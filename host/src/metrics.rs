//! The Prometheus metrics `tocsin serve` exposes on `/metrics`, with a
//! small label set (plugin, tenant, outcome), so their number stays
//! bounded whatever the traffic: a notifier's series go when it is
//! deleted ([`Metrics::forget_plugin`]).
//!
//! Two views: the whole one, for holders of the metrics or the operator's
//! token, and the [`View::Public`] one, which leaves out every series of a
//! tenant's notifier (a tenant's scheme carries its name) and shows their
//! deliveries only summed (`tocsin_tenant_deliveries_total`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tocsin_core::limits::Limit;

/// Labels of one delivery's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The plugin's name (`-` when no plugin was resolved).
    pub plugin: String,
    /// Its tenant (empty for the platform's).
    pub tenant: String,
    /// `delivered`, `retryable` or `failed` (an attempt that failed),
    /// `deferred` (no slot came free), `dead_lettered` (no plugin).
    pub outcome: &'static str,
}

/// Labels of a limit a plugin hit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimitLabels {
    /// The plugin's name (an uploaded notifier's is its scheme).
    pub plugin: String,
    /// Its tenant (empty for the platform's).
    pub tenant: String,
    /// Which limit (`memory`, `cpu`, `deadline`, `log`, `http`, …).
    pub limit: &'static str,
}

/// Labels of a plugin and its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OwnedPluginLabels {
    /// The plugin's name (an uploaded notifier's is its scheme).
    pub plugin: String,
    /// Its tenant (empty for the platform's).
    pub tenant: String,
}

/// Labels of the tenants' deliveries, summed over the tenants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// As [`DeliveryLabels::outcome`].
    pub outcome: &'static str,
}

/// Labels of a request the API refused before answering it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The caller's tenant (empty for the operator).
    pub tenant: String,
    /// `rate` or `at_once`.
    pub reason: &'static str,
}

/// Labels of a received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MessageLabels {
    /// `cast`, `call`, `notification`, `retry` or `unknown`.
    pub kind: &'static str,
    /// `accepted`, `ignored`, `duplicate`, `no_action`, `undecodable`.
    pub outcome: &'static str,
}

/// Labels of a dead letter or a retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A short stable code (`permanent`, `gave-up`, `unknown-scheme`, a
    /// decode error code, or a tier such as `5s` for retries).
    pub reason: String,
}

/// Labels of a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue consumed.
    pub queue: String,
}

/// The outcomes a plugin's deliveries are counted under.
const PLUGIN_OUTCOMES: [&str; 4] = ["delivered", "retryable", "failed", "deferred"];

/// Which series an encoding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Every series.
    Whole,
    /// None that names a tenant: for callers without a token.
    Public,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.5, 16))
}

/// Every metric of the service, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Deliveries by plugin and outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Deliveries of all tenants' notifiers, by outcome: what the public
    /// view shows of them.
    pub tenant_deliveries: Family<OutcomeLabels, Counter>,
    /// Time of one attempt, by plugin, in seconds.
    pub delivery_seconds: Family<OwnedPluginLabels, Histogram, fn() -> Histogram>,
    /// Calls that hit a limit, by plugin and limit (a call can hit several).
    pub limit_hits: Family<LimitLabels, Counter>,
    /// Log lines the log caps dropped, by plugin.
    pub log_lines_dropped: Family<OwnedPluginLabels, Counter>,
    /// API requests refused by the callers' limits, by caller and reason.
    pub api_refusals: Family<RefusalLabels, Counter>,
    /// Messages received, by kind and outcome.
    pub messages: Family<MessageLabels, Counter>,
    /// Retries scheduled, by tier.
    pub retries: Family<ReasonLabels, Counter>,
    /// Dead letters written, by reason.
    pub dead_letters: Family<ReasonLabels, Counter>,
    /// 1 while the queue has a consumer, 0 otherwise.
    pub consumers: Family<QueueLabels, Gauge>,
    /// 1 while connected to the broker.
    pub broker_connected: Gauge,
    /// Connections to the broker made since start.
    pub broker_connections: Counter,
    /// Messages the broker delivered again (after a crash or a lost
    /// connection): their deliveries may repeat, with the same ids.
    pub redeliveries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tocsin");
        let metrics = Metrics {
            deliveries: Family::default(),
            tenant_deliveries: Family::default(),
            delivery_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            limit_hits: Family::default(),
            log_lines_dropped: Family::default(),
            api_refusals: Family::default(),
            messages: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            consumers: Family::default(),
            broker_connected: Gauge::default(),
            broker_connections: Counter::default(),
            redeliveries: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("deliveries", "Deliveries by plugin and outcome", metrics.deliveries.clone());
        registry.register(
            "tenant_deliveries",
            "Deliveries of all tenants' notifiers, by outcome",
            metrics.tenant_deliveries.clone(),
        );
        registry.register(
            "delivery_duration_seconds",
            "Time of one delivery attempt in the sandbox",
            metrics.delivery_seconds.clone(),
        );
        registry.register("limit_hits", "Plugin calls that hit a limit", metrics.limit_hits.clone());
        registry.register(
            "log_lines_dropped",
            "Plugin log lines dropped by the log caps",
            metrics.log_lines_dropped.clone(),
        );
        registry.register(
            "api_refusals",
            "API requests refused by the caller's request limits",
            metrics.api_refusals.clone(),
        );
        registry.register("messages", "OpenStack and retry messages received", metrics.messages.clone());
        registry.register("retries", "Retries scheduled, by tier", metrics.retries.clone());
        registry.register(
            "dead_letters",
            "Messages and deliveries dead-lettered",
            metrics.dead_letters.clone(),
        );
        registry.register("consumer_active", "1 while the queue is consumed", metrics.consumers.clone());
        registry.register(
            "broker_connected",
            "1 while connected to the broker",
            metrics.broker_connected.clone(),
        );
        registry.register(
            "broker_connections",
            "Broker connections opened",
            metrics.broker_connections.clone(),
        );
        registry.register(
            "redeliveries",
            "Messages the broker delivered again",
            metrics.redeliveries.clone(),
        );
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// Counts a delivery outcome of `plugin`.
    pub fn delivery(&self, plugin: &str, tenant: Option<&str>, outcome: &'static str) {
        let labels = DeliveryLabels {
            plugin: plugin.to_owned(),
            tenant: tenant.unwrap_or_default().to_owned(),
            outcome,
        };
        self.deliveries.get_or_create(&labels).inc();
        if tenant.is_some() {
            self.tenant_deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
        }
    }

    /// Records how long one attempt of `plugin` took.
    pub(crate) fn delivery_time(&self, plugin: &str, tenant: Option<&str>, seconds: f64) {
        let labels =
            OwnedPluginLabels { plugin: plugin.to_owned(), tenant: tenant.unwrap_or_default().to_owned() };
        self.delivery_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Drops every series of `tenant`'s `plugin`: its notifier is gone,
    /// and its series would otherwise stay, naming it, for the life of the
    /// process.
    pub fn forget_plugin(&self, plugin: &str, tenant: Option<&str>) {
        let owned =
            OwnedPluginLabels { plugin: plugin.to_owned(), tenant: tenant.unwrap_or_default().to_owned() };
        for outcome in PLUGIN_OUTCOMES {
            self.deliveries.remove(&DeliveryLabels {
                plugin: owned.plugin.clone(),
                tenant: owned.tenant.clone(),
                outcome,
            });
        }
        for limit in Limit::ALL {
            let labels = LimitLabels {
                plugin: owned.plugin.clone(),
                tenant: owned.tenant.clone(),
                limit: limit.name(),
            };
            self.limit_hits.remove(&labels);
        }
        self.log_lines_dropped.remove(&owned);
        self.delivery_seconds.remove(&owned);
    }

    /// Records what one call of `plugin` ran into: the limits it hit and
    /// the log lines it lost.
    pub(crate) fn call_costs(
        &self,
        plugin: &str,
        tenant: Option<&str>,
        limits_hit: &[Limit],
        log_dropped: u64,
    ) {
        let tenant = tenant.unwrap_or_default();
        for limit in limits_hit {
            let labels =
                LimitLabels { plugin: plugin.to_owned(), tenant: tenant.to_owned(), limit: limit.name() };
            self.limit_hits.get_or_create(&labels).inc();
        }
        if log_dropped > 0 {
            let labels = OwnedPluginLabels { plugin: plugin.to_owned(), tenant: tenant.to_owned() };
            self.log_lines_dropped.get_or_create(&labels).inc_by(log_dropped);
        }
    }

    /// The delivery outcomes of `plugin` counted on this host, by outcome.
    pub(crate) fn delivery_counts(
        &self,
        plugin: &str,
        tenant: Option<&str>,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        let tenant = tenant.unwrap_or_default();
        PLUGIN_OUTCOMES
            .into_iter()
            .map(|outcome| {
                let labels = DeliveryLabels { plugin: plugin.to_owned(), tenant: tenant.to_owned(), outcome };
                (outcome, self.deliveries.get(&labels).map_or(0, |counter| counter.get()))
            })
            .collect()
    }

    /// Counts an API request refused by `tenant`'s limits (none: the
    /// operator's) for `reason`.
    pub(crate) fn api_refusal(&self, tenant: Option<&str>, reason: &'static str) {
        let labels = RefusalLabels { tenant: tenant.unwrap_or_default().to_owned(), reason };
        self.api_refusals.get_or_create(&labels).inc();
    }

    /// Counts a received message.
    pub fn message(&self, kind: &'static str, outcome: &'static str) {
        self.messages.get_or_create(&MessageLabels { kind, outcome }).inc();
    }

    /// Counts a dead letter.
    pub(crate) fn dead_letter(&self, reason: &str) {
        self.dead_letters.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// The text exposition format, of `view`'s series.
    pub fn encode(&self, view: View) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        match view {
            View::Whole => text,
            View::Public => {
                let mut public = String::with_capacity(text.len());
                for line in text.lines().filter(|line| !names_a_tenant(line)) {
                    public.push_str(line);
                    public.push('\n');
                }
                public
            }
        }
    }
}

/// Whether a line of the text format is a series of a tenant's notifier:
/// its `tenant` label is set. (Label values here are tenant names and
/// schemes, which hold no quote, so the text needs no unescaping.)
fn names_a_tenant(line: &str) -> bool {
    !line.starts_with('#')
        && ["{tenant=\"", ",tenant=\""]
            .iter()
            .any(|label| line.split(label).skip(1).any(|value| !value.starts_with('"')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_of(text: &str, plugin: &str) -> Vec<String> {
        text.lines().filter(|line| line.contains(plugin)).map(str::to_owned).collect()
    }

    #[test]
    fn the_public_view_names_no_tenant_and_sums_their_deliveries() {
        let metrics = Metrics::default();
        for (plugin, tenant) in [("http", None), ("acme-chat", Some("acme")), ("globex-x", Some("globex"))] {
            metrics.delivery(plugin, tenant, "delivered");
            metrics.delivery_time(plugin, tenant, 0.01);
            metrics.call_costs(plugin, tenant, &[Limit::Log], 3);
        }
        let whole = metrics.encode(View::Whole);
        let public = metrics.encode(View::Public);
        assert_eq!(series_of(&whole, "acme").len(), series_of(&whole, "globex").len());
        assert!(series_of(&whole, "acme").len() > 20, "deliveries, buckets, limits, dropped lines: {whole}");
        for tenant in ["acme", "globex"] {
            assert!(series_of(&public, tenant).is_empty(), "{public}");
        }
        assert_eq!(series_of(&public, "plugin=\"http\""), series_of(&whole, "plugin=\"http\""));
        assert!(public.contains("tocsin_tenant_deliveries_total{outcome=\"delivered\"} 2"), "{public}");
        assert!(public.contains("# TYPE tocsin_deliveries counter"), "families stay declared: {public}");
    }

    #[test]
    fn a_forgotten_plugin_leaves_no_series() {
        let metrics = Metrics::default();
        for outcome in PLUGIN_OUTCOMES {
            metrics.delivery("acme-chat", Some("acme"), outcome);
        }
        metrics.delivery_time("acme-chat", Some("acme"), 0.01);
        metrics.call_costs("acme-chat", Some("acme"), Limit::ALL, 1);
        metrics.delivery("acme-other", Some("acme"), "delivered");
        metrics.forget_plugin("acme-chat", Some("acme"));
        let whole = metrics.encode(View::Whole);
        assert!(series_of(&whole, "acme-chat").is_empty(), "{whole}");
        assert_eq!(series_of(&whole, "acme-other").len(), 1, "{whole}");
        assert_eq!(metrics.delivery_counts("acme-chat", Some("acme"))["delivered"], 0);
        assert!(series_of(&metrics.encode(View::Whole), "acme-chat").is_empty(), "reading counts adds none");
    }
}
