//! Action URLs as Aodh handles them.
//!
//! Aodh splits an action with Python's `urlsplit` and prints it with
//! `geturl()`, so `log://` prints as `log:`. An action URL often is a
//! credential: a Slack, Discord or Teams webhook's path is its token. So
//! tocsin's log lines show an action as [`display`] does, the scheme, host
//! and port with everything after them as `/***`. Where the operator asks
//! for Aodh's whole URL, [`display_whole`] gives `geturl()`'s form with
//! the user info as `***` and the values of parameters whose names look
//! like secrets as `***`; a token in the path is shown.

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

/// The environment variable, set to `1`, by which the host tells its
/// built-in notifiers that the operator wants whole action URLs in their
/// log lines (`notifiers.whole_action_urls`). Other plugins' environment
/// is empty.
pub const WHOLE_URLS_ENV: &str = "TOCSIN_WHOLE_ACTION_URLS";

/// Schemes for which Python writes `//` even when the host is empty.
const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp", "snews",
    "prospero", "rtsp", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git", "git+ssh", "ws", "wss",
];

/// Parts of query parameter names that hold secrets, matched as
/// substrings of the percent-decoded, lower-cased name (`sig` covers
/// `signature` and `X-Amz-Signature`, `pass` covers `passwd`): their values
/// are never displayed. A harmless name that matches (`design`) loses its
/// value in the log, which is the safe way to be wrong.
const SECRET_NAMES: &[&str] = &[
    "token",
    "key",
    "sig",
    "pass",
    "pwd",
    "secret",
    "auth",
    "credential",
    "session",
    "code",
    "hmac",
    "jwt",
    "bearer",
    "cookie",
];

/// What replaces what is not shown.
const HIDDEN: &str = "***";

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
        self.unsplit(self.host_port(), self.query, self.fragment)
    }

    /// The URL as tocsin's log lines show it: scheme, host and port, and
    /// `/***` in place of the path, query and fragment when it has any.
    /// The host ends at a backslash too: Python keeps one in the netloc,
    /// but URL parsers that send the request (WHATWG's, reqwest's) read it
    /// as the path's first `/`, so what follows may be a webhook's token.
    pub fn redacted(&self) -> String {
        let mut url = String::with_capacity(self.scheme.len() + self.netloc.len() + 8);
        if !self.scheme.is_empty() {
            url.push_str(&self.scheme);
            url.push(':');
        }
        let (host, after_backslash) = match self.host_port().split_once('\\') {
            Some((host, _)) => (host, true),
            None => (self.host_port(), false),
        };
        if !host.is_empty() {
            url.push_str("//");
            url.push_str(host);
        }
        if after_backslash || !(self.path.is_empty() && self.query.is_empty() && self.fragment.is_empty()) {
            url.push('/');
            url.push_str(HIDDEN);
        }
        url
    }

    /// The URL as Aodh's log lines print it (`geturl()`), with the user
    /// info shown as `***` and the values of secret-looking parameters of
    /// the query and fragment as `***`. The path is shown as it is.
    pub fn whole_redacted(&self) -> String {
        let netloc = match self.netloc.rsplit_once('@') {
            Some((_, host)) => format!("{HIDDEN}@{host}"),
            None => self.netloc.to_owned(),
        };
        self.unsplit(&netloc, &hide_secret_values(self.query), &hide_secret_values(self.fragment))
    }

    /// The last value of query parameter `name`, as Python's `parse_qs`
    /// gives it (`+` is a space, percent-escapes decoded, blank values
    /// skipped).
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query
            .split(['&', ';'])
            .filter_map(|pair| pair.split_once('='))
            .filter(|(_, value)| !value.is_empty())
            .filter(|(key, _)| form_decode(key) == name)
            .map(|(_, value)| form_decode(value))
            .next_back()
    }

    /// Python's `urlunsplit` with the given netloc, query and fragment.
    fn unsplit(&self, netloc: &str, query: &str, fragment: &str) -> String {
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
            url.push_str(query);
        }
        if !fragment.is_empty() {
            url.push('#');
            url.push_str(fragment);
        }
        url
    }
}

/// Displays an action for a log line: its scheme, host and port, the rest
/// as `/***` ([`SplitAction::redacted`]). An unparsable action is shown
/// with everything after the scheme hidden.
pub fn display(action: &str) -> String {
    split(action).map_or_else(|_| unparsable(action), |split| split.redacted())
}

/// Displays an action whole, as Aodh's log lines do, with its credentials
/// and secret-named parameters hidden ([`SplitAction::whole_redacted`]):
/// for operators who chose Aodh's exact lines over hiding webhook tokens.
pub fn display_whole(action: &str) -> String {
    split(action).map_or_else(|_| unparsable(action), |split| split.whole_redacted())
}

/// An action that cannot be split: only what comes before the first `:`
/// is shown, since the rest cannot be redacted reliably.
fn unparsable(action: &str) -> String {
    match action.split_once(':') {
        Some((scheme, _)) => format!("{scheme}:{HIDDEN}"),
        None => HIDDEN.to_owned(),
    }
}

/// `parameters` (`a=1&b=2;c=3`) with the values of secret-named ones
/// replaced by `***`. Names are compared percent-decoded (`%74oken` is
/// `token`), `+` as a space, and both `&` and `;` separate parameters, as
/// servers may read them so. The separators and the names are kept.
fn hide_secret_values(parameters: &str) -> String {
    let mut shown = String::with_capacity(parameters.len());
    let mut rest = parameters;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => {
                shown.push_str(name);
                shown.push('=');
                shown.push_str(HIDDEN);
            }
            _ => shown.push_str(pair),
        }
        let mut separator = after.chars();
        match separator.next() {
            Some(c) => {
                shown.push(c);
                rest = separator.as_str();
            }
            None => return shown,
        }
    }
}

/// Whether a parameter named `name` (as written in the URL) holds a
/// secret.
fn is_secret_name(name: &str) -> bool {
    let name = form_decode(name).to_lowercase();
    SECRET_NAMES.iter().any(|secret| name.contains(secret))
}

/// A query parameter's name or value as Python's `parse_qs` reads it:
/// `+` is a space, then `%XX` escapes are decoded.
fn form_decode(input: &str) -> String {
    percent_decode(&input.replace('+', " "))
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
    fn actions_without_a_path_print_as_python_geturl() {
        assert_eq!(display("log://"), "log:");
        assert_eq!(display("test://"), "test:");
        assert_eq!(display("HTTP://h:8080"), "http://h:8080");
        assert_eq!(display_whole("log://"), "log:");
        assert_eq!(display_whole("log://somewhere/x"), "log://somewhere/x");
        assert_eq!(display_whole("http://127.0.0.1:45577/alarm?x=1"), "http://127.0.0.1:45577/alarm?x=1");
        assert_eq!(display_whole("HTTP://h/p#frag"), "http://h/p#frag");
    }

    /// Issue 23, finding 3: the URLs tried, and what a log line shows of
    /// each, by default and with the whole URL asked for. At e8aba4b every
    /// one of them but the user info was printed with its secret.
    #[test]
    fn the_redaction_table() {
        let table = [
            (
                "Slack webhook path",
                "https://hooks.slack.com/services/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",
                "https://hooks.slack.com/***",
                "https://hooks.slack.com/services/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",
            ),
            (
                "Discord webhook path",
                "https://discord.com/api/webhooks/1234567890123456789/DISCORDsecret-token_value",
                "https://discord.com/***",
                "https://discord.com/api/webhooks/1234567890123456789/DISCORDsecret-token_value",
            ),
            (
                "Teams webhook path",
                "https://contoso.webhook.office.com/webhookb2/0f1e@72f9/IncomingWebhook/TEAMSsecret/4c3b",
                "https://contoso.webhook.office.com/***",
                "https://contoso.webhook.office.com/webhookb2/0f1e@72f9/IncomingWebhook/TEAMSsecret/4c3b",
            ),
            (
                "Teams workflow (sig in the query)",
                "https://prod-07.westus.logic.azure.com:443/workflows/9a/triggers/manual/paths/invoke?api-version=2016-06-01&sv=1.0&sig=WORKFLOWsecret",
                "https://prod-07.westus.logic.azure.com:443/***",
                "https://prod-07.westus.logic.azure.com:443/workflows/9a/triggers/manual/paths/invoke?api-version=2016-06-01&sv=1.0&sig=***",
            ),
            (
                "`;` between parameters",
                "https://h.example/hook?x=1;token=SEMIsecret;y=2",
                "https://h.example/***",
                "https://h.example/hook?x=1;token=***;y=2",
            ),
            (
                "percent-encoded names",
                "https://h.example/hook?%74oken=PCTsecret&api%5Fkey=PCTsecret2&A%75th=PCTsecret3",
                "https://h.example/***",
                "https://h.example/hook?%74oken=***&api%5Fkey=***&A%75th=***",
            ),
            (
                "sig, auth, pwd",
                "https://h.example/hook?sig=SIGsecret&auth=AUTHsecret&pwd=PWDsecret&x=1",
                "https://h.example/***",
                "https://h.example/hook?sig=***&auth=***&pwd=***&x=1",
            ),
            (
                "user info",
                "https://user:PASSsecret@h.example:8443/hook",
                "https://h.example:8443/***",
                "https://***@h.example:8443/hook",
            ),
            (
                "a token in the fragment",
                "https://h.example/hook#access_token=FRAGsecret",
                "https://h.example/***",
                "https://h.example/hook#access_token=***",
            ),
            (
                "a backslash, which the sender reads as /",
                "https://hooks.slack.com\\services\\T0A1B2C3D\\B0A1B2C3D\\BACKSLASHsecret",
                "https://hooks.slack.com/***",
                "https://hooks.slack.com\\services\\T0A1B2C3D\\B0A1B2C3D\\BACKSLASHsecret",
            ),
            (
                "Aodh's TLS option",
                "https://h.example/hook?aodh-alarm-ssl-verify=0",
                "https://h.example/***",
                "https://h.example/hook?aodh-alarm-ssl-verify=0",
            ),
        ];
        for (what, url, default, whole) in table {
            println!("| {what} | `{url}` | `{}` | `{}` |", display(url), display_whole(url));
            assert_eq!(display(url), default, "{what}");
            assert_eq!(display_whole(url), whole, "{what}");
        }
    }

    #[test]
    fn what_cannot_be_split_shows_its_scheme_only() {
        assert_eq!(display("http://[::1/x"), "http:***");
        assert_eq!(display_whole("http://user:pw@[::1/x"), "http:***");
        assert_eq!(display("plain text"), "/***");
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

    proptest::proptest! {
        /// Whatever follows the host never reaches the default form, and a
        /// secret-named parameter's value never reaches the whole one, in
        /// any spelling of its name.
        #[test]
        fn secrets_never_reach_a_log_line(
            path in "[a-zA-Z0-9/@:._~%-]{0,40}",
            before in "[a-z0-9=&;%+]{0,20}",
            name in "(token|api_key|sig|pwd|auth|secret|PassWord)",
            escape in proptest::bool::ANY,
            separator in "[&;]",
            value in "[A-Za-z0-9]{12,20}",
        ) {
            let name = if escape { format!("%{:02X}{}", name.as_bytes()[0], &name[1..]) } else { name };
            let url = format!("https://h.example:8443/{path}?{before}{separator}{name}={value}");
            let shown = display(&url);
            proptest::prop_assert_eq!(&shown, "https://h.example:8443/***");
            let whole = display_whole(&url);
            proptest::prop_assert!(!whole.contains(&value), "{} shows {}", whole, value);
        }

        /// Nothing panics, and the default form is never longer than the
        /// URL's scheme and host allow.
        #[test]
        fn any_text_is_displayed(action in "\\PC{0,80}") {
            let shown = display(&action);
            display_whole(&action);
            proptest::prop_assert!(shown.len() <= action.len() + 4, "{:?} -> {:?}", action, shown);
        }
    }
}
