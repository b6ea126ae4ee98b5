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
