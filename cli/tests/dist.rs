//! The relocatable bundle (`infra/dist.sh`, which `make dist` runs on the release build): made
//! from this build's binaries, unpacked into a fresh directory and run with the build's tool
//! directory (libtorch) and this checkout's dashboard hidden from the process, it resolves
//! every library inside the bundle or the system, and runs a cluster of 3 machines (network
//! namespaces) that stores a file and serves the dashboard.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::{wait_until, Machines};

/// A script that runs its arguments in a mount namespace where the build's tool directory and
/// this checkout's dashboard are empty.
fn hiding_wrapper(dir: &Path, run: &Path) -> PathBuf {
    let tools = bus_client::tools_home();
    let dashboard = testkit::repo_dir().join("frontend/dist");
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c '\n\
         mount -t tmpfs hidden \"$1\" && mount -t tmpfs hidden \"$2\" || exit 97\n\
         shift 2\nexec \"$@\"' hide {} {} {} \"$@\"\n",
        tools.display(),
        dashboard.display(),
        run.display()
    );
    let path = dir.join(format!(
        "hidden-{}",
        run.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, script).unwrap();
    let chmod = Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    assert!(chmod.success());
    path
}

#[tokio::test]
async fn the_bundle_runs_three_machines_without_the_build_or_the_checkout() {
    if let Some(why) = testkit::machines_unavailable() {
        panic!("{why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = common::bundle::unpacked(dir.path());
    for f in [
        "bin/idunno",
        "bin/idunno-node",
        "share/idunno/dashboard/index.html",
    ] {
        assert!(bundle.join(f).is_file(), "the bundle holds {f}");
    }
    assert!(bundle.join("etc/nats/cluster-a.conf").is_file());
    assert!(bundle.join("etc/systemd/idunno-node@.service").is_file());

    // Every library resolves inside the bundle or the system, with the tools hidden.
    let ldd = hiding_wrapper(dir.path(), Path::new("/usr/bin/ldd"));
    let out = Command::new(&ldd)
        .arg(bundle.join("bin/idunno-node"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle_lib = bundle.join("lib").canonicalize().unwrap();
    let mut inside = 0;
    for line in text.lines().filter(|l| l.contains("=>")) {
        assert!(!line.contains("not found"), "{line}\n{text}");
        let path = line
            .split("=>")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let system = ["/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"];
        let real = Path::new(path)
            .canonicalize()
            .unwrap_or_else(|_| path.into());
        if real.starts_with(&bundle_lib) {
            inside += 1;
        } else {
            assert!(
                system.iter().any(|s| path.starts_with(s)),
                "{line} is outside the bundle"
            );
        }
    }
    assert!(inside >= 2, "libtorch comes from the bundle:\n{text}");
    let node = hiding_wrapper(dir.path(), &bundle.join("bin/idunno-node"));
    let version = Command::new(&node).arg("--version").output().unwrap();
    assert!(
        version.status.success(),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );

    // Three machines of bundle nodes.
    let mut m = Machines::start(&node, 3);
    m.spawn_nodes(1);
    let client = m.client_of(0).await;
    m.wait_all_alive(&client, Duration::from_secs(60)).await;
    let fs = bus_client::sdfs::SdfsClient::new(client.clone(), Duration::from_secs(10));
    let file = dir.path().join("f");
    std::fs::write(&file, b"from the bundle").unwrap();
    wait_until("a put succeeds", Duration::from_secs(60), || async {
        fs.put(&file, "bundle/f", None).await.ok()
    })
    .await;
    let back = dir.path().join("back");
    fs.get("bundle/f", None, &back, None).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"from the bundle");
    // The dashboard comes from the bundle (this checkout's is hidden).
    let rec = testkit::views::view(&client, "a1").await.unwrap();
    let addr = rec
        .iter()
        .find(|r| r.id == "a1")
        .unwrap()
        .http
        .clone()
        .unwrap();
    let page = testkit::http::get(&addr, "/", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("<html") || page.body.contains("<!doctype"),
        "{}",
        page.body
    );
}
