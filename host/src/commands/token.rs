//! `tocsin token`: a new bearer token for the API, and the hash that goes
//! into the configuration.

use tocsin_core::tenancy::TokenHash;

use super::Exit;
use crate::api::auth::new_token;

/// Prints a new token and its SHA-256 as JSON.
pub fn run() -> Exit {
    let token = new_token();
    let line = serde_json::json!({"token": token, "sha256": TokenHash::of(&token).to_hex()});
    println!("{line}");
    Exit::Success
}
