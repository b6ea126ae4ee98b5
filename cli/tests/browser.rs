//! The dashboard in a real browser: a cluster started by `idunno local up`, a model trained
//! through the CLI, then `frontend/e2e/dashboard.e2e.test.ts` drives Debian's Chromium
//! (playwright-core) against it, running CLI commands and `kill -9` as it goes, submitting a
//! job from the form and uploading a TorchScript model and an image folder.
//! The cluster is secure (the default): the dashboard serves HTTPS with a certificate of the
//! cluster's CA and requires the token `local up` generated, so the test logs in on the page
//! first, over HTTPS.
//! Set `IDUNNO_SCREENSHOTS=<dir>` to keep the screenshots (`make screenshots` → docs/img).

mod common;

use common::{image_folder, json, Local, IDUNNO};
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
/// A TorchScript model of Fashion-MNIST exported from PyTorch (the page uploads it).
const TORCHSCRIPT: &str = "node/tests/fixtures/torchscript/fashion_cnn.pt";

#[test]
fn the_dashboard_follows_the_cluster_live_in_chromium() {
    let frontend = testkit::repo_dir().join("frontend");
    assert!(
        frontend.join("dist/index.html").is_file(),
        "the dashboard is not built: run `make frontend` (make test does)"
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run `infra/setup.sh --browser` (make test does)"
    );
    let vitest = frontend.join("node_modules/.bin/vitest");
    assert!(
        vitest.is_file(),
        "run `infra/setup.sh` for the npm packages"
    );

    let c = Local::up(4);
    let secure = c.secure();
    let token = std::fs::read_to_string(secure.join("dashboard.token")).unwrap();
    c.ok(&["dataset", "import", "fashion-mnist"]);
    c.ok(&[
        "train",
        "mlp",
        "fashion-mnist",
        "--epochs",
        "1",
        "--limit",
        "3000",
    ]);
    let state = json(&std::fs::read_to_string(c.dir.path().join("cluster/local.json")).unwrap());
    let nodes = state["nodes"].as_array().expect("nodes in local.json");
    let node = |i: usize| &nodes[i];
    let url = format!(
        "https://{}",
        node(0)["http"].as_str().expect("n1's dashboard")
    );
    let ids: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    let pid = |i: usize| node(i)["pid"].as_u64().expect("pid").to_string();
    // A folder the page uploads as a dataset.
    let folder = c.dir.path().join("halves");
    image_folder(&folder, 8, 4);

    let out = Command::new(&vitest)
        .args(["run", "--config", "vitest.e2e.config.ts"])
        .current_dir(frontend)
        .env("IDUNNO_E2E_URL", &url)
        .env("IDUNNO_E2E_CLI", IDUNNO)
        .env("IDUNNO_E2E_NATS", &c.url)
        .env("IDUNNO_E2E_DIR", c.dir.path())
        .env("IDUNNO_E2E_NODES", ids.join(","))
        .env("IDUNNO_E2E_VICTIM", format!("{}:{}", ids[3], pid(3)))
        .env("IDUNNO_E2E_HOME", format!("{}:{}", ids[0], pid(0)))
        .env("IDUNNO_E2E_TOKEN", token.trim())
        .env("IDUNNO_E2E_MODEL", testkit::repo_dir().join(TORCHSCRIPT))
        .env("IDUNNO_E2E_FOLDER", &folder)
        // The CLI the page test runs is the cluster's operator; Node's fetch and Chromium
        // trust the cluster's CA (Chromium by the dashboard certificate's key).
        .env("IDUNNO_NATS_IDENTITY", c.operator())
        .env("NODE_EXTRA_CA_CERTS", secure.join("ca.pem"))
        .env("IDUNNO_E2E_CERT", secure.join("https/cert.pem"))
        .env("CI", "1")
        .output()
        .expect("run vitest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the browser test failed:\n{text}");
    assert!(text.contains("passed"), "no browser test ran:\n{text}");
}
