//! Where DICOM objects, key images and the report PDFs as sent live: an `object_store` (a
//! local folder by default, S3-compatible by URL), content-addressed by the sha256 of the
//! bytes.
//!
//! A stored object is written whole or not at all (the local store writes a temporary file
//! and renames it; S3 PUTs are atomic), and an object is only referenced by the database after
//! it is written, so a failed upload leaves no row pointing at a partial object. Objects
//! written for an upload that is then refused are deleted again unless another row uses them
//! (`intake` serializes that deletion with other uploads' inserts, object by object).
//!
//! Owns: object keys and bytes. Must not: know about cases, roles or DICOM.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

/// Store errors; messages name the object key (a hash), never patient data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
    #[error("object store location {location:?}: {message}")]
    Config { location: String, message: String },
    #[error("stored object {key} is damaged: its sha256 does not match")]
    Damaged { key: String },
}

/// The object store and how it was named (for messages).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    location: String,
}

/// The key of `bytes`: their sha256 in hex.
pub fn content_key(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `dicom/ab/cd/abcd...`: two levels of fan-out keep folders small on a local disk.
fn object_path(key: &str) -> ObjectPath {
    let a = key.get(0..2).unwrap_or("00");
    let b = key.get(2..4).unwrap_or("00");
    ObjectPath::from(format!("dicom/{a}/{b}/{key}"))
}

fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    /// Open a store: `s3://bucket[/prefix]` (credentials, region and endpoint from the usual
    /// `AWS_*` variables, e.g. `AWS_ENDPOINT_URL` for an S3-compatible server; plain http is
    /// allowed only when `AWS_ALLOW_HTTP=true`), `file:///folder`, or a folder path (created
    /// when missing).
    pub fn open(location: &str) -> Result<Store, StoreError> {
        let config = |message: String| StoreError::Config {
            location: location.to_string(),
            message,
        };
        let inner: Arc<dyn ObjectStore> = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket_and_prefix, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (format!("s3://{bucket}"), prefix.trim_matches('/')),
                None => (location.to_string(), ""),
            };
            // reqwest (inside object_store) speaks TLS through rustls, which needs a
            // process-wide provider: ring, as everywhere in Overread.
            let _ = rustls::crypto::ring::default_provider().install_default();
            // A few quick retries, not object_store's ten over three minutes: an upload or a
            // retrieval is waited on by a person, and the client retries the whole request.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            };
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(bucket_and_prefix)
                .with_retry(retry)
                .build()?;
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            }
        } else {
            let folder = location.strip_prefix("file://").unwrap_or(location);
            if folder.contains("://") {
                return Err(config(
                    "expected a folder, file:///folder or s3://bucket/prefix".into(),
                ));
            }
            std::fs::create_dir_all(folder).map_err(|e| config(e.to_string()))?;
            // fsync of the file and its folder before `put` returns: the rows that point at an
            // object commit after it (SQLite with synchronous FULL), so the object must be on
            // disk first, or a power cut leaves rows pointing at nothing.
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(folder)?.with_fsync(true),
            )
        };
        Ok(Store {
            inner,
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Store `bytes` under their content key and return the key. Already stored: nothing is
    /// written again (`false` in the second field). The write is atomic.
    pub async fn put(&self, bytes: impl Into<bytes::Bytes>) -> Result<(String, bool), StoreError> {
        let bytes: bytes::Bytes = bytes.into();
        let key = content_key(&bytes);
        let path = object_path(&key);
        match self.inner.head(&path).await {
            Ok(meta) if meta.size == bytes.len() as u64 => return Ok((key, false)),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.put(&path, PutPayload::from(bytes)).await?;
        Ok((key, true))
    }

    /// The bytes stored under `key`, checked against it.
    pub async fn get(&self, key: &str) -> Result<bytes::Bytes, StoreError> {
        if !valid_key(key) {
            return Err(StoreError::Damaged {
                key: key.to_string(),
            });
        }
        let bytes = self.inner.get(&object_path(key)).await?.bytes().await?;
        if content_key(&bytes) != key {
            return Err(StoreError::Damaged {
                key: key.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.inner.head(&object_path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove an object (an upload that was refused after its objects were written).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&object_path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn content_addressed_atomic_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let (key, new) = store.put(b"DICM".to_vec()).await.unwrap();
        assert!(new);
        assert_eq!(key, content_key(b"DICM"));
        let (again, new) = store.put(b"DICM".to_vec()).await.unwrap();
        assert_eq!((again.as_str(), new), (key.as_str(), false));
        assert_eq!(&store.get(&key).await.unwrap()[..], b"DICM");
        // No temporary files are left beside the object.
        let files: Vec<_> = walk(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        // A damaged object is refused, not served.
        std::fs::write(&files[0], b"DICN").unwrap();
        assert!(matches!(
            store.get(&key).await,
            Err(StoreError::Damaged { .. })
        ));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(store.get(&key).await.is_err());
        assert!(store.get("../../etc/passwd").await.is_err());
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
