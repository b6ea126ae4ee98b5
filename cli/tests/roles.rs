//! The README's command reference on a secure local cluster (`idunno local up`, the default):
//! the operator runs every command; a viewer runs the reading ones and the NATS server refuses
//! it the others, each with one sentence that says so.

mod common;

use common::{image_folder, json, Local, IDUNNO};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TORCHSCRIPT: &str = "node/tests/fixtures/torchscript/fashion_cnn.pt";

/// Runs `idunno` in the cluster's directory as the identity in `identity`.
fn run_as(c: &Local, identity: &Path, args: &[&str]) -> Output {
    Command::new(IDUNNO)
        .args(["--nats", &c.url])
        .args(args)
        .current_dir(c.dir.path())
        .env_remove("IDUNNO_NATS_URL")
        .env("IDUNNO_NATS_IDENTITY", identity)
        .output()
        .expect("run idunno")
}

fn says(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_operator_runs_every_command_and_a_viewer_only_reads() {
    let c = Local::up(3);
    let root = c.dir.path();
    let op = |args: &[&str]| c.ok(args);
    image_folder(&root.join("halves"), 8, 8);
    std::fs::write(root.join("f.txt"), "one\n").unwrap();
    std::fs::create_dir_all(root.join("tree/sub")).unwrap();
    std::fs::write(root.join("tree/sub/x.txt"), "x\n").unwrap();

    // Membership.
    op(&["members"]);
    op(&["list_mem", "--node", "n1"]);
    op(&["stat"]);
    op(&["droprate", "off"]);
    op(&["clear-log", "--node", "n2"]);
    op(&["leave", "n3"]);
    op(&["join", "n3"]);
    // Files.
    op(&["put", "f.txt", "f.txt"]);
    op(&["put", "f.txt", "f.txt"]);
    op(&["get", "f.txt", "back.txt"]);
    op(&["ls"]);
    op(&["store"]);
    op(&["get-versions", "f.txt", "2", "versions.txt"]);
    // `fsck` exits 1 while deleted blobs await collection (local up's probe file's, here).
    let fsck = c.run(&["fsck"]);
    assert!(says(&fsck).contains("healthy"), "fsck: {}", says(&fsck));
    op(&["putdir", "tree", "tree"]);
    op(&["deldir", "tree"]);
    // Datasets, models, training, inference.
    op(&["dataset", "import", "halves", "halves"]);
    op(&["dataset", "import", "fashion-mnist"]);
    op(&["datasets"]);
    op(&["train", "mlp", "halves", "--epochs", "1"]);
    let torchscript = testkit::repo_dir().join(TORCHSCRIPT);
    op(&[
        "model",
        "import",
        "fm",
        torchscript.to_str().expect("a UTF-8 path"),
        "--dataset",
        "fashion-mnist",
        "--mean",
        "0.286",
        "--std",
        "0.353",
    ]);
    op(&["models"]);
    op(&["infer", "mlp", "halves/test/left/0.png"]);
    // Model routes: an alias, a second version rolled out as a canary, promoted, rolled back.
    op(&["model", "alias", "mlp", "production", "1"]);
    op(&[
        "infer",
        "mlp@production",
        "halves/test/left/0.png",
        "--labels",
        "0",
    ]);
    op(&["infer", "mlp:1", "halves/test/left/0.png"]);
    op(&["train", "mlp", "halves", "--epochs", "1"]);
    op(&["model", "rollout", "mlp", "2", "--canary", "10%"]);
    op(&["model", "status", "mlp"]);
    op(&["model", "promote", "mlp"]);
    op(&["model", "rollback", "mlp"]);
    op(&["serve", "mlp", "4", "--dataset", "halves", "--passes", "1"]);
    let job = json(&op(&[
        "--json",
        "serve",
        "mlp",
        "4",
        "--dataset",
        "halves",
        "--continuous",
        "--detach",
    ]));
    let id = job["job_id"].as_str().expect("a job id").to_string();
    op(&["job-stats", &id]);
    op(&["batch", &id, "8"]);
    op(&["assignments"]);
    op(&["qps", "local"]);
    op(&["qps", "global"]);
    op(&["qps"]);
    op(&["workers"]);
    op(&["jobs"]);
    op(&["job", &id]);
    // The cluster's replication (one server: one copy).
    op(&["cluster", "status"]);
    op(&["cluster", "replicas", "1"]);
    op(&["cluster", "replicas", "auto"]);
    op(&["local", "status", "--dir", "cluster"]);
    op(&["secure", "list", c.secure().to_str().unwrap()]);

    // A viewer reads all of it.
    let viewer = c.secure().join("identities/viewer");
    for args in [
        &["members"][..],
        &["ls"],
        &["get", "f.txt", "viewer.txt"],
        &["get-versions", "f.txt", "2", "viewer-versions.txt"],
        &["store"],
        &["datasets"],
        &["models"],
        &["model", "status", "mlp"],
        &["jobs"],
        &["job", &id],
        &["job-stats", &id],
        &["completed"],
        &["qps"],
        &["cluster", "status"],
        &["infer", "mlp", "halves/test/left/0.png"],
        // Without each node's cached models: they come from `stat`, a control request.
        &["workers"],
    ] {
        let out = run_as(&c, &viewer, args);
        assert!(out.status.success(), "viewer {args:?}: {}", says(&out));
    }
    // `fsck` reads every node's inventory (exit 1 while deleted blobs await collection).
    let fsck = run_as(&c, &viewer, &["fsck"]);
    assert!(
        says(&fsck).contains("healthy"),
        "viewer fsck: {}",
        says(&fsck)
    );
    assert!(
        !says(&fsck).contains("refused"),
        "viewer fsck: {}",
        says(&fsck)
    );
    // And is refused the rest, by the server, in one sentence.
    for args in [
        &["put", "f.txt", "g.txt"][..],
        &["delete", "f.txt"],
        &["deldir", "halves"],
        &["stat"],
        &["droprate", "high"],
        &["leave", "n2"],
        &["clear-log"],
        &["cancel", &id],
        &["batch", &id, "2"],
        &["qps", "local"],
        &["train", "mlp", "halves", "--detach"],
        &["serve", "mlp", "4", "--dataset", "halves", "--detach"],
        &["cluster", "replicas", "1"],
        &["model", "alias", "mlp", "staging", "1"],
        &["model", "rollback", "mlp"],
    ] {
        let out = run_as(&c, &viewer, args);
        assert!(!out.status.success(), "viewer {args:?} succeeded");
        assert!(
            says(&out).contains("refused"),
            "viewer {args:?}: {}",
            says(&out)
        );
    }
    assert!(
        c.ok(&["ls", "f.txt"]).contains("f.txt"),
        "the viewer changed nothing"
    );

    // The job ends by the operator's hand; `watch` follows it to the end (exit 1: cancelled).
    op(&["cancel", &id]);
    let watched = c.run(&["watch", &id]);
    assert_eq!(watched.status.code(), Some(1), "{}", says(&watched));
    op(&["completed"]);
    op(&["delete", "f.txt"]);

    // A node killed and started again by `local restart`.
    let state = json(&std::fs::read_to_string(root.join("cluster/local.json")).unwrap());
    let n3 = state["nodes"].as_array().unwrap()[2]["pid"]
        .as_i64()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(n3 as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .run(&["local", "restart", "n3", "--dir", "cluster"])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "n3 was not restarted");
        std::thread::sleep(Duration::from_millis(100));
    }
}
