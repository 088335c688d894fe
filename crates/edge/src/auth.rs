//! The edge's [`Authenticator`]: TURN-REST ephemeral usernames, then static users.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use credentials::{verify_username, Secret, SecretSet};
use turn_proto::codec::long_term_key;
use turn_proto::server::{AuthError, Authenticator, Credentials, StaticUsers};

use crate::config::EdgeConfig;

/// Slack on the "not too far in the future" check: minting hosts' clocks drift, and coturn's
/// own client mints exactly 24 h ahead, which must pass a 24 h cap.
const CLOCK_SKEW_SECS: u64 = 300;

/// TURN-REST credentials (ARCHITECTURE §4) with static users as a fallback for development.
///
/// A username that starts with a digit is a REST username "<expiry>:<key-id>:<session>" (or
/// coturn's "<expiry>:<name>"): its password is recomputed from the secret, no lookup.
/// Anything else is looked up among the static users.
pub struct EdgeAuth {
    secrets: Secrets,
    users: StaticUsers,
    max_ttl_secs: u64,
}

/// The live TURN-REST secret set, swapped without locks when the control plane rotates it.
/// Shared by every shard's authenticator and the registry client.
pub type Secrets = Arc<ArcSwapOption<SecretSet>>;

/// Signalling ticket keys, swapped like [`Secrets`].
pub type TicketKeys = Arc<ArcSwapOption<SecretSet>>;

/// A key set from `KEY_ID:SECRET` specs (None when empty).
pub fn key_set(
    specs: &[crate::config::SecretSpec],
) -> Result<Arc<ArcSwapOption<SecretSet>>, String> {
    let set = if specs.is_empty() {
        None
    } else {
        let list = specs
            .iter()
            .map(|s| Secret {
                key_id: s.key_id.clone(),
                secret: s.secret.as_bytes().to_vec(),
            })
            .collect();
        Some(Arc::new(SecretSet::new(list).map_err(|e| e.to_string())?))
    };
    Ok(Arc::new(ArcSwapOption::new(set)))
}

/// The secret set from the configuration (None when it lists none).
pub fn configured_secrets(cfg: &EdgeConfig) -> Result<Secrets, String> {
    key_set(&cfg.auth_secrets)
}

impl EdgeAuth {
    /// From the edge configuration and the shared secret set.
    pub fn new(cfg: &EdgeConfig, secrets: Secrets) -> Result<Self, String> {
        let mut users = StaticUsers::new();
        for u in &cfg.users {
            users.insert(u.name.clone(), u.password.clone());
        }
        Ok(Self {
            secrets,
            users,
            max_ttl_secs: cfg.max_credential_ttl_secs,
        })
    }
}

impl Authenticator for EdgeAuth {
    fn credentials(
        &self,
        username: &str,
        realm: &str,
        unix_now: u64,
    ) -> Result<Credentials, AuthError> {
        if username.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            let guard = self.secrets.load();
            let Some(set) = guard.as_deref() else {
                return Err(AuthError::UnknownUser);
            };
            return match verify_username(
                set,
                username,
                unix_now,
                Some(self.max_ttl_secs + CLOCK_SKEW_SECS),
            ) {
                Ok(v) => Ok(Credentials {
                    key: long_term_key(username, realm, &v.password),
                    quota_user: v.session.to_owned(),
                }),
                Err(credentials::CredentialError::Expired { expired_at }) => {
                    Err(AuthError::Expired(expired_at))
                }
                Err(e) => Err(AuthError::Refused(e.to_string())),
            };
        }
        self.users.credentials(username, realm, unix_now)
    }
}
