//! Who owns a scheme, and who may claim a new one.
//!
//! A tenant's schemes carry its name as a prefix (`acme-chat` for tenant
//! `acme`), so no tenant can take a generic name other projects' alarms
//! use. Unprefixed schemes are the operator's. The built-ins and Aodh's
//! other schemes are reserved for the platform. A refused claim says the
//! same whatever the reason (reserved, taken, someone else's prefix), so
//! that a tenant cannot learn which schemes other tenants have.

use std::collections::BTreeMap;

use crate::api::auth::Caller;
use crate::config::TenantConfig;
use crate::registry::{RESERVED_SCHEMES, builtin};

/// Longest scheme accepted.
const MAX_SCHEME_LEN: usize = 64;

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

/// Whether `scheme` is reserved for the platform.
pub fn is_reserved(scheme: &str) -> bool {
    RESERVED_SCHEMES.contains(&scheme)
        || builtin::SCHEMES.iter().any(|(_, schemes)| schemes.contains(&scheme))
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
    if is_reserved(scheme) {
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
    use crate::api::auth::TokenHash;

    fn tenants() -> BTreeMap<String, TenantConfig> {
        let tenant = TenantConfig {
            token_sha256: TokenHash::of("t"),
            project_ids: Vec::new(),
            max_notifiers: 1,
            max_total_bytes: 1,
            max_concurrent_deliveries: 1,
        };
        BTreeMap::from([("acme".to_owned(), tenant)])
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
