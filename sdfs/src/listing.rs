//! The listing `ls` answers from: every file's entry, by name, kept by one task that follows
//! the metadata bucket ([`idunno_cluster::kv_index`]). A page is read from memory once the listing
//! holds every revision the bucket had when `ls` was asked, so `ls` costs the page it returns
//! (not one read per file in the cluster) and still shows a version as soon as its put is
//! answered.

use super::keys;
use async_nats::jetstream::kv::{Entry, Operation};
use bus_schemas::sdfs::FileInfo;
use idunno_cluster::kv_index::{self, Applied};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Every file's entry, by name.
#[derive(Debug, Default)]
pub struct Listing {
    files: BTreeMap<String, FileInfo>,
}

/// The listing's handle.
pub type Handle = kv_index::Handle<Listing>;

impl kv_index::Book for Listing {
    fn take(&mut self, entry: Entry) -> Applied {
        let Some(name) = keys::name(&entry.key) else {
            return Applied::Same; // the bucket's other keys (the epoch marker)
        };
        if entry.operation != Operation::Put {
            return match self.files.remove(&name) {
                Some(_) => Applied::Changed,
                None => Applied::Same,
            };
        }
        match bus_schemas::decode::<FileInfo>(&entry.value) {
            Ok(file) => {
                self.files.insert(name, file);
                Applied::Changed
            }
            Err(e) => {
                // Left out of listings, as a corrupt entry always was (the keeper keeps its
                // blobs).
                tracing::warn!(key = %entry.key, "corrupt metadata entry, not listed: {e}");
                self.files.remove(&name);
                Applied::Corrupt
            }
        }
    }
}

impl Listing {
    /// The file `name` and the files under the directory `name/` (every file when `name` is
    /// empty), sorted by name: at most `limit` after the name `after`, and the name to
    /// continue after when there are more.
    pub fn page(
        &self,
        name: &str,
        limit: usize,
        after: Option<&str>,
    ) -> (Vec<FileInfo>, Option<String>) {
        let name = name.trim_end_matches('/');
        let dir = if name.is_empty() {
            String::new()
        } else {
            format!("{name}/")
        };
        let mut files = Vec::new();
        // The file itself sorts before everything under it.
        if let (None, Some(file)) = (after, self.files.get(name).filter(|_| !name.is_empty())) {
            files.push(file.clone());
        }
        let from = match after {
            Some(a) if a > dir.as_str() => Bound::Excluded(a.to_string()),
            _ => Bound::Included(dir.clone()),
        };
        let under =
            (self.files.range((from, Bound::Unbounded))).take_while(|(n, _)| n.starts_with(&dir));
        for (_, file) in under {
            if files.len() >= limit {
                let last = files.last().map(|f: &FileInfo| f.name.clone());
                return (files, last);
            }
            files.push(file.clone());
        }
        (files, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Listing {
        let files = names.iter().map(|n| {
            let file = FileInfo {
                name: n.to_string(),
                versions: Vec::new(),
                pinned: Vec::new(),
            };
            (n.to_string(), file)
        });
        Listing {
            files: files.collect(),
        }
    }

    fn names(files: &[FileInfo]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn a_listing_pages_a_file_and_its_directory_in_name_order() {
        let l = listing(&["a", "a-b", "a/x", "a/y/z", "a0", "b"]);
        let (all, next) = l.page("", 10, None);
        assert_eq!(names(&all), ["a", "a-b", "a/x", "a/y/z", "a0", "b"]);
        assert_eq!(next, None);
        let (first, next) = l.page("a", 2, None);
        assert_eq!(
            names(&first),
            ["a", "a/x"],
            "the file, then under a/, not a-b"
        );
        assert_eq!(next.as_deref(), Some("a/x"));
        let (second, next) = l.page("a/", 2, next.as_deref());
        assert_eq!(names(&second), ["a/y/z"]);
        assert_eq!(next, None);
        let (from_file, _) = l.page("a", 5, Some("a"));
        assert_eq!(names(&from_file), ["a/x", "a/y/z"], "after the file itself");
        assert!(l.page("c", 5, None).0.is_empty());
        let (pages, mut after, mut seen) = (l.page("", 1, None), None::<String>, Vec::new());
        seen.extend(names(&pages.0).into_iter().map(String::from));
        after = pages.1.or(after);
        while let Some(a) = after.take() {
            let (p, n) = l.page("", 1, Some(&a));
            seen.extend(names(&p).into_iter().map(String::from));
            after = n;
        }
        assert_eq!(
            seen,
            ["a", "a-b", "a/x", "a/y/z", "a0", "b"],
            "pages of one"
        );
    }
}
