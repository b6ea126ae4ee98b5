//! One file's writes not yet fsynced: whole pages laid over the backing file, which holds only
//! what was made durable.
//!
//! The logical size is never below the backing file's length: writes only grow it, a truncate
//! is applied to both at once, an fsync sets the backing length to it, and a power cut sets it
//! back to the backing length.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

/// The unit of caching, as in the kernel's page cache.
const PAGE: u64 = 4096;

/// The bytes of one open (or recently written) file: the backing file plus dirty pages.
pub(super) struct Cached {
    /// The backing file, open read-write (it may already be unlinked).
    file: File,
    /// The size readers see.
    size: u64,
    /// Pages written since the last fsync, by index; each `PAGE` bytes long.
    pages: BTreeMap<u64, Box<[u8]>>,
    /// When it was last written, while that write is not yet durable.
    mtime: Option<SystemTime>,
}

impl Cached {
    /// Starts caching over `file`, which holds the durable bytes.
    pub(super) fn new(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            size,
            pages: BTreeMap::new(),
            mtime: None,
        })
    }

    /// The backing file.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// The size readers see.
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// When it was last written, if that write is not yet durable.
    pub(super) fn mtime(&self) -> Option<SystemTime> {
        self.mtime
    }

    /// Bytes written and not yet fsynced.
    pub(super) fn dirty_bytes(&self) -> u64 {
        self.pages.len() as u64 * PAGE
    }

    /// Whether some write is not yet durable.
    pub(super) fn is_dirty(&self) -> bool {
        !self.pages.is_empty()
    }

    /// Up to `len` bytes from `offset`, as the last writes left them.
    pub(super) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = self.size.min(offset.saturating_add(len));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; (end - offset) as usize];
        read_upto(&self.file, &mut buf, offset)?;
        for (&idx, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = (idx * PAGE).max(offset);
            let stop = ((idx + 1) * PAGE).min(end);
            let from = &page[(start - idx * PAGE) as usize..(stop - idx * PAGE) as usize];
            buf[(start - offset) as usize..(stop - offset) as usize].copy_from_slice(from);
        }
        Ok(buf)
    }

    /// Writes `data` at `offset` into the cache only.
    pub(super) fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let mut at = offset;
        while at < end {
            let idx = at / PAGE;
            let stop = ((idx + 1) * PAGE).min(end);
            if !self.pages.contains_key(&idx) {
                let page = self.load(idx)?;
                self.pages.insert(idx, page);
            }
            if let Some(page) = self.pages.get_mut(&idx) {
                let to = &mut page[(at - idx * PAGE) as usize..(stop - idx * PAGE) as usize];
                to.copy_from_slice(&data[(at - offset) as usize..(stop - offset) as usize]);
            }
            at = stop;
        }
        self.size = self.size.max(end);
        self.mtime = Some(SystemTime::now());
        Ok(())
    }

    /// Page `idx` as it is now (durable bytes; zeros past the backing file's end).
    fn load(&self, idx: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        read_upto(&self.file, &mut page, idx * PAGE)?;
        Ok(page)
    }

    /// Sets the size, on the backing file at once (a truncate is metadata, passed through).
    pub(super) fn truncate(&mut self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.pages.retain(|&idx, _| idx * PAGE < size);
        let tail = size % PAGE;
        if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
            page[tail as usize..].fill(0);
        }
        self.size = size;
        Ok(())
    }

    /// Makes every write so far durable: writes the dirty pages through to the backing file.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        for (&idx, page) in &self.pages {
            let start = idx * PAGE;
            let len = PAGE.min(self.size.saturating_sub(start));
            self.file.write_all_at(&page[..len as usize], start)?;
        }
        if self.file.metadata()?.len() != self.size {
            self.file.set_len(self.size)?;
        }
        self.pages.clear();
        self.mtime = None;
        Ok(())
    }

    /// Forgets every write not yet durable, as a power cut does.
    pub(super) fn forget(&mut self) -> io::Result<()> {
        self.pages.clear();
        self.mtime = None;
        self.size = self.file.metadata()?.len();
        Ok(())
    }
}

/// Fills `buf` from `file` at `offset` as far as the file goes (the rest stays as it is).
fn read_upto(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(durable: &[u8]) -> (tempfile::TempDir, Cached) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, durable).unwrap();
        let file = File::options().read(true).write(true).open(&path).unwrap();
        (dir, Cached::new(file).unwrap())
    }

    fn backing(dir: &tempfile::TempDir) -> Vec<u8> {
        std::fs::read(dir.path().join("f")).unwrap()
    }

    #[test]
    fn writes_are_read_back_but_reach_the_backing_file_only_when_synced() {
        let (dir, mut c) = cached(b"durable");
        c.write(5000, b"later").unwrap();
        c.write(0, b"D").unwrap();
        assert_eq!(c.size(), 5005);
        let all = c.read(0, 10_000).unwrap();
        assert_eq!(&all[..7], b"Durable");
        assert!(all[7..5000].iter().all(|&b| b == 0));
        assert_eq!(&all[5000..], b"later");
        assert_eq!(backing(&dir), b"durable");
        c.sync().unwrap();
        assert_eq!(backing(&dir), all);
        assert!(!c.is_dirty());
    }

    #[test]
    fn a_power_cut_forgets_unsynced_writes_only() {
        let (dir, mut c) = cached(b"");
        c.write(0, &[7u8; 10_000]).unwrap();
        c.sync().unwrap();
        c.write(10_000, b"lost").unwrap();
        c.write(3, b"lost").unwrap();
        c.forget().unwrap();
        assert_eq!(c.read(0, 20_000).unwrap(), vec![7u8; 10_000]);
        assert_eq!(backing(&dir), vec![7u8; 10_000]);
    }

    #[test]
    fn a_truncate_is_durable_at_once_and_cuts_cached_pages() {
        let (dir, mut c) = cached(b"0123456789");
        c.write(0, &[1u8; 9000]).unwrap();
        c.truncate(4).unwrap();
        assert_eq!(backing(&dir), b"0123");
        c.truncate(6000).unwrap();
        let all = c.read(0, 10_000).unwrap();
        assert_eq!(all.len(), 6000);
        assert_eq!(&all[..4], &[1u8; 4]);
        assert!(
            all[4..].iter().all(|&b| b == 0),
            "no stale bytes past a truncate"
        );
    }
}
