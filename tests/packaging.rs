//! The packaged component agrees with the code and with the runtimes that run it: every
//! configuration key the component reads has a default in the recipe, the IoT rule in the
//! CloudFormation template is the rule the emulator runs, the Java nucleus and nucleus lite both
//! select the recipe's manifests and steps, and the component's own dependency tree holds none of
//! the emulator's server and CLI crates.
//!
//! The recipe check runs `tests/peers/recipe_runtimes.py` with `$GGJH_PYTHON` (PyYAML; `.ci/run`
//! points it at a venv), else `python3`.

use greengrass_jobs_handler::config::CONFIGURATION_KEYS;
use greengrass_jobs_handler::emulator::cloud::iot_core::Publication;
use greengrass_jobs_handler::emulator::cloud::rules::{
    Rule, RECONNECT_RULE_SQL, RECONNECT_RULE_TOPIC,
};

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_configuration_key_has_a_recipe_default() {
    let recipe = read("recipe.yaml");
    let defaults: Vec<&str> = recipe
        .lines()
        .skip_while(|l| l.trim() != "DefaultConfiguration:")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .filter(|l| {
            l.starts_with("    ") && !l.starts_with("     ") && !l.trim_start().starts_with('#')
        })
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .collect();
    for key in CONFIGURATION_KEYS {
        assert!(
            defaults.contains(key),
            "recipe DefaultConfiguration lacks {key}"
        );
    }
    for key in defaults.iter().filter(|k| **k != "accessControl") {
        assert!(
            CONFIGURATION_KEYS.contains(key),
            "recipe sets {key}, which the component never reads"
        );
    }
}

#[test]
fn the_deployed_rule_is_the_emulated_rule() {
    let template = read("recipe/cloud/reconnect-infrastructure.yaml");
    let start = template.find("Sql: >-").expect("rule SQL");
    let sql: String = template[start + "Sql: >-".len()..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("          "))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(sql, RECONNECT_RULE_SQL);
    assert!(template.contains(&format!("Topic: \"{RECONNECT_RULE_TOPIC}\"")));
    let rule = Rule::parse("deployed", &sql, RECONNECT_RULE_TOPIC, 1).unwrap();
    let event = Publication {
        topic: "$aws/events/subscriptions/subscribed/core-7".into(),
        payload: br#"{"clientId":"core-7","topics":["reconnect/core-7"]}"#.to_vec(),
        qos: 0,
    };
    assert_eq!(
        rule.evaluate(&event).map(|p| p.topic).as_deref(),
        Some("reconnect/core-7")
    );
}

fn python() -> String {
    std::env::var("GGJH_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn run_recipe_check(args: &[&str]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = std::process::Command::new(python())
        .args(["-c", "import yaml"])
        .output()
        .expect("run python");
    assert!(
        probe.status.success(),
        "PyYAML is not importable by {}; run `bash .ci/run` or set GGJH_PYTHON",
        python()
    );
    std::process::Command::new(python())
        .arg(root.join("tests/peers/recipe_runtimes.py"))
        .args(args)
        .current_dir(root)
        .output()
        .expect("run recipe_runtimes.py")
}

#[test]
fn both_nuclei_select_every_architecture_of_the_source_recipe() {
    let out = run_recipe_check(&["recipe.yaml=x86_64,aarch64,armv7"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[test]
fn the_recipe_check_rejects_what_either_nucleus_would_not_run() {
    let out = run_recipe_check(&["--self-test", "recipe.yaml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rejected in [
        "rejected: manifests without runtime",
        "rejected: runtime aws_nucleus_lite only",
        "rejected: capitalised lifecycle keys",
        "rejected: architecture as a regex",
    ] {
        assert!(stdout.contains(&format!("ok   {rejected}")), "{stdout}");
    }
}

/// Packages in the component's normal dependency tree for a cross target, built as packaging
/// builds it (`--no-default-features`).
fn component_dependency_tree(target: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--no-default-features",
            "-e",
            "normal",
            "--target",
            target,
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_component_links_no_emulator_server_or_cli_crate() {
    for target in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "armv7-unknown-linux-musleabihf",
    ] {
        let tree = component_dependency_tree(target);
        assert!(
            tree.iter().any(|p| p == "greengrass-jobs-handler")
                && tree.iter().any(|p| p == "tokio"),
            "unexpected cargo tree output for {target}: {tree:?}"
        );
        for unwanted in ["hyper", "hyper-util", "clap", "clap_derive", "tempfile"] {
            assert!(
                !tree.iter().any(|p| p == unwanted),
                "{unwanted} is in the component's dependency tree for {target}; it belongs behind the `emulator` feature"
            );
        }
    }
}
