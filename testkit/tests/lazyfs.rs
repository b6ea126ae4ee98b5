//! The power-cut layer itself: what an fsync keeps and what a power cut forgets.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use testkit::lazyfs::{Forgotten, LazyFs};

fn write(path: &std::path::Path, bytes: &[u8], fsync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if fsync {
        f.sync_all().unwrap();
    }
}

#[test]
fn a_write_without_fsync_is_read_back_until_a_power_cut_then_gone() {
    let fs = LazyFs::mount();
    let path = fs.path().join("unsynced");
    write(&path, b"not yet durable", false);
    assert_eq!(
        fs::read(&path).unwrap(),
        b"not yet durable",
        "read-your-writes"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 15);
    assert_eq!(fs::read(fs.backing().join("unsynced")).unwrap(), b"");
    let lost = fs.power_cut();
    let expected = Forgotten {
        files: 1,
        bytes: 4096,
        paths: vec![Some("unsynced".into())],
    };
    assert_eq!(lost, expected);
    // Created (metadata is durable at once), but its bytes are gone.
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn a_write_with_fsync_survives_and_later_appends_do_not() {
    let fs = LazyFs::mount();
    let path = fs.path().join("synced");
    write(&path, b"durable", true);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b" and lost").unwrap();
    drop(f);
    assert_eq!(fs::read(&path).unwrap(), b"durable and lost");
    fs.power_cut();
    assert_eq!(fs::read(&path).unwrap(), b"durable");
}

#[test]
fn an_fsynced_file_renamed_survives_and_an_unsynced_one_comes_back_empty() {
    let fs = LazyFs::mount();
    let dir = fs.path().join("a/b");
    fs::create_dir_all(&dir).unwrap();
    write(&dir.join("tmp1"), b"synced then renamed", true);
    fs::rename(dir.join("tmp1"), dir.join("kept")).unwrap();
    write(&dir.join("tmp2"), b"renamed unsynced", false);
    fs::rename(dir.join("tmp2"), dir.join("empty")).unwrap();
    fs::rename(fs.path().join("a"), fs.path().join("c")).unwrap();
    fs.power_cut();
    let dir = fs.path().join("c/b");
    assert_eq!(fs::read(dir.join("kept")).unwrap(), b"synced then renamed");
    assert_eq!(fs::read(dir.join("empty")).unwrap(), b"");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["empty", "kept"]);
}

#[test]
fn an_o_sync_write_and_a_truncate_are_durable_at_once() {
    let fs = LazyFs::mount();
    let path = fs.path().join("osync");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_SYNC.bits())
        .open(&path)
        .unwrap();
    f.write_all(&[9u8; 10_000]).unwrap();
    f.set_len(5000).unwrap();
    drop(f);
    fs.power_cut();
    assert_eq!(fs::read(&path).unwrap(), vec![9u8; 5000]);
}

#[test]
fn writes_in_place_keep_the_synced_bytes_around_them() {
    use std::os::unix::fs::FileExt;
    let fs = LazyFs::mount();
    let path = fs.path().join("blk");
    write(&path, &[1u8; 9000], true);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_at(b"xyz", 4094).unwrap();
    let mut got = [0u8; 7];
    f.read_at(&mut got, 4092).unwrap();
    assert_eq!(&got, b"\x01\x01xyz\x01\x01");
    drop(f);
    fs.power_cut();
    assert_eq!(fs::read(&path).unwrap(), vec![1u8; 9000]);
}
