//! Datasets, models and training through the `idunno` binary against a real local cluster.

mod common;

use common::{image_folder, json, Local, IDUNNO};
use std::process::Command;

#[test]
fn bad_dataset_directories_are_refused_before_reaching_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let neither = dir.path().join("neither");
    std::fs::create_dir_all(&neither).unwrap();
    std::fs::write(neither.join("README"), "no data here").unwrap();
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    image::GrayImage::new(8, 8)
        .save(mixed.join("a.png"))
        .unwrap();
    image::GrayImage::new(9, 8)
        .save(mixed.join("b.png"))
        .unwrap();
    // No server listens on this URL: the error must come from the directory itself.
    let url = format!("nats://127.0.0.1:{}", testkit::free_port());
    for (dir, reason) in [
        (&neither, "is neither an MNIST-IDX directory"),
        (&mixed, "images differ in size"),
    ] {
        let out = Command::new(IDUNNO)
            .args(["--nats", &url, "dataset", "import", "x"])
            .arg(dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn import_list_train_follow_and_inspect_jobs() {
    let c = Local::up(3);
    let root = c.dir.path();
    image_folder(&root.join("halves"), 24, 8);
    let imported = json(&c.ok(&["--json", "dataset", "import", "halves", "halves"]));
    assert_eq!(imported["classes"], serde_json::json!(["left", "right"]));
    let listed = json(&c.ok(&["--json", "datasets"]));
    let first = &listed[0]["manifest"];
    assert_eq!(first["name"], "halves");
    assert_eq!(first["splits"]["train"]["count"], 48);
    assert_eq!(first["shape"], serde_json::json!([1, 8, 8]));

    let err = c.err(&["train", "vgg", "halves"]);
    assert!(err.contains("unknown model \"vgg\""), "{err}");
    let err = c.err(&["train", "mlp", "nope"]);
    assert!(err.contains("unknown dataset \"nope\""), "{err}");

    let id = json(&c.ok(&[
        "--json", "train", "mlp", "halves", "--epochs", "3", "--batch", "8", "--detach",
    ]))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let watched = json(&c.ok(&["--json", "watch", &id]));
    assert_eq!(watched["state"], "succeeded");
    let job = json(&c.ok(&["--json", "job", &id]));
    assert_eq!(job["attempts"][0]["resumed_at_epoch"], 0);
    let acc = job["outcome"]["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "{acc}");
    let jobs = json(&c.ok(&["--json", "jobs"]));
    assert!(jobs
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str()));
    let models = json(&c.ok(&["--json", "models"]));
    let attrs = &models[0]["versions"][0]["attrs"];
    assert_eq!(models[0]["name"], "models/mlp");
    assert_eq!(
        (&attrs["arch"], &attrs["dataset"]),
        (&"mlp".into(), &"halves".into())
    );
    assert!(c.ok(&["models"]).contains("mlp"));

    // Online inference: the test images of each class, one request.
    let left = root.join("halves/test/left/0.png");
    let right = root.join("halves/test/right/3.png");
    let (l, r) = (left.to_str().unwrap(), right.to_str().unwrap());
    let answers = json(&c.ok(&["--json", "infer", "mlp", l, r]));
    assert_eq!(answers[0]["class_name"], "left", "{answers}");
    assert_eq!(answers[1]["class_name"], "right", "{answers}");
    assert_eq!(answers[0]["version"], 1);
    assert!(c.ok(&["infer", "mlp", l]).contains("left (0)"));
    std::fs::write(root.join("corrupt.png"), b"\x89PNG but then nothing").unwrap();
    let err = c.err(&["infer", "mlp", l, "corrupt.png"]);
    assert!(err.contains("image 2: not a PNG or JPEG image"), "{err}");
    let err = c.err(&["infer", "mlp", "missing.png"]);
    assert!(err.contains("cannot read missing.png"), "{err}");
    let err = c.err(&["infer", "nope", l]);
    assert!(err.contains("unknown model \"nope\""), "{err}");
    // A flat folder of images is an input-only dataset: served, with predictions, no accuracy.
    let pics = root.join("pics");
    std::fs::create_dir_all(&pics).unwrap();
    for (i, src) in [&left, &right, &root.join("halves/test/right/5.png")]
        .into_iter()
        .enumerate()
    {
        std::fs::copy(src, pics.join(format!("p{i}.png"))).unwrap();
    }
    let imported = json(&c.ok(&["--json", "dataset", "import", "pics", "pics"]));
    assert_eq!(imported["source"], "unlabelled", "{imported}");
    assert_eq!(imported["classes"], serde_json::json!([]));
    assert_eq!(imported["splits"]["all"]["count"], 3);
    assert!(c.ok(&["datasets"]).contains("unlabelled"));
    let served = json(&c.ok(&[
        "--json",
        "serve",
        "mlp",
        "2",
        "--dataset",
        "pics",
        "--split",
        "all",
    ]));
    assert_eq!(served["state"], "succeeded", "{served}");
    assert_eq!(served["serve"]["done"], 3);
    assert!(
        served["serve"]["correct"].is_null(),
        "no labels, no accuracy"
    );

    // The worker that answered keeps the model loaded, and says so.
    let workers = json(&c.ok(&["--json", "workers"]));
    let cached = workers.as_array().unwrap().iter().any(|w| {
        w["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "mlp v1")
    });
    assert!(cached, "{workers}");
    // And its resources, as `ray status` shows them.
    let r = &workers[0]["resources"];
    assert_eq!(r["device"], "cpu", "{workers}");
    assert!(r["tch_threads"].as_u64() >= Some(1), "{workers}");
    assert!(r["rss_bytes"].as_u64() > Some(1 << 20), "{workers}");
    let table = c.ok(&["workers"]);
    assert!(
        table.contains("disk free") && table.contains("MiB"),
        "{table}"
    );

    // The fair-time policy is a cluster setting.
    assert!(c.ok(&["qps"]).contains("qps global"));
    assert!(c.ok(&["qps", "local"]).contains("qps local"));
    assert!(c.ok(&["qps"]).contains("qps local"));
    let err = c.run(&["qps", "fastest"]);
    assert_eq!(err.status.code(), Some(2));

    let err = c.err(&["cancel", &id]);
    assert!(err.contains("already ended"), "{err}");

    let long = json(&c.ok(&[
        "--json", "train", "mlp", "halves", "--epochs", "10000", "--name", "long", "--detach",
    ]))["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cancelled = json(&c.ok(&["--json", "cancel", &long]));
    assert_eq!(cancelled["state"], "cancelled");
    let err = c.err(&["watch", &long]);
    assert!(err.contains("cancelled"), "{err}");
}
