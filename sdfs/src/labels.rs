//! The label beside each blob (`<data-dir>/sdfs/labels/<blob>`): the name, version, size,
//! sha256 and attributes of the version the bytes belong to, so that lost metadata can be
//! rebuilt from what the nodes hold (`idunno fsck --rebuild`).
//!
//! A label is written (and fsynced) before its blob is kept, so a kept blob always has one
//! unless it was stored by an older version; a label without a blob is removed by the keeper.

use super::blobs::{BlobError, Blobs};
use bus_schemas::fsck::BlobLabel;
use bus_schemas::{decode, encode};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The longest label file read (a label holds a name of at most 1 KiB and bounded attributes).
pub const MAX_LABEL_BYTES: u64 = 256 * 1024;

fn path(blob: &str) -> Path {
    Path::from(format!("labels/{blob}"))
}

impl Blobs {
    /// Writes (replacing) the label of `blob`, fsynced.
    pub async fn write_label(&self, blob: &str, label: &BlobLabel) -> Result<(), BlobError> {
        let bytes = encode(label).map_err(|e| BlobError::Source {
            blob: blob.into(),
            reason: e.to_string(),
        })?;
        self.store.put(&path(blob), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// The label of `blob`: `None` if it has none, or one that is too large or does not decode
    /// (then it is as good as none; the blob is reported unlabelled).
    pub async fn label(&self, blob: &str) -> Result<Option<BlobLabel>, BlobError> {
        let head = match self.store.head(&path(blob)).await {
            Ok(h) => h,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if head.size > MAX_LABEL_BYTES {
            tracing::warn!(%blob, size = head.size, "ignoring an oversized blob label");
            return Ok(None);
        }
        let bytes = match self.store.get(&path(blob)).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match decode::<BlobLabel>(&bytes) {
            Ok(label) => Ok(Some(label)),
            Err(e) => {
                tracing::warn!(%blob, "ignoring an undecodable blob label: {e}");
                Ok(None)
            }
        }
    }

    /// Removes the label of `blob` (absent is fine).
    pub async fn delete_label(&self, blob: &str) -> Result<(), BlobError> {
        match self.store.delete(&path(blob)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ids of every label on disk, with when each was written.
    pub async fn labelled(&self) -> Result<Vec<(String, std::time::SystemTime)>, BlobError> {
        let prefix = Path::from("labels");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                Some((name, m.last_modified.into()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> BlobLabel {
        BlobLabel {
            name: "a/b".into(),
            version: None,
            size: 5,
            sha256: "x".into(),
            created_ms: 1,
            replication: None,
            attrs: Default::default(),
        }
    }

    #[tokio::test]
    async fn labels_are_written_read_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        assert_eq!(blobs.label("b1").await.unwrap(), None);
        blobs.write_label("b1", &label()).await.unwrap();
        assert_eq!(blobs.label("b1").await.unwrap(), Some(label()));
        let mut numbered = label();
        numbered.version = Some(3);
        blobs.write_label("b1", &numbered).await.unwrap();
        assert_eq!(blobs.label("b1").await.unwrap(), Some(numbered));
        let listed = blobs.labelled().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, "b1");
        blobs.delete_label("b1").await.unwrap();
        assert_eq!(blobs.label("b1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_corrupt_or_huge_label_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("labels")).unwrap();
        std::fs::write(dir.path().join("labels/b2"), b"\x81\xa1x\x01").unwrap();
        assert_eq!(blobs.label("b2").await.unwrap(), None);
        let huge = vec![0x80u8; MAX_LABEL_BYTES as usize + 1];
        std::fs::write(dir.path().join("labels/b3"), huge).unwrap();
        assert_eq!(blobs.label("b3").await.unwrap(), None);
    }
}
