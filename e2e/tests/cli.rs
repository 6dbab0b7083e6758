//! The operator CLI against a running coordinator.

use std::process::Command;

use oblivion_e2e::{CREATOR_KEY, Network, OTHER_KEY, ScratchDir, bin, root};

fn cli(net: &Network, args: &[&str]) -> (bool, String, String) {
    cli_as(net, Some(CREATOR_KEY), args)
}

/// The CLI signed in as `key` (through `OBLIVION_KEY`), or anonymous.
fn cli_as(net: &Network, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(bin("oblivion-coordinator").unwrap());
    command.args(args).args(["--coordinator", &net.url]);
    match key {
        Some(key) => command.env("OBLIVION_KEY", key),
        None => command.env_remove("OBLIVION_KEY"),
    };
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn submit_status_download_and_readable_errors() {
    let net = Network::start(&[]).unwrap();
    let spec = root().join("examples/jobs/iris-mlp.json");
    let (ok, id, err) = cli(&net, &["job", "submit", spec.to_str().unwrap()]);
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id, "1");

    let (ok, status, _) = cli(&net, &["job", "status", &id]);
    assert!(ok);
    assert!(status.starts_with("job 1 pending"), "{status}");
    assert!(status.contains("round 1/10"), "{status}");

    let dir = ScratchDir::new("cli").unwrap();
    let path = dir.0.join("model.onnx");
    let (ok, _, err) = cli(
        &net,
        &[
            "job",
            "download",
            &id,
            "--format",
            "onnx",
            "-o",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(std::fs::metadata(&path).unwrap().len() > 100);

    let bad = dir.0.join("bad.json");
    std::fs::write(&bad, r#"{"name": "x", "model": {"kind": "mlp", "hidden": []}, "dataset": {"builtin": "iris"},
        "rounds": 0, "shards_per_round": 1, "batch_size": 8, "optimizer": {"kind": "adam", "learning_rate": 0.1}}"#)
        .unwrap();
    let (ok, _, err) = cli(&net, &["job", "submit", bad.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one readable line: {err}");
    assert!(
        err.contains("422") && err.contains("rounds: must be between 1 and 1000"),
        "{err}"
    );

    let (ok, _, err) = cli(&net, &["job", "status", "77"]);
    assert!(!ok);
    assert!(err.contains("404") && err.contains("no job 77"), "{err}");

    // Accounts: anonymous submits and other accounts' cancels are refused
    // with one line and a non-zero exit; the owner's cancel works.
    let (ok, _, err) = cli_as(&net, None, &["job", "submit", spec.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("401") && err.contains("OBLIVION_KEY"), "{err}");
    let (ok, _, err) = cli_as(&net, Some(OTHER_KEY), &["job", "cancel", &id]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one readable line: {err}");
    assert!(err.contains("403"), "{err}");
    let (ok, _, err) = cli_as(&net, Some("0x1234"), &["job", "cancel", &id]);
    assert!(!ok);
    assert!(
        err.contains("OBLIVION_KEY") && err.contains("not a 32-byte"),
        "{err}"
    );
    let (ok, out, err) = cli(&net, &["job", "cancel", &id]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "job 1 cancelled");
}
