//! The radiologist's ed25519 signing key, encrypted at rest: argon2id (19 MiB, 2 passes)
//! derives a key from the passphrase; XChaCha20-Poly1305 seals the 32 secret bytes, with the
//! key id as associated data. The file is JSON, written owner-readable only.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use case_protocol::SigningKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("the key file is not an Overread key file: {0}")]
    Format(String),
    #[error("wrong passphrase (or the key file was changed)")]
    WrongPassphrase,
    #[error("a passphrase needs at least 12 characters")]
    WeakPassphrase,
}

/// The key file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedKey {
    pub version: u32,
    pub key_id: String,
    /// The public key, base64 (to register with the server).
    pub public_key: String,
    pub kdf: String,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: String,
    pub nonce: String,
    pub ciphertext: String,
}

fn derive(
    passphrase: &str,
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
) -> Result<[u8; 32], KeyStoreError> {
    let params =
        Params::new(m, t, p, Some(32)).map_err(|e| KeyStoreError::Format(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| KeyStoreError::Format(e.to_string()))?;
    Ok(out)
}

impl EncryptedKey {
    pub fn seal(key: &SigningKey, passphrase: &str) -> Result<EncryptedKey, KeyStoreError> {
        if passphrase.chars().count() < 12 {
            return Err(KeyStoreError::WeakPassphrase);
        }
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let (m, t, p) = (19 * 1024, 2, 1);
        let kek = derive(passphrase, &salt, m, t, p)?;
        let public = key.verifying_key();
        let key_id = public.id().0;
        let cipher = XChaCha20Poly1305::new(&kek.into());
        let secret = key.to_bytes();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secret,
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|e| KeyStoreError::Format(e.to_string()))?;
        Ok(EncryptedKey {
            version: 1,
            key_id,
            public_key: public.to_base64(),
            kdf: "argon2id".into(),
            m_cost_kib: m,
            t_cost: t,
            p_cost: p,
            salt: STANDARD.encode(salt),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
        })
    }

    pub fn open(&self, passphrase: &str) -> Result<SigningKey, KeyStoreError> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(KeyStoreError::Format(format!(
                "version {} / {}",
                self.version, self.kdf
            )));
        }
        let b64 = |s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| KeyStoreError::Format(e.to_string()))
        };
        let salt = b64(&self.salt)?;
        let nonce = b64(&self.nonce)?;
        if nonce.len() != 24 {
            return Err(KeyStoreError::Format("nonce length".into()));
        }
        // The cost comes from the file: a damaged or altered one must not make opening it
        // take hours or allocate more memory than the machine has (keys are sealed with 19
        // MiB and 2 passes).
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST
        {
            return Err(KeyStoreError::Format(format!(
                "key derivation cost out of range ({} KiB, {} passes, {} lanes; at most {} KiB, \
                 {} passes, {} lanes)",
                self.m_cost_kib, self.t_cost, self.p_cost, MAX_M_COST_KIB, MAX_T_COST, MAX_P_COST
            )));
        }
        let kek = derive(passphrase, &salt, self.m_cost_kib, self.t_cost, self.p_cost)?;
        let cipher = XChaCha20Poly1305::new(&kek.into());
        let secret = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &b64(&self.ciphertext)?,
                    aad: self.key_id.as_bytes(),
                },
            )
            .map_err(|_| KeyStoreError::WrongPassphrase)?;
        let bytes: [u8; 32] = secret
            .try_into()
            .map_err(|_| KeyStoreError::Format("secret length".into()))?;
        let key = SigningKey::from_bytes(&bytes);
        if key.verifying_key().id().0 != self.key_id {
            return Err(KeyStoreError::Format(
                "the key does not match its id".into(),
            ));
        }
        Ok(key)
    }

    /// Write the sealed key to `path`, which must not exist (a key is never overwritten):
    /// whole or not at all (a temporary file beside it, synced, then linked to its name, and
    /// the folder synced), readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), KeyStoreError> {
        let io = |e: std::io::Error| KeyStoreError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let text =
            serde_json::to_string_pretty(self).map_err(|e| KeyStoreError::Format(e.to_string()))?;
        let name = path
            .file_name()
            .ok_or_else(|| io(std::io::Error::other("not a file name")))?;
        let tmp = path.with_file_name(format!(
            ".{}.{}.part",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        let written = options.open(&tmp).and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.sync_all()
        });
        // A hard link fails when `path` exists, where a rename would replace it. A file
        // system without hard links (FAT on a USB stick) gets a rename after a check.
        let placed = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                if path.exists() {
                    Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
                } else {
                    std::fs::rename(&tmp, path)
                }
            }
            other => other,
        });
        let _ = std::fs::remove_file(&tmp);
        placed.map_err(io)?;
        #[cfg(unix)]
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(folder)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    pub fn read(path: &Path) -> Result<EncryptedKey, KeyStoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyStoreError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| KeyStoreError::Format(e.to_string()))
    }
}

/// The most a key file may ask of the key derivation (256 MiB, 16 passes, 16 lanes).
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_with_its_passphrase() {
        let key = SigningKey::generate();
        let sealed = match EncryptedKey::seal(&key, "correct horse battery") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(!sealed.ciphertext.contains(&STANDARD.encode(key.to_bytes())));
        let opened = sealed.open("correct horse battery").map(|k| k.to_bytes());
        assert_eq!(opened.ok(), Some(key.to_bytes()));
        assert!(matches!(
            sealed.open("wrong horse battery"),
            Err(KeyStoreError::WrongPassphrase)
        ));
        let mut moved = sealed.clone();
        moved.key_id = "ed25519:0000000000000000".into();
        assert!(moved.open("correct horse battery").is_err());
        assert!(matches!(
            EncryptedKey::seal(&key, "short"),
            Err(KeyStoreError::WeakPassphrase)
        ));
        // A cost altered in the file is refused before any derivation is tried.
        for (m, t) in [(u32::MAX, 2), (19 * 1024, u32::MAX)] {
            let mut costly = sealed.clone();
            costly.m_cost_kib = m;
            costly.t_cost = t;
            assert!(
                matches!(costly.open("correct horse battery"), Err(KeyStoreError::Format(ref e)) if e.contains("cost")),
                "{m} KiB, {t} passes"
            );
        }
    }

    #[test]
    fn a_key_file_is_written_whole_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let key = SigningKey::generate();
        let sealed = EncryptedKey::seal(&key, "correct horse battery").unwrap();
        sealed.write(&path).unwrap();
        let other = EncryptedKey::seal(&SigningKey::generate(), "correct horse battery").unwrap();
        assert!(other.write(&path).is_err(), "an existing key is kept");
        let read = EncryptedKey::read(&path).unwrap();
        assert_eq!(read.key_id, sealed.key_id);
        // Nothing else is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
