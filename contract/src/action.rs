//! Action URLs as Aodh handles them.
//!
//! Aodh splits an action with Python's `urlsplit` and prints it with
//! `geturl()`, so `log://` prints as `log:`. tocsin reproduces that exactly,
//! except that it never prints secrets: the URL's user info becomes `***`
//! and query values whose names look like secrets become `***`.

/// An action URL split the way Python's `urllib.parse.urlsplit` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAction<'a> {
    /// Lower-cased scheme, e.g. `http`; empty when there is none.
    pub scheme: String,
    /// `user:pass@host:port`, empty when the URL has no `//`.
    pub netloc: &'a str,
    /// Path, possibly empty.
    pub path: &'a str,
    /// Query without the `?`.
    pub query: &'a str,
    /// Fragment without the `#`.
    pub fragment: &'a str,
}

/// Why an action URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// Unbalanced brackets around an IPv6 host: Python raises
    /// `ValueError("Invalid IPv6 URL")` and Aodh logs "Unable to parse action".
    InvalidIpv6,
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionError::InvalidIpv6 => f.write_str("Invalid IPv6 URL"),
        }
    }
}

impl std::error::Error for ActionError {}

/// Schemes for which Python writes `//` even when the host is empty.
const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp", "snews",
    "prospero", "rtsp", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git", "git+ssh", "ws", "wss",
];

/// Query parameter names that hold secrets, matched as substrings of the
/// lower-cased name: their values are never displayed.
const SECRET_NAMES: &[&str] = &["token", "key", "signature", "password", "secret"];

/// Splits `action` exactly as Python's `urlsplit` does (3.11 rules).
///
/// # Errors
/// [`ActionError::InvalidIpv6`] when the host has one bracket but not the other.
pub fn split(action: &str) -> Result<SplitAction<'_>, ActionError> {
    let mut rest = action.trim_start_matches(|c: char| c <= ' ');
    let mut scheme = String::new();
    if let Some(i) = rest.find(':') {
        let candidate = &rest[..i];
        let valid = candidate.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && candidate.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid {
            scheme = candidate.to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
    }
    let mut netloc = "";
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = &after[..end];
        rest = &after[end..];
        if netloc.contains('[') != netloc.contains(']') {
            return Err(ActionError::InvalidIpv6);
        }
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok(SplitAction { scheme, netloc, path, query, fragment })
}

impl SplitAction<'_> {
    /// The host part of the netloc: user info removed, port kept.
    pub fn host_port(&self) -> &str {
        self.netloc.rsplit_once('@').map_or(self.netloc, |(_, host)| host)
    }

    /// `(user, password)` from the URL, percent-decoded, when the URL has
    /// both (`user:pass@`; the password may be empty). This is when Python
    /// requests sends `Authorization: Basic`: a user without `:` sends none.
    pub fn credentials(&self) -> Option<(String, String)> {
        let (userinfo, _) = self.netloc.rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':')?;
        Some((percent_decode(user), percent_decode(password)))
    }

    /// The URL without its user info, as it is sent on the wire.
    pub fn without_credentials(&self) -> String {
        self.unsplit(self.host_port(), self.query.to_owned())
    }

    /// The URL as Aodh's log lines print it (`geturl()`), with user info
    /// shown as `***` and secret-looking query values as `***`.
    pub fn redacted(&self) -> String {
        let netloc = match self.netloc.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => self.netloc.to_owned(),
        };
        let query = self
            .query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        self.unsplit(&netloc, query)
    }

    /// The last value of query parameter `name`, as Python's `parse_qs`
    /// gives it (`+` is a space, percent-escapes decoded, blank values
    /// skipped).
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query
            .split(['&', ';'])
            .filter_map(|pair| pair.split_once('='))
            .filter(|(_, value)| !value.is_empty())
            .filter(|(key, _)| percent_decode(&key.replace('+', " ")) == name)
            .map(|(_, value)| percent_decode(&value.replace('+', " ")))
            .next_back()
    }

    /// Python's `urlunsplit` with the given netloc and query.
    fn unsplit(&self, netloc: &str, query: String) -> String {
        let mut url = String::new();
        if !self.scheme.is_empty() {
            url.push_str(&self.scheme);
            url.push(':');
        }
        let needs_netloc = !netloc.is_empty()
            || (!self.scheme.is_empty()
                && USES_NETLOC.contains(&self.scheme.as_str())
                && !self.path.starts_with("//"));
        if needs_netloc {
            url.push_str("//");
            url.push_str(netloc);
            if !self.path.is_empty() && !self.path.starts_with('/') {
                url.push('/');
            }
        }
        url.push_str(self.path);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        if !self.fragment.is_empty() {
            url.push('#');
            url.push_str(self.fragment);
        }
        url
    }
}

/// Displays an action for a log line: Aodh's `geturl()` form with secrets
/// redacted. An unparsable action is shown with everything after the
/// scheme hidden, since it cannot be redacted reliably.
pub fn display(action: &str) -> String {
    match split(action) {
        Ok(split) => split.redacted(),
        Err(_) => match action.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:***"),
            None => "***".to_owned(),
        },
    }
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|secret| name.contains(secret))
}

/// Decodes `%XX` escapes; invalid escapes and invalid UTF-8 are kept as
/// they are (lossily), as Python's `unquote` does.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_action_prints_as_python_geturl() {
        assert_eq!(display("log://"), "log:");
        assert_eq!(display("test://"), "test:");
        assert_eq!(display("log://somewhere/x"), "log://somewhere/x");
        assert_eq!(display("http://127.0.0.1:45577/alarm?x=1"), "http://127.0.0.1:45577/alarm?x=1");
        assert_eq!(display("HTTP://h/p#frag"), "http://h/p#frag");
    }

    #[test]
    fn credentials_and_secret_query_values_are_redacted() {
        assert_eq!(display("http://user:s3cret@127.0.0.1:44491/hook"), "http://***@127.0.0.1:44491/hook");
        assert_eq!(display("trust+http://3f1c0e5a:delete@host/v1/hook"), "trust+http://***@host/v1/hook");
        assert_eq!(
            display("https://h/p?token=abc&x=1&apiKey=zz&aodh-alarm-ssl-verify=0"),
            "https://h/p?token=***&x=1&apiKey=***&aodh-alarm-ssl-verify=0"
        );
        assert_eq!(display("http://[::1/x"), "http:***");
    }

    #[test]
    fn split_follows_python_urlsplit() {
        let s = split("  https://u:p%40ss@[::1]:8443/a/b?q=1&q=2#f").unwrap();
        assert_eq!(s.scheme, "https");
        assert_eq!(s.netloc, "u:p%40ss@[::1]:8443");
        assert_eq!(s.host_port(), "[::1]:8443");
        assert_eq!(s.path, "/a/b");
        assert_eq!(s.query, "q=1&q=2");
        assert_eq!(s.fragment, "f");
        assert_eq!(s.credentials(), Some(("u".into(), "p@ss".into())));
        assert_eq!(s.without_credentials(), "https://[::1]:8443/a/b?q=1&q=2#f");
        assert_eq!(split("http://[::1/x"), Err(ActionError::InvalidIpv6));
        assert_eq!(split("nosuchscheme").unwrap().scheme, "");
        assert_eq!(split("1http://x").unwrap().scheme, "");
    }

    #[test]
    fn only_user_and_password_together_make_credentials() {
        assert_eq!(split("http://user@h/").unwrap().credentials(), None);
        assert_eq!(split("http://user:@h/").unwrap().credentials(), Some(("user".into(), String::new())));
        assert_eq!(split("http://h/").unwrap().credentials(), None);
    }

    #[test]
    fn query_values_follow_parse_qs() {
        let s = split("https://h/?aodh-alarm-ssl-verify=1&aodh-alarm-ssl-verify=0&e=&a+b=c%20d").unwrap();
        assert_eq!(s.query_value("aodh-alarm-ssl-verify").as_deref(), Some("0"));
        assert_eq!(s.query_value("e"), None);
        assert_eq!(s.query_value("a b").as_deref(), Some("c d"));
        assert_eq!(s.query_value("missing"), None);
    }
}
