//! The recipe and the cloud template agree with the code: every configuration key the component
//! reads has a default in the recipe, and the IoT rule in the CloudFormation template is the
//! rule the emulator runs.

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
    let recipe = read("recipe/recipe.yaml");
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
