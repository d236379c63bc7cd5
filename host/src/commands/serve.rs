//! `tocsin serve`: the service ([`crate::service::run`]) on `api.listen`,
//! until SIGTERM or SIGINT.

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::Exit;
use crate::config::Config;

/// Runs the service: exit 0 after a clean shutdown.
///
/// # Errors
/// The API address cannot be bound, or the service fails (see
/// [`crate::service::run`]).
pub async fn run(config: Config) -> anyhow::Result<Exit> {
    let listener = TcpListener::bind(config.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", config.api.listen))?;
    crate::service::run(config, listener, signalled()).await?;
    Ok(Exit::Success)
}

/// Completes on the first SIGTERM or SIGINT.
async fn signalled() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "serve: Cannot watch SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    let signal = tokio::select! {
        () = terminate => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    tracing::info!(signal, "serve: Stopping.");
}
