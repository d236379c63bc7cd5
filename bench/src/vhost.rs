//! A RabbitMQ virtual host of the run's own on the broker at 127.0.0.1:5672,
//! made with `rabbitmqctl` and deleted, with everything in it, when dropped.
//! (The integration tests' harness has its own, which panics; a benchmark
//! run reports errors, and must not pull the tests' TLS crates into the
//! release build it measures.)

use std::process::Command;

use anyhow::{Context as _, ensure};

/// The run's virtual host.
#[derive(Debug)]
pub struct Vhost {
    name: String,
}

impl Vhost {
    /// Creates `tocsin-peer-bench-<uuid>`, with all rights for `guest`.
    ///
    /// # Errors
    /// `rabbitmqctl` is missing or fails.
    pub fn create() -> anyhow::Result<Vhost> {
        let name = format!("tocsin-peer-bench-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name])?;
        // Deleted from here on, whatever fails next.
        let vhost = Vhost { name };
        rabbitmqctl(&["set_permissions", "-p", &vhost.name, "guest", ".*", ".*", ".*"])?;
        Ok(vhost)
    }

    /// oslo's `transport_url` of the vhost.
    pub fn transport_url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// The AMQP URI of the vhost.
    pub fn amqp_uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(error) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("    cannot delete vhost {}: {error:#}", self.name);
        }
    }
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    // Bounded: a wedged broker must not hang the run (or its clean-up).
    let output = Command::new("timeout")
        .args(["60", "rabbitmqctl", "-q"])
        .args(args)
        .output()
        .context("cannot run rabbitmqctl (scripts/peer-bench installs RabbitMQ)")?;
    ensure!(
        output.status.success(),
        "rabbitmqctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
