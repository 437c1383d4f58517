//! Token generation and hashing.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of project write tokens (public: they only allow sending events).
pub const WRITE_PREFIX: &str = "aw_";
/// Prefix of admin tokens (secret: stored hashed).
pub const ADMIN_PREFIX: &str = "aa_";

fn random_hex() -> String {
    Uuid::new_v4().simple().to_string()
}

pub fn new_write_token() -> String {
    format!("{WRITE_PREFIX}{}", random_hex())
}

pub fn new_admin_token() -> String {
    // Two v4 uuids: 244 random bits.
    format!("{ADMIN_PREFIX}{}{}", random_hex(), random_hex())
}

/// SHA-256 of an admin token. Tokens are long and random, so a plain hash is enough:
/// there is nothing to guess that a slow hash would protect.
pub fn hash_admin(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What a listing shows of an admin token.
pub fn admin_prefix(token: &str) -> String {
    token.chars().take(ADMIN_PREFIX.len() + 8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_shaped() {
        let a = new_admin_token();
        assert!(a.starts_with("aa_") && a.len() == 67);
        assert_ne!(a, new_admin_token());
        assert_eq!(hash_admin(&a).len(), 32);
        assert!(new_write_token().starts_with("aw_"));
        assert_eq!(admin_prefix(&a).len(), 11);
    }
}
