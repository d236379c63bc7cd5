//! A fixed table of names standing in for DNS, so tests can point names at
//! internal addresses (what a hostile DNS record would do) without any
//! resolver outside the test.

use std::collections::HashMap;
use std::net::IpAddr;

use tocsin::capabilities::egress::{Lookup, NameLookup};

/// Names and the addresses they resolve to; any other name does not
/// resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticNames {
    table: HashMap<String, Vec<IpAddr>>,
}

impl StaticNames {
    /// A table of `(name, addresses)`.
    pub fn new(entries: &[(&str, &[&str])]) -> Self {
        let table = entries
            .iter()
            .map(|(name, addresses)| {
                let parsed = addresses
                    .iter()
                    .map(|address| address.parse().unwrap_or_else(|e| panic!("{address}: {e}")))
                    .collect();
                (name.to_ascii_lowercase(), parsed)
            })
            .collect();
        StaticNames { table }
    }
}

impl NameLookup for StaticNames {
    fn lookup(&self, host: &str) -> Lookup {
        let found = self.table.get(&host.trim_end_matches('.').to_ascii_lowercase()).cloned();
        let host = host.to_owned();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} is not in the test's names"),
                )
            })
        })
    }
}
