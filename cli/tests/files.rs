//! The SDFS commands of `idunno` against a real local cluster.

use std::path::Path;

mod common;

use common::{json, Local, IDUNNO};

#[test]
fn put_get_ls_versions_store_putdir_deldir_delete() {
    assert!(
        Path::new(IDUNNO).with_file_name("idunno-node").exists(),
        "build idunno-node first"
    );
    let c = Local::up(4);
    let root = c.dir.path();
    std::fs::write(root.join("a.txt"), "first\n").unwrap();
    std::fs::write(root.join("b.txt"), "second version\n").unwrap();
    c.ok(&["put", "a.txt", "docs/a.txt"]);
    c.ok(&["put", "b.txt", "docs/a.txt"]);
    let listing = json(&c.ok(&["--json", "ls", "docs/a.txt"]));
    let versions = listing[0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["replicas"].as_array().unwrap().len(), 4);

    c.ok(&["get", "docs/a.txt", "got.txt"]);
    assert_eq!(
        std::fs::read_to_string(root.join("got.txt")).unwrap(),
        "second version\n"
    );
    c.ok(&["get", "docs/a.txt", "old.txt", "--version", "1"]);
    assert_eq!(
        std::fs::read_to_string(root.join("old.txt")).unwrap(),
        "first\n"
    );

    c.ok(&["get-versions", "docs/a.txt", "2", "all.txt"]);
    let all = std::fs::read_to_string(root.join("all.txt")).unwrap();
    let want = "=== docs/a.txt version 2 (15 bytes) ===\nsecond version\n=== docs/a.txt version 1 (6 bytes) ===\nfirst\n";
    assert_eq!(all, want);
    c.ok(&["get-versions", "docs/a.txt", "2", "split", "--split"]);
    assert_eq!(
        std::fs::read_to_string(root.join("split.v1")).unwrap(),
        "first\n"
    );
    // Existing local files are left alone without --force, and replaced with it.
    std::fs::write(root.join("mine.txt"), "mine\n").unwrap();
    let err = c.err(&["get-versions", "docs/a.txt", "1", "mine.txt"]);
    assert!(err.contains("mine.txt exists: pass --force"), "{err}");
    std::fs::write(root.join("split.v2"), "mine\n").unwrap();
    let err = c.err(&["get-versions", "docs/a.txt", "2", "split", "--split"]);
    assert!(err.contains("split.v2 exists: pass --force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("mine.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("split.v2")).unwrap(),
        "mine\n"
    );
    c.ok(&["get-versions", "docs/a.txt", "1", "mine.txt", "--force"]);
    let want = "=== docs/a.txt version 2 (15 bytes) ===\nsecond version\n";
    assert_eq!(
        std::fs::read_to_string(root.join("mine.txt")).unwrap(),
        want
    );
    // A failed get-versions (no such file) leaves nothing behind.
    let before: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    c.err(&["get-versions", "docs/none.txt", "1", "none.txt"]);
    let after: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len(), "{after:?}");

    let store = json(&c.ok(&["--json", "store"]));
    assert_eq!(
        store.as_object().unwrap().len(),
        4,
        "every node holds the file"
    );
    let one = json(&c.ok(&["--json", "store", "--node", "n1"]));
    assert_eq!(one["n1"].as_array().unwrap().len(), 2);

    std::fs::create_dir_all(root.join("tree/sub")).unwrap();
    std::fs::write(root.join("tree/x"), "x").unwrap();
    std::fs::write(root.join("tree/sub/y"), "y").unwrap();
    c.ok(&["putdir", "tree", "t"]);
    let names: Vec<String> = json(&c.ok(&["--json", "ls", "t"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["t/sub/y", "t/x"]);
    assert!(c.ok(&["deldir", "t"]).contains("deleted 2 file(s)"));

    assert!(c
        .err(&["put", "a.txt", "/abs"])
        .contains("cannot start with '/'"));
    assert!(c.err(&["put", "missing.txt", "m"]).contains("missing.txt"));
    assert!(c.err(&["get", "nope", "x"]).contains("no file \"nope\""));
    c.ok(&["delete", "docs/a.txt"]);
    assert!(c
        .err(&["ls", "docs/a.txt"])
        .contains("no file or directory"));
}

/// Every file left in `dir` whose name marks a part file.
fn part_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("idunno-part"))
        .collect()
}

#[test]
fn get_uses_its_own_part_file_never_follows_symlinks_and_never_overwrites() {
    use std::os::unix::fs::symlink;
    let c = Local::up(1);
    let root = c.dir.path();
    // Two files whose names share the stem "x" (the old part file was "x.idunno-part").
    let tar: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let gz: Vec<u8> = (0..3_000_000u32).map(|i| (i % 13) as u8).collect();
    std::fs::write(root.join("x.tar"), &tar).unwrap();
    std::fs::write(root.join("x.gz"), &gz).unwrap();
    c.ok(&["put", "x.tar", "d/x.tar"]);
    c.ok(&["put", "x.gz", "d/x.gz"]);
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();

    // Both at once into one directory: each gets its own bytes.
    let spawn = |name: &str, dest: &str| {
        std::process::Command::new(common::IDUNNO)
            .args(["--nats", &c.url, "get", name, dest])
            .env("IDUNNO_NATS_IDENTITY", c.operator())
            .current_dir(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("d/x.tar", "out/x.tar");
    let b = spawn("d/x.gz", "out/x.gz");
    for child in [a, b] {
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    assert!(
        std::fs::read(out.join("x.tar")).unwrap() == tar,
        "x.tar intact"
    );
    assert!(
        std::fs::read(out.join("x.gz")).unwrap() == gz,
        "x.gz intact"
    );
    assert!(part_files(&out).is_empty());

    // A symlink planted where the old part file went is neither followed nor touched.
    std::fs::write(root.join("victim.txt"), "precious\n").unwrap();
    symlink(root.join("victim.txt"), out.join("y.idunno-part")).unwrap();
    c.ok(&["get", "d/x.gz", "out/y.bin"]);
    assert!(std::fs::read(out.join("y.bin")).unwrap() == gz);
    assert_eq!(
        std::fs::read_to_string(root.join("victim.txt")).unwrap(),
        "precious\n"
    );
    assert!(std::fs::symlink_metadata(out.join("y.idunno-part"))
        .unwrap()
        .is_symlink());
    std::fs::remove_file(out.join("y.idunno-part")).unwrap();

    // An existing destination is refused without --force and left as it was.
    std::fs::write(out.join("keep.txt"), "mine\n").unwrap();
    let e = c.err(&["get", "d/x.tar", "out/keep.txt"]);
    assert!(e.contains("already exists") && e.contains("--force"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine\n"
    );
    c.ok(&["get", "d/x.tar", "out/keep.txt", "--force"]);
    assert!(std::fs::read(out.join("keep.txt")).unwrap() == tar);
    // A symlink as the destination: refused, and with --force replaced, not followed.
    symlink(root.join("victim.txt"), out.join("link")).unwrap();
    assert!(c
        .err(&["get", "d/x.gz", "out/link"])
        .contains("already exists"));
    c.ok(&["get", "d/x.gz", "out/link", "--force"]);
    assert!(!std::fs::symlink_metadata(out.join("link"))
        .unwrap()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(root.join("victim.txt")).unwrap(),
        "precious\n"
    );

    // A failed get leaves nothing behind.
    assert!(c.err(&["get", "d/nope", "out/nope"]).contains("no file"));
    assert!(!out.join("nope").exists());
    assert!(part_files(&out).is_empty(), "{:?}", part_files(&out));
    let help = c.ok(&["get", "--help"]);
    assert!(
        help.contains("--force") && help.contains("part file"),
        "{help}"
    );
}
