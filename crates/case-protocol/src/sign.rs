//! ed25519 keys, key ids, and signing and verifying reports over their canonical bytes.
//!
//! A key id is `ed25519:` + the first 16 hex digits of sha256(public key bytes): stable,
//! derived, so a key can be named without trusting a label.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::canonical::{CanonicalError, canonical_bytes};
use crate::types::{Report, SignedReport};

/// Why a signature was not made or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the report has no canonical form: {0}")]
    Canonical(#[from] CanonicalError),
    #[error("the report cannot be printed as signed: {0}")]
    Unprintable(#[from] crate::printable::Unprintable),
    #[error("the report names key {named} but was checked against key {given}")]
    WrongKey { named: String, given: String },
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error(
        "the signature does not match the report: it was changed after signing or signed by another key"
    )]
    Mismatch,
    #[error("a public key is 32 bytes of base64; this is not one")]
    BadKey,
}

/// A key id (`ed25519:` + 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub String);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    pub fn id(&self) -> KeyId {
        let digest = Sha256::digest(self.0.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        KeyId(format!("ed25519:{hex}"))
    }

    /// The 32 public key bytes, base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    pub fn from_base64(s: &str) -> Result<VerifyingKey, SignError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| SignError::BadKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SignError::BadKey)?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(VerifyingKey)
            .map_err(|_| SignError::BadKey)
    }
}

/// A private key. `Debug` never prints it.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.verifying_key().id())
    }
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// From the 32 secret bytes (as stored, after decryption).
    pub fn from_bytes(bytes: &[u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }
}

/// Sign `report` (its `key_id` must name `key`; every printed field printable, see
/// [`crate::printable`]).
pub fn sign_report(report: Report, key: &SigningKey) -> Result<SignedReport, SignError> {
    let id = key.verifying_key().id();
    if report.key_id != id.0 {
        return Err(SignError::WrongKey {
            named: report.key_id.clone(),
            given: id.0,
        });
    }
    crate::printable::check_report(&report)?;
    crate::canonical::check_new_report(&report)?;
    let bytes = canonical_bytes(&report)?;
    let signature = key.0.sign(&bytes);
    Ok(SignedReport {
        report,
        signature: STANDARD.encode(signature.to_bytes()),
    })
}

/// Check `signed` against `key` (the key its `key_id` names). Strict verification: no
/// malleable or small-order signatures.
pub fn verify_report(signed: &SignedReport, key: &VerifyingKey) -> Result<(), SignError> {
    let id = key.id();
    if signed.report.key_id != id.0 {
        return Err(SignError::WrongKey {
            named: signed.report.key_id.clone(),
            given: id.0,
        });
    }
    let bytes = canonical_bytes(&signed.report)?;
    let raw = STANDARD
        .decode(signed.signature.trim())
        .map_err(|_| SignError::Malformed)?;
    let arr: [u8; 64] = raw.try_into().map_err(|_| SignError::Malformed)?;
    let signature = ed25519_dalek::Signature::from_bytes(&arr);
    key.0
        .verify_strict(&bytes, &signature)
        .map_err(|_| SignError::Mismatch)?;
    // Belt and braces: the plain verifier must agree.
    key.0
        .verify(&bytes, &signature)
        .map_err(|_| SignError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Author, ReportKind};

    fn report_for(key: &SigningKey) -> Report {
        Report {
            case_id: "C-9".into(),
            kind: ReportKind::Final,
            author: Author {
                user_id: "rad1".into(),
                display_name: "Dr A".into(),
            },
            key_id: key.verifying_key().id().0,
            signed_at: "2026-11-23T10:00:00Z".into(),
            study_instance_uids: vec!["1.2".into()],
            findings: "Normal.".into(),
            impression: "No acute finding.".into(),
            measurements: vec![],
        }
    }

    #[test]
    fn signed_reports_verify_and_changed_ones_do_not() {
        let key = SigningKey::generate();
        let signed = sign_report(report_for(&key), &key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verify_report(&signed, &key.verifying_key()), Ok(()));

        let mut tampered = signed.clone();
        tampered.report.impression = "Acute finding.".into();
        assert_eq!(
            verify_report(&tampered, &key.verifying_key()),
            Err(SignError::Mismatch)
        );

        let other = SigningKey::generate();
        let err = verify_report(&signed, &other.verifying_key());
        assert!(matches!(err, Err(SignError::WrongKey { .. })), "{err:?}");

        // Another key's signature under this report's key id.
        let mut forged = signed.clone();
        let mut as_other = report_for(&other);
        as_other.key_id = key.verifying_key().id().0;
        let sig = other
            .0
            .sign(&canonical_bytes(&as_other).unwrap_or_default());
        forged.signature = STANDARD.encode(sig.to_bytes());
        assert_eq!(
            verify_report(&forged, &key.verifying_key()),
            Err(SignError::Mismatch)
        );

        let mut garbled = signed;
        garbled.signature = "not base64!".into();
        assert_eq!(
            verify_report(&garbled, &key.verifying_key()),
            Err(SignError::Malformed)
        );
    }

    #[test]
    fn a_report_must_name_the_signing_key() {
        let key = SigningKey::generate();
        let mut r = report_for(&key);
        r.key_id = "ed25519:ffffffffffffffff".into();
        assert!(matches!(
            sign_report(r, &key),
            Err(SignError::WrongKey { .. })
        ));
    }

    #[test]
    fn key_ids_are_derived_from_the_public_key() {
        // RFC 8032 test 1 secret key; its public key is d75a9801...
        let secret: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let key = SigningKey::from_bytes(&secret);
        let public = key.verifying_key();
        assert_eq!(
            STANDARD.decode(public.to_base64()).unwrap_or_default()[..4],
            [0xd7, 0x5a, 0x98, 0x01]
        );
        let id = public.id();
        assert!(id.0.starts_with("ed25519:") && id.0.len() == 24, "{id}");
        assert_eq!(
            VerifyingKey::from_base64(&public.to_base64()),
            Ok(public.clone())
        );
        assert_eq!(public.id(), id);
        assert!(!format!("{key:?}").contains("9d61"));
        assert_eq!(VerifyingKey::from_base64("AAAA"), Err(SignError::BadKey));
    }
}
