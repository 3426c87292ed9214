//! The deployment files agree with `template.yaml`: the deploy workflow passes every template parameter (a
//! parameter left out keeps the stack's previous value, so unsetting a variable would not undo it) with the
//! template's own default as its fallback, and `samconfig.toml` overrides only parameters that exist.

use std::collections::BTreeMap;

fn read(path: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each parameter of the template and its default ("" when it has none).
fn template_parameters() -> BTreeMap<String, Option<String>> {
    let template = read("template.yaml");
    let section = template
        .split("\nParameters:\n")
        .nth(1)
        .and_then(|rest| rest.split("\nRules:\n").next())
        .expect("a Parameters section before Rules");
    let mut params = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !name.starts_with(' ') && !name.starts_with('#') {
                current = Some(name.to_string());
                params.insert(name.to_string(), None);
            }
        } else if let (Some(name), Some(default)) = (&current, line.strip_prefix("    Default: ")) {
            params.insert(name.clone(), Some(default.trim_matches('"').to_string()));
        }
    }
    params
}

#[test]
fn the_deploy_workflow_passes_every_parameter_with_the_templates_default() {
    let workflow = read(".github/workflows/deploy.yml");
    let table = workflow
        .split("<<'TABLE'\n")
        .nth(1)
        .and_then(|rest| rest.split("\n          TABLE").next())
        .expect("the parameter table of the deploy step");
    let passed: BTreeMap<String, String> = table
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    let params = template_parameters();
    assert!(params.len() > 30, "parsed {params:?}");
    for (name, default) in &params {
        let variable = passed
            .get(name)
            .unwrap_or_else(|| panic!("deploy.yml does not pass the template parameter {name}"));
        let Some(default) = default else { continue };
        let fallback = format!("{variable}: ${{{{ vars.{variable} || '{default}' }}}}");
        assert!(
            workflow.contains(&fallback),
            "deploy.yml's fallback for {name} should be the template's default: {fallback}"
        );
    }
    for name in passed.keys() {
        assert!(
            params.contains_key(name),
            "deploy.yml passes {name}, which the template does not declare"
        );
    }
}

#[test]
fn samconfig_overrides_only_declared_parameters() {
    let params = template_parameters();
    let samconfig = read("samconfig.toml");
    let overrides: Vec<&str> = samconfig
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('=').next())
        .collect();
    assert!(!overrides.is_empty());
    for name in overrides {
        assert!(
            params.contains_key(name),
            "samconfig.toml overrides {name}, which the template does not declare"
        );
    }
}

#[test]
fn the_freshness_alarm_watches_the_metric_the_loader_emits() {
    let template = read("template.yaml");
    let alarm = template
        .split("  FeedFreshnessAlarm:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the freshness alarm");
    for line in [
        "Namespace: healthetl",
        "MetricName: ObjectsLoaded",
        "Expression: FILL(loaded, 0)",
        "EvaluationPeriods: !Ref FeedFreshnessHours",
        "TreatMissingData: breaching",
        "ComparisonOperator: LessThanThreshold",
    ] {
        assert!(alarm.contains(line), "the alarm lacks {line}:\n{alarm}");
    }
    let report = healthetl::pipeline::LoadReport::not_loaded(
        "s3://b/incoming/dimPayer.csv",
        healthetl::pipeline::Status::Loaded,
        healthetl::pipeline::Reason::Internal,
        String::new(),
    );
    let record = healthetl::handler::emf_record(&report, "dim_payer", 0);
    assert_eq!(record["ObjectsLoaded"], 1);
    let directives = &record["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directives["Namespace"], "healthetl");
    assert!(
        directives["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_array().is_some_and(Vec::is_empty)),
        "emitted without dimensions too, as the alarm reads it"
    );
}
