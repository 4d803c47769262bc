//! Passwords (argon2id, PHC strings) and bearer tokens (32 random bytes; only their sha256 is
//! stored; they expire).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};

/// How long a session token lives, seconds.
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Password checks run at most this many at once, each on a blocking thread (argon2id takes
/// 19 MiB and tens of milliseconds): a burst of logins neither stalls the async workers that
/// serve report intake and images nor takes memory without bound.
static PASSWORD_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// A hash no password matches in practice, checked for an unknown user so that the answer
/// takes as long as for a known one (the timing does not tell which user ids exist).
static UNKNOWN_USER_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Whether `password` matches `phc` (None: the user is unknown; a dummy hash is checked all
/// the same). Off the async workers, a few at a time.
pub async fn check_password(password: String, phc: Option<String>) -> bool {
    let Ok(_permit) = PASSWORD_CHECKS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            let dummy =
                UNKNOWN_USER_HASH.get_or_init(|| hash_password(&new_token()).unwrap_or_default());
            let _ = verify_password(&password, dummy);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A fresh token (URL-safe base64 of 32 random bytes).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `token` has the form of [`new_token`]'s tokens (43 URL-safe base64 characters).
pub fn is_token_shaped(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn token_hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_differ() {
        let phc = hash_password("correct horse").unwrap_or_default();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(new_token(), new_token());
        assert!(is_token_shaped(&new_token()));
        assert!(!is_token_shaped("not-a-token"));
        assert!(!is_token_shaped(&format!("{}=", &new_token()[..42])));
        assert_eq!(token_hash("a").len(), 64);
    }
}
