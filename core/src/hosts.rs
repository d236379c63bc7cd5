//! Host names as grants, policies and signing keys compare them.
//!
//! An operator writes `Hooks.Example.COM.` in one place and a URL carries
//! `hooks.example.com` in another: every comparison goes through
//! [`host_key`], and every configured entry is checked by
//! [`validate_host_entry`] so that it can ever match.

use std::net::IpAddr;

/// How hosts are compared in grants and policies: lower case, without a
/// trailing dot or IPv6 brackets, and addresses written as the URL parser
/// writes them (`Example.COM.` → `example.com`, `[::1]` → `::1`,
/// `::ffff:127.0.0.1` → `::ffff:7f00:1`).
pub fn host_key(host: &str) -> String {
    let trimmed = host.trim_end_matches('.');
    let bare = trimmed.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => url::Host::<String>::Ipv6(v6).to_string().trim_matches(['[', ']']).to_owned(),
        Err(_) => trimmed.to_ascii_lowercase(),
    }
}

/// [`host_key`] of a host the URL parser already parsed: no second parse.
pub fn url_host_key(host: &url::Host<&str>) -> String {
    match host {
        url::Host::Domain(name) => name.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(v4) => v4.to_string(),
        url::Host::Ipv6(v6) => url::Host::<String>::Ipv6(*v6).to_string().trim_matches(['[', ']']).to_owned(),
    }
}

/// Checks that a configured host entry is a bare host name or address in
/// the form URLs give it (no scheme, port, path or wildcard; `127.0.0.1`,
/// not `127.1`), so that it can ever match.
///
/// # Errors
/// A message naming what is wrong with `entry`.
pub fn validate_host_entry(entry: &str) -> Result<(), String> {
    let key = host_key(entry);
    if key.parse::<IpAddr>().is_ok() {
        return Ok(()); // `host_key` writes addresses as URLs do
    }
    let parsed = (!key.is_empty() && !key.contains(':'))
        .then(|| url::Host::parse(&key).ok())
        .flatten()
        .map(|host| host_key(&host.to_string()));
    let plain = |name: &str| name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    match parsed {
        Some(parsed) if parsed == key && plain(&key) => Ok(()),
        Some(parsed) if parsed != key && plain(&parsed) => {
            Err(format!("{entry:?} is written {parsed:?} in URLs; use that form"))
        }
        _ => Err(format!(
            "{entry:?} is not a bare host name or IP address (no scheme, port, path or wildcard)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_must_be_bare_hosts() {
        assert_eq!(host_key("[::1]"), "::1");
        assert_eq!(host_key("Hooks.Example.COM."), "hooks.example.com");
        assert_eq!(host_key("::ffff:127.0.0.1"), "::ffff:7f00:1");
        assert_eq!(host_key("0:0::1"), "::1");
        for good in
            ["hooks.example.com", "127.0.0.1", "::1", "[::1]", "::ffff:127.0.0.1", "Hooks.Example.com"]
        {
            assert!(validate_host_entry(good).is_ok(), "{good}");
        }
        for bad in [
            "hooks.example.com:8443",
            "https://hooks.example.com",
            "a/b",
            "u@h",
            "",
            "127.1",
            "*.example.com",
        ] {
            assert!(validate_host_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_parsed_url_host_keys_as_its_text_does() {
        for url in [
            "http://Hooks.Example.COM./x",
            "http://[0:0::1]:8080/",
            "http://127.1/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            let url = url::Url::parse(url).unwrap();
            let host = url.host().unwrap();
            assert_eq!(url_host_key(&host), host_key(&host.to_string()), "{url}");
        }
    }
}
