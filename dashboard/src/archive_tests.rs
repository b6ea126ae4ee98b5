use super::*;

/// `(path, kind, bytes)` of each entry of an archive.
type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a [u8])];

/// A tar archive of `entries`, written raw so that hostile paths survive.
fn archive(entries: Entries<'_>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

const FILE: tar::EntryType = tar::EntryType::Regular;
const DIR: tar::EntryType = tar::EntryType::Directory;

#[test]
fn a_browser_folder_is_read_inside_its_one_top_folder() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive(&[
        ("pics/", DIR, b""),
        ("pics/train/a/1.png", FILE, b"one"),
        ("pics/train/b/2.png", FILE, b"two"),
        ("pics/.DS_Store", FILE, b"junk"),
    ]);
    let root = unpack(&tar[..], dir.path()).unwrap();
    assert_eq!(root, dir.path().join("pics"));
    assert_eq!(std::fs::read(root.join("train/b/2.png")).unwrap(), b"two");
    assert!(!root.join(".DS_Store").exists(), "hidden files are skipped");
}

#[test]
fn a_folder_of_splits_at_the_top_is_read_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let tar = archive(&[
        ("./train/a/1.png", FILE, b"1"),
        ("test/a/2.png", FILE, b"2"),
    ]);
    assert_eq!(unpack(&tar[..], dir.path()).unwrap(), dir.path());
    assert!(dir.path().join("train/a/1.png").is_file());
}

#[test]
fn hostile_archives_are_refused_with_the_reason() {
    let cases: [(Entries<'_>, &str); 6] = [
        (&[("../evil.png", FILE, b"x")], "must stay inside"),
        (&[("/etc/evil.png", FILE, b"x")], "must stay inside"),
        (
            &[("pics/link", tar::EntryType::Symlink, b"")],
            "not a symbolic link",
        ),
        (
            &[("pics/dev", tar::EntryType::Char, b"")],
            "not a character device",
        ),
        (
            &[("a/1.png", FILE, b"x"), ("a/1.png", FILE, b"y")],
            "in the archive twice",
        ),
        (
            &[("a/b/c/d/e/f/g/h/i.png", FILE, b"x")],
            "levels of folders",
        ),
    ];
    for (entries, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(&archive(entries)[..], dir.path()).unwrap_err();
        assert!(e.to_string().contains(why), "{entries:?}: {e}");
        assert!(
            !dir.path().parent().unwrap().join("evil.png").exists(),
            "nothing is written outside"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let e = unpack(&archive(&[("a/", DIR, b"")])[..], dir.path()).unwrap_err();
    assert!(matches!(e, ArchiveError::Empty), "{e}");
    let e = unpack(&b"not a tar archive at all"[..], dir.path()).unwrap_err();
    assert!(
        matches!(e, ArchiveError::Unreadable(_) | ArchiveError::Empty),
        "{e}"
    );
}
