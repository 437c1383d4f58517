//! Token generation and hashing.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of project write tokens (public: they only allow sending events).
pub const WRITE_PREFIX: &str = "aw_";
/// Prefix of admin tokens (secret: stored hashed).
pub const ADMIN_PREFIX: &str = "aa_";
/// Prefix of viewer tokens (secret: stored hashed, as admin tokens are).
pub const VIEWER_PREFIX: &str = "av_";

/// What a secret token (admin or viewer) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything the collector offers: insights, raw events, SQL, erasure, `/metrics`.
    Admin,
    /// Insights and the dashboard pages built on them: k-folded aggregates, nothing raw,
    /// nothing that changes data.
    Viewer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Role::Admin => ADMIN_PREFIX,
            Role::Viewer => VIEWER_PREFIX,
        }
    }

    /// The role of a token, or of its listed prefix. A token's role is fixed when it is
    /// made and written into it, so the stored prefix says it and no other column can
    /// disagree (and a store copied by an older `migrate` keeps its viewers).
    pub fn of(token: &str) -> Option<Role> {
        [Role::Admin, Role::Viewer]
            .into_iter()
            .find(|r| token.starts_with(r.prefix()))
    }

    /// Whether this role may do what `needed` may.
    pub fn grants(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }
}

fn random_hex() -> String {
    Uuid::new_v4().simple().to_string()
}

pub fn new_write_token() -> String {
    format!("{WRITE_PREFIX}{}", random_hex())
}

/// An admin or viewer token: two v4 uuids, 244 random bits.
pub fn new_secret(role: Role) -> String {
    format!("{}{}{}", role.prefix(), random_hex(), random_hex())
}

/// SHA-256 of a token (write, admin or viewer): all three are stored only as this hash.
/// Tokens are long and random, so a plain hash is enough: there is nothing to guess that
/// a slow hash would protect.
pub fn hash_secret(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What a listing shows of a token: its kind's prefix and 8 characters.
pub fn secret_prefix(token: &str) -> String {
    token.chars().take(ADMIN_PREFIX.len() + 8).collect()
}

/// What `keys revoke` says of a revoked admin or viewer token: "revoked viewer token 4".
pub fn revoked_message(prefix: &str, id: i64) -> String {
    let role = Role::of(prefix).map_or("admin", Role::name);
    format!("revoked {role} token {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_shaped() {
        let a = new_secret(Role::Admin);
        assert!(a.starts_with("aa_") && a.len() == 67);
        assert_ne!(a, new_secret(Role::Admin));
        assert_eq!(hash_secret(&a).len(), 32);
        assert!(new_write_token().starts_with("aw_"));
        assert_eq!(secret_prefix(&a).len(), 11);
        let v = new_secret(Role::Viewer);
        assert!(v.starts_with("av_") && v.len() == 67);
    }

    #[test]
    fn the_role_is_read_from_the_token_and_only_admins_grant_more() {
        let v = new_secret(Role::Viewer);
        assert_eq!(Role::of(&v), Some(Role::Viewer));
        assert_eq!(Role::of(&secret_prefix(&v)), Some(Role::Viewer));
        assert_eq!(Role::of(&new_secret(Role::Admin)), Some(Role::Admin));
        assert_eq!(Role::of(&new_write_token()), None);
        assert!(Role::Admin.grants(Role::Viewer) && Role::Admin.grants(Role::Admin));
        assert!(Role::Viewer.grants(Role::Viewer) && !Role::Viewer.grants(Role::Admin));
    }
}
