//! Who is who: the operator and the tenants, their bearer tokens, and
//! which schemes each may own.
//!
//! The configuration holds only the hashes of the operator's and the
//! tenants' tokens (`tocsin token` makes a token and its hash), so neither
//! the file nor a memory dump of the service gives a usable token away. A
//! presented token is hashed and compared with every configured hash in
//! constant time.
//!
//! A tenant's schemes carry its name as a prefix (`acme-chat` for tenant
//! `acme`), so no tenant can take a generic name other projects' alarms
//! use. Unprefixed schemes are the operator's, and the platform's schemes
//! ([`crate::schemes`]) nobody's. A refused claim says the same whatever
//! the reason (reserved, taken, someone else's prefix), so that a tenant
//! cannot learn which schemes other tenants have.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::caps::MAX_SCHEME_LEN;
use crate::grants::PluginConfig;
use crate::schemes;

/// The SHA-256 of a bearer token, written as 64 hex digits in the
/// configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `self` and `other` are equal, in time independent of where
    /// they differ.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The hash as hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let invalid = || {
            serde::de::Error::custom(
                "a token hash is the SHA-256 of the token as 64 hex digits (`tocsin token` prints one)",
            )
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(TokenHash(bytes))
    }
}

/// The caller a request's token identifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: every notifier.
    Operator,
    /// A tenant: only its own notifiers.
    Tenant(String),
}

impl Caller {
    /// Identifies the holder of `token`: the operator (whose token hash is
    /// `operator`) or one of `tenants`; none when no hash matches.
    pub fn identify(
        token: &str,
        operator: Option<&TokenHash>,
        tenants: &BTreeMap<String, TenantConfig>,
    ) -> Option<Caller> {
        let presented = TokenHash::of(token);
        // Compare with every hash, matched or not, so the time taken does
        // not tell which one matched.
        let mut found = None;
        if operator.is_some_and(|hash| hash.matches(&presented)) {
            found = Some(Caller::Operator);
        }
        for (name, tenant) in tenants {
            if tenant.token_sha256.matches(&presented) && found.is_none() {
                found = Some(Caller::Tenant(name.clone()));
            }
        }
        found
    }

    /// Whether the caller may see and change what `owner` owns.
    pub fn may_manage(&self, owner: &Owner) -> bool {
        match (self, owner) {
            (Caller::Operator, _) => true,
            (Caller::Tenant(caller), Owner::Tenant(tenant)) => caller == tenant,
            (Caller::Tenant(_), Owner::Operator) => false,
        }
    }

    /// The tenant named in logs (`-` for the operator).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Tenant(name) => Some(name),
        }
    }
}

/// One tenant: its token and quotas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// SHA-256 (hex) of the tenant's bearer token.
    pub token_sha256: TokenHash,
    /// The OpenStack (Keystone) projects whose alarms may use the tenant's
    /// notifiers: aodh-tocsin lets aodh's API accept the tenant's schemes
    /// in those projects' alarms only. Empty: no project's.
    #[serde(default)]
    pub project_ids: Vec<String>,
    /// Notifiers (schemes) the tenant may have.
    #[serde(default = "TenantConfig::default_max_notifiers")]
    pub max_notifiers: u32,
    /// Total bytes of the tenant's stored component versions.
    #[serde(default = "TenantConfig::default_max_total_bytes")]
    pub max_total_bytes: u64,
    /// Deliveries of the tenant's notifiers running at once; more wait
    /// (`dispatch.slot_wait_ms`, then a retry tier).
    #[serde(default = "TenantConfig::default_max_concurrent_deliveries")]
    pub max_concurrent_deliveries: u32,
    /// What the operator grants the tenant's notifiers, by scheme
    /// (`[tenants.acme.plugins.acme-relay]`): only the tenant's own
    /// notifiers ever get these.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
}

impl TenantConfig {
    fn default_max_notifiers() -> u32 {
        10
    }

    fn default_max_total_bytes() -> u64 {
        128 << 20
    }

    fn default_max_concurrent_deliveries() -> u32 {
        16
    }
}

/// Who owns a notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The platform operator.
    Operator,
    /// A tenant, by name.
    Tenant(String),
}

impl Owner {
    /// The owner stored in the database's `tenant` column (none: the
    /// operator).
    pub fn from_tenant(tenant: Option<String>) -> Owner {
        tenant.map_or(Owner::Operator, Owner::Tenant)
    }

    /// The tenant's name; none for the operator.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Owner::Operator => None,
            Owner::Tenant(name) => Some(name),
        }
    }
}

/// Why a scheme cannot be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Not a URL scheme tocsin accepts.
    #[error(
        "{0:?} is not a valid scheme: a lower-case letter, then lower-case letters, digits, '+', '-' or '.', at most 64 characters"
    )]
    Invalid(String),
    /// Reserved, taken, or another tenant's prefix: the same answer for each.
    #[error(
        "scheme {0:?} is unavailable: a tenant may claim only schemes that start with its name and a dash, and no scheme that is reserved or taken"
    )]
    Unavailable(String),
}

/// Whether `name` can be a tenant's name: a lower-case letter, then
/// lower-case letters and digits (no dash, so the prefix is unambiguous).
pub fn is_tenant_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= MAX_SCHEME_LEN / 2
}

/// Checks that `scheme` is a URL scheme tocsin accepts.
///
/// # Errors
/// [`ClaimError::Invalid`].
pub fn check_syntax(scheme: &str) -> Result<(), ClaimError> {
    let mut chars = scheme.chars();
    let valid = scheme.len() <= MAX_SCHEME_LEN
        && chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if valid { Ok(()) } else { Err(ClaimError::Invalid(scheme.to_owned())) }
}

/// Who would own `scheme` if `caller` created it: the caller's tenant, or
/// for the operator the tenant whose prefix it carries, else the operator.
///
/// # Errors
/// [`ClaimError::Invalid`] for a malformed scheme;
/// [`ClaimError::Unavailable`] for a reserved one or one outside the
/// tenant's prefix.
pub fn claim(
    caller: &Caller,
    scheme: &str,
    tenants: &BTreeMap<String, TenantConfig>,
) -> Result<Owner, ClaimError> {
    check_syntax(scheme)?;
    if schemes::is_platform(scheme) {
        return Err(ClaimError::Unavailable(scheme.to_owned()));
    }
    let prefix = scheme.split_once('-').filter(|(_, rest)| !rest.is_empty()).map(|(prefix, _)| prefix);
    match caller {
        Caller::Tenant(tenant) if prefix == Some(tenant.as_str()) => Ok(Owner::Tenant(tenant.clone())),
        Caller::Tenant(_) => Err(ClaimError::Unavailable(scheme.to_owned())),
        Caller::Operator => Ok(match prefix.filter(|prefix| tenants.contains_key(*prefix)) {
            Some(tenant) => Owner::Tenant(tenant.to_owned()),
            None => Owner::Operator,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> BTreeMap<String, TenantConfig> {
        let tenant = TenantConfig {
            token_sha256: TokenHash::of("t"),
            project_ids: Vec::new(),
            max_notifiers: 1,
            max_total_bytes: 1,
            max_concurrent_deliveries: 1,
            plugins: BTreeMap::new(),
        };
        BTreeMap::from([("acme".to_owned(), tenant)])
    }

    #[test]
    fn a_hash_round_trips_through_its_hex_form_and_only_its_token_matches() {
        let hash = TokenHash::of("s3cret");
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        let parsed: TokenHash =
            serde_json::from_value(serde_json::Value::String(hex.to_uppercase())).unwrap();
        assert!(parsed.matches(&TokenHash::of("s3cret")));
        assert!(!parsed.matches(&TokenHash::of("s3cret ")));
        for bad in ["", "abc", &"g".repeat(64), &"é".repeat(32)] {
            let error =
                serde_json::from_value::<TokenHash>(serde_json::Value::String(bad.into())).unwrap_err();
            assert!(error.to_string().contains("64 hex digits"), "{bad}: {error}");
        }
    }

    #[test]
    fn tenants_claim_only_their_prefix_and_nobody_claims_a_reserved_scheme() {
        let acme = Caller::Tenant("acme".into());
        let other = Caller::Tenant("globex".into());
        let tenants = tenants();
        assert_eq!(claim(&acme, "acme-chat", &tenants), Ok(Owner::Tenant("acme".into())));
        assert_eq!(claim(&acme, "acme-a.b+c-d", &tenants), Ok(Owner::Tenant("acme".into())));
        for scheme in [
            "chat",
            "acme-",
            "acme",
            "acmechat",
            "globex-chat",
            "http",
            "https",
            "log",
            "test",
            "zaqar",
            "trust+heat",
        ] {
            assert_eq!(
                claim(&acme, scheme, &tenants),
                Err(ClaimError::Unavailable(scheme.into())),
                "{scheme}"
            );
        }
        assert!(matches!(claim(&other, "acme-chat", &tenants), Err(ClaimError::Unavailable(_))));
        assert_eq!(claim(&Caller::Operator, "pager", &tenants), Ok(Owner::Operator));
        assert_eq!(claim(&Caller::Operator, "acme-pager", &tenants), Ok(Owner::Tenant("acme".into())));
        assert_eq!(claim(&Caller::Operator, "nobody-pager", &tenants), Ok(Owner::Operator));
        assert!(matches!(claim(&Caller::Operator, "trust+http", &tenants), Err(ClaimError::Unavailable(_))));
        for scheme in ["", "Acme-chat", "1abc", "acme_chat", "acme chat", "acme-ç", &"a".repeat(65)] {
            assert_eq!(claim(&acme, scheme, &tenants), Err(ClaimError::Invalid(scheme.into())), "{scheme}");
        }
    }

    #[test]
    fn tenant_names_are_a_letter_then_letters_and_digits() {
        assert!(is_tenant_name("acme"));
        assert!(is_tenant_name("a1"));
        for bad in ["", "1a", "Acme", "ac-me", "ac_me", "açme"] {
            assert!(!is_tenant_name(bad), "{bad}");
        }
    }
}
